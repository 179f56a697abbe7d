"""Batched torch versions of the 13 fusion metrics of :mod:`mdafuse.metrics`, in float32.

Every metric has the definition and default options of the numpy float64 reference code
(``docs/metrics.md``); a batch of ``B`` triples ``(A, B, F)`` is scored at once, on any torch
device, and each metric comes back as a ``(B,)`` float32 tensor.

Formulas and their sources (as in ``docs/metrics.md``):

- EN: ``-sum_l p_F(l) log2 p_F(l)`` over the 256-bin histogram of ``round(255 F)``; Roberts,
  van Aardt, Ahmed, J. Appl. Remote Sens. 2(1):023522, 2008.
- MI: ``MI(A, F) + MI(B, F)`` from 256 x 256 joint histograms; Qu, Zhang, Yan, Electron. Lett.
  38(7):313-315, 2002.
- SD: population standard deviation of ``255 F``; Ma, Ma, Li, Inf. Fusion 45:153-178, 2019.
- VIF: ``VIF(A, F) + VIF(B, F)``, 4-scale pixel-domain VIF on ``255 x``, noise variance 2;
  Sheikh, Bovik, IEEE TIP 15(2):430-444, 2006.
- SSIM: ``SSIM(A, F) + SSIM(B, F)``, Gaussian 11 x 11 window, sigma 1.5, mean of the valid map;
  Wang, Bovik, Sheikh, Simoncelli, IEEE TIP 13(4):600-612, 2004.
- SCD: ``r(F - B, A) + r(F - A, B)``; Aslantas, Bendes, AEU 69(12):1890-1896, 2015.
- CC: ``(r(A, F) + r(B, F)) / 2``; Deshmukh, Bhosale, Int. J. Image Process. 4(5):484, 2010.
- MSE: ``(MSE(A, F) + MSE(B, F)) / 2`` on [0, 1]; Jagalingam, Hegde, Aquatic Procedia
  4:133-142, 2015.
- rSFe: ``(SF_F - SF_R) / SF_R``, 4-direction spatial frequency, reference gradient
  ``max(|grad A|, |grad B|)``; Zheng, Essock, Hansen, Haun, Inf. Fusion 8(2):177-192, 2007.
- Qabf: Sobel edge strength and orientation preservation; Xydeas, Petrovic, Electron. Lett.
  36(4):308-309, 2000.
- SF: ``sqrt(RF^2 + CF^2)`` of ``255 F``; Eskicioglu, Fisher, IEEE Trans. Commun.
  43(12):2959-2965, 1995.
- AG: mean of ``sqrt((dx^2 + dy^2) / 2)`` of ``255 F``; Cui, Feng, Xu, Li, Chen, Opt. Commun.
  341:199-209, 2015.
- PSNR: ``10 log10(1 / MSE)``, ``inf`` when F equals both sources; Jagalingam, Hegde 2015.

``r`` is the Pearson correlation, 0 when an input is constant.

Arithmetic is float32 except where float32 rounding would change a discrete decision of the
float64 reference; those are made exactly: colour luminance and histogram binning in float64
(:func:`_luminance`, :func:`_grey_levels`), Sobel gradients in float64 for the orientation fold
(:func:`_sobel`), flat VIF windows and constant images by comparing values
(:func:`_window_is_constant`, :func:`_is_constant`), not by a float32 variance. rSFe, a
difference of two close spatial frequencies, sums its float32 squares in float64.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mdafuse.color import RGB_TO_YCBCR
from mdafuse.metrics._common import RANGE_TOL
from mdafuse.metrics.gradient import DIAGONAL_WEIGHT, QABF_CONSTANTS
from mdafuse.metrics.registry import METRICS

__all__ = ["score_batch", "score_batch_numpy", "BATCHED_METRICS"]

Tensor = torch.Tensor
ImageBatch = torch.Tensor | np.ndarray

_LEVELS = 256
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03
_VIF_WINDOWS = (17, 9, 5, 3)  # 2^(5 - scale) + 1 for scales 1..4, sigma = size / 5
_VIF_EPS = 1e-10
_VIF_NOISE = 2.0
_EIGHT_BIT = 255.0
_LN2 = math.log(2.0)


# --- validated batch --------------------------------------------------------------------------


class _Batch:
    """A validated batch of triples, with the intermediates several metrics share computed once.

    Attributes:
        images: float32 ``(B, 3, H, W)``: grey A, B and F in [0, 1].
        exact: the three grey ``(B, H, W)`` batches at the precision the float64 reference sees
            (float64 for a float64 grey input, float32 otherwise); only quantisation reads them.
    """

    def __init__(self, a_exact: Tensor, b_exact: Tensor, f_exact: Tensor) -> None:
        self.exact = (a_exact, b_exact, f_exact)
        self.images = torch.stack([a_exact, b_exact, f_exact], dim=1).to(torch.float32)

    @property
    def a(self) -> Tensor:
        return self.images[:, 0]

    @property
    def b(self) -> Tensor:
        return self.images[:, 1]

    @property
    def f(self) -> Tensor:
        return self.images[:, 2]

    @property
    def batch(self) -> int:
        return self.images.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        return (self.images.shape[2], self.images.shape[3])

    @property
    def npix(self) -> int:
        return self.images.shape[2] * self.images.shape[3]

    @functools.cached_property
    def exact_images(self) -> Tensor:
        """``(B, 3, H, W)``: :attr:`exact` stacked, in float64 where the device has it."""
        return torch.stack(self.exact, dim=1).to(_exact_dtype(self.images.device))

    @functools.cached_property
    def levels(self) -> Tensor:
        """``(B, 3, H*W)`` int64 grey levels ``round(255 x)`` of A, B and F."""
        return _grey_levels(self.exact_images).flatten(2)

    @functools.cached_property
    def level_counts(self) -> Tensor:
        """``(B, 3, 256)`` float32 histograms of :attr:`levels`."""
        offset = torch.arange(3 * self.batch, device=self.images.device).view(self.batch, 3, 1) * _LEVELS
        counts = torch.bincount((self.levels + offset).flatten(), minlength=3 * self.batch * _LEVELS)
        return counts.view(self.batch, 3, _LEVELS).to(torch.float32)

    @functools.cached_property
    def pair_mse(self) -> Tensor:
        """``(B, 2)``: MSE(A, F) and MSE(B, F) on [0, 1]."""
        d = self.images[:, :2] - self.images[:, 2:]
        return (d * d).mean(dim=(-2, -1))


# --- input validation -------------------------------------------------------------------------


def _exact_dtype(device: torch.device) -> torch.dtype:
    # MPS has no float64; elsewhere the luminance and quantisation steps run in float64 like the reference.
    return torch.float32 if device.type == "mps" else torch.float64


def _to_tensor(x: ImageBatch, name: str) -> Tensor:
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(
                f"{name} must be a float array in [0, 1]; got dtype {x.dtype} (divide 8-bit images by 255 first)"
            )
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise TypeError(
                f"{name} must be a float tensor in [0, 1]; got dtype {x.dtype} (divide 8-bit images by 255 first)"
            )
        return x.detach()
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray; got {type(x).__name__}")


def _check_shape(x: Tensor, name: str) -> None:
    is_grey = x.ndim == 3
    is_rgb = x.ndim == 4 and x.shape[3] == 3
    if not (is_grey or is_rgb):
        raise ValueError(f"{name} must have shape (B, H, W) or (B, H, W, 3); got {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty; got shape {tuple(x.shape)}")


def _check_values(x: Tensor, name: str) -> None:
    lo, hi = torch.stack(torch.aminmax(x)).tolist()  # NaN propagates through min and max
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} must hold finite values; found NaN or inf")
    if lo < -RANGE_TOL or hi > 1.0 + RANGE_TOL:
        raise ValueError(f"{name} must have values in [0, 1]; got min {lo:.6g}, max {hi:.6g}")


def _luminance(rgb: Tensor) -> Tensor:
    """BT.601 Y of ``(B, H, W, 3)`` RGB, rounded to float32 as :func:`mdafuse.color.luminance`."""
    weights = torch.as_tensor(RGB_TO_YCBCR[0], dtype=rgb.dtype, device=rgb.device)
    y = rgb[..., 0] * weights[0] + rgb[..., 1] * weights[1] + rgb[..., 2] * weights[2]
    return y.to(torch.float32)


def _as_grey(x: ImageBatch, name: str, device: torch.device) -> Tensor:
    """Validate one batch and return its grey values at the reference's precision, clipped to [0, 1]."""
    t = _to_tensor(x, name)
    _check_shape(t, name)
    if t.dtype not in (torch.float32, torch.float64) or _exact_dtype(device) == torch.float32:
        t = t.to(torch.float32)  # half and bfloat16 widen exactly
    t = t.to(device)
    _check_values(t, name)
    t = t.clamp(0.0, 1.0)
    if t.ndim == 4:
        t = _luminance(t.to(_exact_dtype(device))).clamp(0.0, 1.0)
    return t


