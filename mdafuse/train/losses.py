"""Unsupervised fusion losses: every term compares the fused image with the two sources only."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mdafuse.metrics.gradient import DIAGONAL_WEIGHT, directional_gradients

__all__ = [
    "LossWeights",
    "ssim_map",
    "sobel_magnitude",
    "pearson",
    "vif_index",
    "extended_sf",
    "reference_sf",
    "soft_entropy",
    "fusion_loss",
]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (defaults: the shipped model's recipe; see docs/research/README.md).

    Attributes:
        ssim_mr: weight of ``1 - SSIM(F, MR)`` (keeps MR anatomy).
        ssim_functional: weight of ``1 - SSIM(F, functional Y)``.
        intensity: weight of ``|F - max(MR, Y)|_1`` (keeps the brighter functional uptake).
        gradient: weight of ``| |grad F| - max(|grad MR|, |grad Y|) |_1`` (keeps the stronger edge).
        correlation: weight of ``2 - CC(F, MR) - CC(F, Y)`` (Pearson correlation per image; keeps
            both sources linearly recoverable, which the CC and SCD metrics reward).
        fidelity: weight of ``(MSE(F, MR) + MSE(F, Y)) / 2`` (limits contrast overshoot; its
            minimum is the plain average, so keep it small next to the other terms).
        vif: weight of ``2 - VIF(MR, F) - VIF(Y, F)`` (differentiable 4-scale pixel VIF, as the
            metric; rewards keeping each source's local structure unmixed).
        rsfe: weight of ``rSFe^2`` (extended spatial frequency of F against the reference built
            from the sources' maximal directional gradients, as the metric).
        contrast: weight of ``relu(SD(max(MR, Y)) - SD(F)) / SD(max(MR, Y))`` per image (asks for
            at least the contrast of the max rule).
        mse_cap: weight of ``relu(MSE(F) - MSE(max(MR, Y))) / MSE(max(MR, Y))`` per image, with
            ``MSE`` the fusion MSE against both sources (a ceiling instead of a pull to the
            average: no more error than the max rule).
        entropy: weight of ``-EN(F) / 8`` (soft 256-bin histogram entropy in bits, per image).
        scd: weight of ``2 - SCD`` with ``SCD = r(F - Y, MR) + r(F - MR, Y)`` per image, as the
            metric (rewards each source's contribution to F being recoverable as F minus the other).
    """

    ssim_mr: float = 6.0
    ssim_functional: float = 6.0
    intensity: float = 10.0
    gradient: float = 10.0
    correlation: float = 4.0
    fidelity: float = 8.0
    vif: float = 0.0
    rsfe: float = 0.0
    contrast: float = 0.0
    mse_cap: float = 0.0
    entropy: float = 0.0
    scd: float = 0.0