def _resolve_device(device: torch.device | str | None, images: Sequence[ImageBatch]) -> torch.device:
    if device is not None:
        return torch.device(device)
    tensor_devices = {t.device for t in images if isinstance(t, torch.Tensor)}
    if len(tensor_devices) > 1:
        raise ValueError(f"a, b and f are on different devices {sorted(map(str, tensor_devices))}; pass device=")
    return tensor_devices.pop() if tensor_devices else torch.device("cpu")


def _prepare(a: ImageBatch, b: ImageBatch, f: ImageBatch, device: torch.device | str | None) -> _Batch:
    dev = _resolve_device(device, (a, b, f))
    ga, gb, gf = _as_grey(a, "a", dev), _as_grey(b, "b", dev), _as_grey(f, "f", dev)
    if gb.shape != ga.shape:
        raise ValueError(f"b must have the same (B, H, W) as a {tuple(ga.shape)}; got {tuple(gb.shape)}")
    if gf.shape != ga.shape:
        raise ValueError(f"f must have the same (B, H, W) as a {tuple(ga.shape)}; got {tuple(gf.shape)}")
    return _Batch(ga, gb, gf)


# --- size requirements ------------------------------------------------------------------------


def _vif_size_error(size: tuple[int, int]) -> str | None:
    """The reference's message for images too small for the 4-scale VIF, or None."""
    shape = size
    for scale, n in enumerate(_VIF_WINDOWS, start=1):
        if scale > 1:
            shape = tuple((s - n + 1 + 1) // 2 for s in shape)  # valid filter, then every second sample
        if min(shape) < n:
            return f"images are too small for the 4-scale VIF (scale {scale} needs {n} pixels, has {shape})"
    return None


def _size_error(name: str, size: tuple[int, int]) -> str | None:
    if name == "VIF":
        return _vif_size_error(size)
    if name == "SSIM" and min(size) < _SSIM_WINDOW:
        return f"images must be at least win_size={_SSIM_WINDOW} pixels on each side; got {size}"
    if min(size) < 2:
        if name == "SF":
            return f"images must be at least 2 x 2 for spatial frequency; got {size}"
        if name == "AG":
            return f"f must be at least 2 x 2 for AG; got {size}"
        if name == "rSFe":
            return f"images must be at least 2 x 2 for rSFe; got {size}"
    return None


# --- shared building blocks -------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _gaussian_1d(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Normalised 1-D Gaussian of odd length ``size``, built in float64 like the reference."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    k = torch.exp(-(t * t) / (2.0 * sigma * sigma))
    return (k / k.sum()).to(device=device, dtype=dtype)


def _filter_valid(x: Tensor, k: Tensor, stride: int = 1) -> Tensor:
    """Separable filtering of each channel of ``(B, C, H, W)`` by ``outer(k, k)``, 'valid' region only.

    ``stride=2`` keeps every second output sample in each direction, as ``[::2, ::2]``.
    """
    c, n = x.shape[1], k.numel()
    # depthwise convolutions on channels-last memory: ~10x faster on CPU than one channel at a time
    x = x.contiguous(memory_format=torch.channels_last)
    rows = k.view(1, 1, n, 1).expand(c, 1, n, 1).contiguous()
    cols = k.view(1, 1, 1, n).expand(c, 1, 1, n).contiguous()
    y = F.conv2d(x, rows, stride=(stride, 1), groups=c)
    return F.conv2d(y, cols, stride=(1, stride), groups=c)


def _running_extreme(x: Tensor, n: int, dim: int, pick: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """``pick`` (``torch.maximum`` or ``torch.minimum``) over every run of ``n`` samples along ``dim``.

    Doubles the run length per step (1, 2, 4, ...), then tops up to ``n``: log2(n) passes.
    """
    width = 1
    while width < n:
        step = min(width, n - width)
        length = x.shape[dim] - step
        x = pick(x.narrow(dim, 0, length), x.narrow(dim, step, length))
        width += step
    return x


def _window_is_constant(x: Tensor, n: int) -> Tensor:
    """Whether every ``n x n`` window of ``(..., H, W)`` holds one value: ``(..., H-n+1, W-n+1)`` bool."""
    hi = _running_extreme(_running_extreme(x, n, -2, torch.maximum), n, -1, torch.maximum)
    lo = _running_extreme(_running_extreme(x, n, -2, torch.minimum), n, -1, torch.minimum)
    return hi == lo


def _is_constant(x: Tensor) -> Tensor:
    """Whether each image of ``(..., H, W)`` is constant: ``(...)`` bool."""
    lo, hi = torch.aminmax(x.flatten(-2), dim=-1)
    return lo == hi


def _grey_levels(x_exact: Tensor) -> Tensor:
    """``round(255 x)`` of ``x`` in [0, 1] as int64 levels 0..255, rounding half to even like ``np.rint``.

    ``x_exact`` is float64 (where the device has it): the product is then exact for float32
    pixels (24 + 8 mantissa bits) and every pixel lands in the bin of the float64 reference,
    whereas a float32 product can round onto a half level. ``x`` is clipped, so levels stay in 0..255.
    """
    return torch.round(x_exact * (_LEVELS - 1)).to(torch.int64)


# --- information: EN, MI ----------------------------------------------------------------------


def _entropy_bits(counts: Tensor, npix: int) -> Tensor:
    """Entropy in bits of float32 histograms of ``npix`` pixels over the last axis."""
    p = counts / npix
    return -torch.special.xlogy(p, p).sum(dim=-1) / _LN2


def _en(t: _Batch) -> Tensor:
    return _entropy_bits(t.level_counts[:, 2], t.npix)


def _joint_counts(t: _Batch) -> Tensor:
    """``(B, 2, 65536)`` float32 joint histograms of (level of A, level of F) and (level of B, level of F)."""
    block = torch.arange(2 * t.batch, device=t.images.device).view(t.batch, 2, 1) * (_LEVELS * _LEVELS)
    index = t.levels[:, :2] * _LEVELS + t.levels[:, 2:] + block
    counts = torch.bincount(index.flatten(), minlength=2 * t.batch * _LEVELS * _LEVELS)
    return counts.view(t.batch, 2, _LEVELS * _LEVELS).to(torch.float32)


def _mi(t: _Batch) -> Tensor:
    marginals = t.level_counts
    h_src = _entropy_bits(marginals[:, :2], t.npix)
    h_f = _entropy_bits(marginals[:, 2:], t.npix)
    h_joint = _entropy_bits(_joint_counts(t), t.npix)
    mi = (h_src + h_f - h_joint).clamp_min(0.0)
    # one grey level gives MI 0 exactly (H(X, F) = H(X)); float32 sums over 65536 vs 256 bins differ by ~1e-6
    single_level = marginals.amax(dim=-1) == t.npix
    return torch.where(single_level[:, :2] | single_level[:, 2:], torch.zeros_like(mi), mi).sum(dim=1)


# --- statistics: SD, CC, SCD, MSE, PSNR -------------------------------------------------------


def _pearson(x: Tensor, y: Tensor) -> Tensor:
    """Pearson correlation per image of ``(..., H, W)``; 0 where either image is constant."""
    dx = x - x.mean(dim=(-2, -1), keepdim=True)
    dy = y - y.mean(dim=(-2, -1), keepdim=True)
    den = torch.sqrt((dx * dx).sum(dim=(-2, -1)) * (dy * dy).sum(dim=(-2, -1)))
    r = (dx * dy).sum(dim=(-2, -1)) / den
    # float32 centring leaves a residue on a constant image, where the reference's r is 0
    undefined = _is_constant(x) | _is_constant(y) | (den == 0)
    return torch.where(undefined, torch.zeros_like(r), r)


def _sd(t: _Batch) -> Tensor:
    # shifted by one pixel first: a constant image gives exactly 0, and the sums stay small
    d = t.f - t.f[:, :1, :1]
    d = d - d.mean(dim=(-2, -1), keepdim=True)
    return _EIGHT_BIT * torch.sqrt((d * d).mean(dim=(-2, -1)))


def _cc(t: _Batch) -> Tensor:
    return 0.5 * _pearson(t.images[:, :2], t.images[:, 2:]).sum(dim=1)


def _scd(t: _Batch) -> Tensor:
    return _pearson(t.f - t.b, t.a) + _pearson(t.f - t.a, t.b)


def _mse(t: _Batch) -> Tensor:
    return t.pair_mse.mean(dim=1)


def _psnr(t: _Batch) -> Tensor:
    err = t.pair_mse.mean(dim=1)
    return torch.where(err == 0, torch.full_like(err, math.inf), -10.0 * torch.log10(err))


# --- structural: SSIM, VIF --------------------------------------------------------------------


def _local_moments(x: Tensor, k: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Window means of ``x = (A, B, F)`` ``(B, 3, H, W)`` and the (biased) variances and covariances.

    Returns ``(mean, var, cov)`` with mean ``(B, 3, h, w)`` for A, B, F, var ``(B, 3, h, w)``
    and cov ``(B, 2, h, w)`` of A with F and B with F, over the valid region of ``outer(k, k)``.
    """
    x = x.contiguous(memory_format=torch.channels_last)  # the products and their cat inherit it
    sources, fused = x[:, :2], x[:, 2:]
    stats = _filter_valid(torch.cat([x, x * x, sources * fused], dim=1), k)
    mean, square, cross = stats[:, :3], stats[:, 3:6], stats[:, 6:]
    var = square - mean * mean
    cov = cross - mean[:, :2] * mean[:, 2:]
    return mean, var, cov


def _ssim(t: _Batch) -> Tensor:
    k = _gaussian_1d(_SSIM_WINDOW, _SSIM_SIGMA, t.images.device, t.images.dtype)
    mean, var, cov = _local_moments(t.images, k)
    mu_s, mu_f = mean[:, :2], mean[:, 2:]
    c1, c2 = _SSIM_K1**2, _SSIM_K2**2
    num = (2.0 * mu_s * mu_f + c1) * (2.0 * cov + c2)
    den = (mu_s * mu_s + mu_f * mu_f + c1) * (var[:, :2] + var[:, 2:] + c2)
    return (num / den).mean(dim=(-2, -1)).sum(dim=1)


def _vif_terms(x: Tensor) -> tuple[Tensor, Tensor]:
    """Information terms of the 4-scale pixel VIF for ``x = (A, B, F)`` stacked ``(B, 3, H, W)`` on 255.

    Returns ``(num, den)``, each ``(B, 2)`` for the references A and B against F, in nats (the
    base cancels in ``num / den``). The reference's special cases, as masks: a window is flat
    when its float64 variance is below 1e-10 (reference flat: gain 0, no reference information;
    F flat: gain 0); a negative gain counts as 0. Float32 cancellation in ``E[x^2] - E[x]^2``
    leaves ~1e-3 in a window of one value, so such windows are found exactly and count as flat.
    """
    num = x.new_zeros(x.shape[0], 2)
    den = x.new_zeros(x.shape[0], 2)
    for scale, n in enumerate(_VIF_WINDOWS, start=1):
        k = _gaussian_1d(n, n / 5.0, x.device, x.dtype)
        if scale > 1:
            x = _filter_valid(x, k, stride=2)
        _, var, s12 = _local_moments(x, k)
        var = var.clamp_min(0.0)
        flat = (var < _VIF_EPS) | _window_is_constant(x, n)
        s1, s2 = var[:, :2], var[:, 2:]
        flat_ref, flat_f = flat[:, :2], flat[:, 2:]
        g = s12 / (s1 + _VIF_EPS)
        gain_counts = ~(flat_ref | flat_f) & (g > 0)  # where the reference sets g = 0, its term is 0
        sv = (s2 - g * s12).clamp_min(_VIF_EPS)
        num = num + (torch.log1p(g * g * s1 / (sv + _VIF_NOISE)) * gain_counts).sum(dim=(-2, -1))
        den = den + (torch.log1p(s1 / _VIF_NOISE) * ~flat_ref).sum(dim=(-2, -1))
    return num, den


def _vif(t: _Batch) -> Tensor:
    num, den = _vif_terms(_EIGHT_BIT * t.images)
    return torch.where(den == 0, torch.zeros_like(num), num / den).sum(dim=1)


# --- gradient: rSFe, Qabf, SF, AG -------------------------------------------------------------


def _directional_gradients(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Row, column, main- and secondary-diagonal first differences of ``(..., H, W)``."""
    return (
        x[..., :, 1:] - x[..., :, :-1],
        x[..., 1:, :] - x[..., :-1, :],
        x[..., 1:, 1:] - x[..., :-1, :-1],
        x[..., 1:, :-1] - x[..., :-1, 1:],
    )


def _extended_sf(grads: tuple[Tensor, ...], npix: int) -> Tensor:
    """Four-direction spatial frequency from ``(row, column, diagonal, anti-diagonal)`` differences, in float64.

    The squares are float32; only their sums accumulate in float64, because rSFe subtracts two
    such values that are often within 1e-3 of each other.
    """
    weights = (1.0, 1.0, DIAGONAL_WEIGHT, DIAGONAL_WEIGHT)
    accumulate = _exact_dtype(grads[0].device)
    total = sum(w * (g * g).sum(dim=(-2, -1), dtype=accumulate) for w, g in zip(weights, grads))
    return torch.sqrt(total / npix)


def _rsfe(t: _Batch) -> Tensor:
    grads = _directional_gradients(t.images)
    reference = tuple(g[:, :2].abs().amax(dim=1) for g in grads)  # max(|grad A|, |grad B|)
    sf_r = _extended_sf(reference, t.npix)
    sf_f = _extended_sf(tuple(g[:, 2] for g in grads), t.npix)
    both_flat = torch.where(sf_f == 0, torch.zeros_like(sf_f), torch.full_like(sf_f, math.inf))
    return torch.where(sf_r == 0, both_flat, (sf_f - sf_r) / sf_r).to(torch.float32)


def _sobel_gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    """scipy's ``sobel`` along axis 1 (x) and axis 0 (y) of ``(..., H, W)``, borders replicated."""
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    p = F.pad(x.reshape(-1, 1, h, w), (1, 1, 1, 1), mode="replicate").reshape(*lead, h + 2, w + 2)
    across = p[..., :, 2:] - p[..., :, :-2]
    down = p[..., 2:, :] - p[..., :-2, :]
    gx = torch.add(across[..., :-2, :] + across[..., 2:, :], across[..., 1:-1, :], alpha=2.0)
    gy = torch.add(down[..., :, :-2] + down[..., :, 2:], down[..., :, 1:-1], alpha=2.0)
    return gx, gy


def _sobel(x_exact: Tensor) -> tuple[Tensor, Tensor]:
    """Float32 edge strength and orientation in (-pi/2, pi/2] of ``(B, C, H, W)``, borders replicated.

    The orientation jumps from +pi/2 to -pi/2 when the x-gradient changes sign, so the gradients
    are taken in float64 (exact sums of float32 pixels, as the reference's): float32 rounding
    turns an exact 0 into +-1e-8 and flips near-vertical edges.
    """
    gx, gy = (g.to(torch.float32) for g in _sobel_gradients(x_exact.to(_exact_dtype(x_exact.device))))
    # atan2 folded into (-pi/2, pi/2] is atan(gy / gx), and pi/2 where gx = 0 (0 where gy = 0 too):
    # mirror into the right half-plane instead of comparing angles near the fold
    mirror = torch.sign(gx) + (gx == 0) * torch.sign(gy)
    alpha = torch.atan2(gy * mirror, gx.abs())
    return torch.hypot(gx, gy), alpha


def _edge_preservation(g_src: Tensor, a_src: Tensor, g_f: Tensor, a_f: Tensor) -> Tensor:
    c = QABF_CONSTANTS
    # the larger strength is 0 only where the smaller is, and the reference's ratio is 0 there
    rel = torch.minimum(g_src, g_f) / torch.maximum(g_src, g_f).clamp_min(torch.finfo(g_src.dtype).tiny)
    orient = 1.0 - (a_src - a_f).abs() / (math.pi / 2)
    # gamma / (1 + exp(kappa (v - sigma))) = gamma * sigmoid(-kappa (v - sigma))
    q_g = torch.sigmoid(-c["kappa_g"] * (rel - c["sigma_g"]))
    q_a = torch.sigmoid(-c["kappa_a"] * (orient - c["sigma_a"]))
    return (c["gamma_g"] * c["gamma_a"]) * q_g * q_a


def _qabf(t: _Batch) -> Tensor:
    strength, alpha = _sobel(t.exact_images)
    g_src, g_f = strength[:, :2], strength[:, 2:]
    preserved = _edge_preservation(g_src, alpha[:, :2], g_f, alpha[:, 2:]) * g_src  # weights g^L, L = 1
    num = preserved.sum(dim=(1, 2, 3))
    den = g_src.sum(dim=(1, 2, 3))
    return torch.where(den == 0, torch.zeros_like(den), num / den)


def _sf(t: _Batch) -> Tensor:
    rows, cols = t.f[..., :, 1:] - t.f[..., :, :-1], t.f[..., 1:, :] - t.f[..., :-1, :]
    return _EIGHT_BIT * torch.sqrt((rows * rows).mean(dim=(-2, -1)) + (cols * cols).mean(dim=(-2, -1)))


def _ag(t: _Batch) -> Tensor:
    corner = t.f[:, :-1, :-1]
    dx = t.f[:, :-1, 1:] - corner
    dy = t.f[:, 1:, :-1] - corner
    return _EIGHT_BIT * torch.sqrt(0.5 * (dx * dx + dy * dy)).mean(dim=(-2, -1))


# --- public API -------------------------------------------------------------------------------

BATCHED_METRICS: dict[str, Callable[[_Batch], Tensor]] = {
    "EN": _en,
    "MI": _mi,
    "SD": _sd,
    "VIF": _vif,
    "SSIM": _ssim,
    "SCD": _scd,
    "CC": _cc,
    "MSE": _mse,
    "rSFe": _rsfe,
    "Qabf": _qabf,
    "SF": _sf,
    "AG": _ag,
    "PSNR": _psnr,
}
"""Batched implementation of each key of :data:`mdafuse.metrics.METRICS`, in its order."""


def _metric_names(names: Sequence[str] | None) -> list[str]:
    if names is None:
        return list(METRICS)
    if isinstance(names, str):
        raise TypeError(f"names must be a sequence of metric names, not a string; got {names!r}")
    keys = list(names)
    unknown = [n for n in keys if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric name(s) {unknown}; valid names are {list(METRICS)}")
    return keys


@torch.no_grad()
def score_batch(
    a: ImageBatch,
    b: ImageBatch,
    f: ImageBatch,
    names: Sequence[str] | None = None,
    *,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """Score a batch of fused images with the metrics of :data:`mdafuse.metrics.METRICS`.

    Same definitions and default options as :func:`mdafuse.metrics.compute_all`, image by image,
    computed in float32 except where float32 rounding would change a discrete decision of the
    float64 reference: colour luminance, histogram binning and Sobel gradients are taken in
    float64 (float32 on MPS, which has no float64), and rSFe accumulates its sums in float64.

    Args:
        a: source A (e.g. MR), ``(B, H, W)`` grey or ``(B, H, W, 3)`` RGB, float in [0, 1]
            (1e-6 slack, then clipped); a torch tensor or a numpy array. Colour is scored on
            its BT.601 luminance.
        b: source B (e.g. PET/SPECT), same ``(B, H, W)``, grey or RGB.
        f: fused images, same ``(B, H, W)``, grey or RGB.
        names: metric keys to compute, in order; all of :data:`mdafuse.metrics.METRICS` when None.
        device: where to compute; by default the device of the tensors given (CPU for numpy).

    Returns:
        ``{name: values}`` in the order of ``names``, each a float32 tensor of shape ``(B,)`` on
        the compute device.

    Raises:
        TypeError: an input that is not a float tensor/array, or ``names`` given as a string.
        ValueError: unknown metric names; bad shapes, mismatched sizes, NaN/inf or values
            outside [0, 1]; images too small for a requested metric (VIF needs 41 x 41, SSIM
            11 x 11); tensors on different devices without ``device``.
    """
    keys = _metric_names(names)
    batch = _prepare(a, b, f, device)
    for key in keys:
        message = _size_error(key, batch.size)
        if message is not None:
            raise ValueError(message)
    return {key: BATCHED_METRICS[key](batch) for key in keys}


def score_batch_numpy(
    a: ImageBatch,
    b: ImageBatch,
    f: ImageBatch,
    names: Sequence[str] | None = None,
    *,
    device: torch.device | str | None = None,
) -> list[dict[str, float]]:
    """:func:`score_batch` as one ``{name: float}`` dict per image, like :func:`~mdafuse.metrics.compute_all`.

    Args:
        a, b, f: as :func:`score_batch`: ``(B, H, W)`` or ``(B, H, W, 3)`` in [0, 1].
        names: metric keys, in order; all when None.
        device: compute device (default: that of the inputs, CPU for numpy).

    Returns:
        A list of ``B`` dicts of Python floats, in the batch order.
    """
    scores = score_batch(a, b, f, names, device=device)
    columns = {key: value.cpu().tolist() for key, value in scores.items()}
    batch = a.shape[0]
    return [{key: column[i] for key, column in columns.items()} for i in range(batch)]