def _gaussian_1d(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    g = _gaussian_1d(size, sigma, device, dtype)
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def _gaussian_filter_valid(x: torch.Tensor, size: int, sigma: float, separable: bool) -> torch.Tensor:
    """Per-channel Gaussian filtering keeping the valid region: ``(B, C, H, W) -> (B, C, H-size+1, W-size+1)``.

    ``separable=True`` filters rows then columns (about ``size / 2`` times fewer operations); the values
    agree with the 2-D window to float rounding, so training keeps the 2-D path and stays bit-reproducible.
    """
    c = x.shape[1]
    if not separable:
        return F.conv2d(x, _gaussian_window(size, sigma, x.device, x.dtype).expand(c, 1, size, size), groups=c)
    g = _gaussian_1d(size, sigma, x.device, x.dtype)
    x = F.conv2d(x, g.view(1, 1, size, 1).expand(c, 1, size, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, size).expand(c, 1, 1, size), groups=c)


def ssim_map(
    x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0, separable: bool = False
) -> torch.Tensor:
    """Local SSIM (Wang et al. 2004) with a Gaussian window: ``(B, 1, H, W) x2 -> (B, 1, H, W)``.

    ``separable``: filter rows then columns (faster, equal to float rounding).
    """
    pad = window // 2
    xp = F.pad(x, (pad,) * 4, mode="reflect")
    yp = F.pad(y, (pad,) * 4, mode="reflect")
    if separable:
        stats = _gaussian_filter_valid(torch.cat([xp, yp, xp * xp, yp * yp, xp * yp], dim=1), window, sigma, True)
        mu_x, mu_y, exx, eyy, exy = stats.split(x.shape[1], dim=1)
    else:
        # the training path: one 2-D convolution per statistic, as the shipped weights were trained
        w = _gaussian_window(window, sigma, x.device, x.dtype)
        mu_x, mu_y = F.conv2d(xp, w), F.conv2d(yp, w)
        exx, eyy, exy = F.conv2d(xp * xp, w), F.conv2d(yp * yp, w), F.conv2d(xp * yp, w)
    sxx = exx - mu_x**2
    syy = eyy - mu_y**2
    sxy = exy - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """|Sobel_x| + |Sobel_y| of ``(B, 1, H, W)``, same shape (reflect padding)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device, dtype=x.dtype).view(1, 1, 3, 3)
    xp = F.pad(x, (1, 1, 1, 1), mode="reflect")
    return F.conv2d(xp, kx).abs() + F.conv2d(xp, kx.transpose(2, 3)).abs()


def pearson(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Pearson correlation per image of ``(B, 1, H, W)`` tensors: ``(B,)``; 0 for a flat image."""
    xc = x - x.mean(dim=(1, 2, 3), keepdim=True)
    yc = y - y.mean(dim=(1, 2, 3), keepdim=True)
    num = (xc * yc).sum(dim=(1, 2, 3))
    den = torch.sqrt((xc * xc).sum(dim=(1, 2, 3)) * (yc * yc).sum(dim=(1, 2, 3)) + eps)
    return num / den


def vif_index(
    ref: torch.Tensor, dist: torch.Tensor, scale: float = 255.0, sigma_nsq: float = 2.0, eps: float = 1e-10, separable: bool = False
) -> torch.Tensor:
    """Differentiable 4-scale pixel VIF of ``dist`` against ``ref``: ``(B, 1, H, W) x2 -> (B,)``.

    The formula of :func:`mdafuse.metrics.structural.vif_index` (Sheikh and Bovik 2006), with the
    metric's special cases (flat reference, negative gain) written as clamps so that gradients
    flow; away from flat windows the value equals the metric's. Needs ``H, W >= 41``.
    ``separable``: filter rows then columns (faster, equal to float rounding).
    """

    def _blur_valid(x: torch.Tensor, size: int) -> torch.Tensor:
        return _gaussian_filter_valid(x, size, size / 5.0, separable)

    num = ref.new_zeros(ref.shape[0])
    den = ref.new_zeros(ref.shape[0])
    r, d = ref * scale, dist * scale
    for level in range(1, 5):
        n = 2 ** (5 - level) + 1  # 17, 9, 5, 3
        if level > 1:
            r, d = _blur_valid(r, n)[..., ::2, ::2], _blur_valid(d, n)[..., ::2, ::2]
        if min(r.shape[-2:]) < n:
            raise ValueError(f"images are too small for the 4-scale VIF (level {level} needs {n} pixels, has {tuple(r.shape[-2:])})")
        stats = _blur_valid(torch.cat([r, d, r * r, d * d, r * d], dim=1), n)
        mu1, mu2, srr, sdd, srd = stats.unbind(dim=1)
        s1 = (srr - mu1 * mu1).clamp_min(0)
        s2 = (sdd - mu2 * mu2).clamp_min(0)
        s12 = srd - mu1 * mu2
        g = (s12 / (s1 + eps)).clamp_min(0)
        sv = (s2 - g * s12).clamp_min(eps)
        num = num + torch.log10(1 + g * g * s1 / (sv + sigma_nsq)).sum(dim=(1, 2))
        den = den + torch.log10(1 + s1 / sigma_nsq).sum(dim=(1, 2))
    return num / den.clamp_min(eps)


def _directional_sq(x: torch.Tensor) -> list[torch.Tensor]:
    # Squared directional differences, the diagonals weighted as in the rSFe metric.
    weights = (1.0, 1.0, DIAGONAL_WEIGHT, DIAGONAL_WEIGHT)
    return [w * (d * d) for w, d in zip(weights, directional_gradients(x))]


def extended_sf(x: torch.Tensor) -> torch.Tensor:
    """Four-direction spatial frequency of ``(B, 1, H, W)`` on its own scale: ``(B,)``."""
    npix = x.shape[-1] * x.shape[-2]
    return torch.sqrt(sum(g.sum(dim=(1, 2, 3)) for g in _directional_sq(x)) / npix + 1e-12)


def reference_sf(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """rSFe's reference spatial frequency: per direction the larger of the two sources' gradients: ``(B,)``."""
    npix = a.shape[-1] * a.shape[-2]
    return torch.sqrt(sum(torch.maximum(ga, gb).sum(dim=(1, 2, 3)) for ga, gb in zip(_directional_sq(a), _directional_sq(b))) / npix + 1e-12)


def soft_entropy(x: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Entropy in bits of a soft ``bins``-level histogram of ``(B, 1, H, W)`` in [0, 1]: ``(B,)``.

    Each pixel splits its vote between the two nearest levels of ``(bins - 1) x`` (linear
    interpolation), so the value is differentiable and equals the EN metric's when every pixel
    sits on a level.
    """
    v = x.clamp(0, 1).flatten(1) * (bins - 1)
    lo = v.detach().floor().clamp(max=bins - 2)
    frac = v - lo
    hist = x.new_zeros(x.shape[0], bins)
    hist = hist.scatter_add(1, lo.long(), 1 - frac).scatter_add(1, lo.long() + 1, frac)
    p = hist / hist.sum(dim=1, keepdim=True)
    return -(p * torch.log2(p.clamp_min(1e-12))).sum(dim=1)


def fusion_loss(fused: torch.Tensor, mr: torch.Tensor, functional: torch.Tensor, weights: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its terms for ``(B, 1, H, W)`` fused, MR and functional luminance."""
    l_ssim_mr = 1.0 - ssim_map(fused, mr).mean()
    l_ssim_fn = 1.0 - ssim_map(fused, functional).mean()
    l_int = F.l1_loss(fused, torch.maximum(mr, functional))
    l_grad = F.l1_loss(sobel_magnitude(fused), torch.maximum(sobel_magnitude(mr), sobel_magnitude(functional)))
    l_corr = 2.0 - pearson(fused, mr).mean() - pearson(fused, functional).mean()
    l_fid = 0.5 * (F.mse_loss(fused, mr) + F.mse_loss(fused, functional))
    extra = []
    # The metric-shaped terms cost time; they are computed only when weighted.
    if weights.vif:
        extra.append(("vif", weights.vif, 2.0 - vif_index(mr, fused).mean() - vif_index(functional, fused).mean()))
    if weights.rsfe:
        sf_r = reference_sf(mr, functional)
        extra.append(("rsfe", weights.rsfe, (((extended_sf(fused) - sf_r) / sf_r.clamp_min(1e-6)) ** 2).mean()))
    if weights.contrast or weights.mse_cap:
        top = torch.maximum(mr, functional)
    if weights.contrast:
        sd_top = top.std(dim=(1, 2, 3), unbiased=False)
        extra.append(("contrast", weights.contrast, (F.relu(sd_top - fused.std(dim=(1, 2, 3), unbiased=False)) / sd_top.clamp_min(1e-6)).mean()))
    if weights.mse_cap:
        def pair_mse(x: torch.Tensor) -> torch.Tensor:
            return 0.5 * (((x - mr) ** 2).mean(dim=(1, 2, 3)) + ((x - functional) ** 2).mean(dim=(1, 2, 3)))

        cap = pair_mse(top).detach()
        extra.append(("mse_cap", weights.mse_cap, (F.relu(pair_mse(fused) - cap) / cap.clamp_min(1e-8)).mean()))
    if weights.entropy:
        extra.append(("entropy", weights.entropy, -soft_entropy(fused).mean() / 8.0))
    if weights.scd:
        extra.append(("scd", weights.scd, 2.0 - pearson(fused - functional, mr).mean() - pearson(fused - mr, functional).mean()))
    total = (
        weights.ssim_mr * l_ssim_mr
        + weights.ssim_functional * l_ssim_fn
        + weights.intensity * l_int
        + weights.gradient * l_grad
        + weights.correlation * l_corr
        + weights.fidelity * l_fid
    )
    for _name, w, term in extra:
        total = total + w * term
    named = (("ssim_mr", l_ssim_mr), ("ssim_functional", l_ssim_fn), ("intensity", l_int), ("gradient", l_grad), ("correlation", l_corr), ("fidelity", l_fid), *((n, t) for n, _, t in extra), ("total", total))
    terms = {k: float(v.detach()) for k, v in named}
    return total, terms
