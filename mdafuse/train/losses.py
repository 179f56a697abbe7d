"""Unsupervised fusion losses: every term compares the fused image with the two sources only."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["LossWeights", "ssim_map", "sobel_magnitude", "pearson", "fusion_loss"]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (defaults: the shipped model's recipe; see benchmarks/results/loss_study.md).

    Attributes:
        ssim_mr: weight of ``1 - SSIM(F, MR)`` (keeps MR anatomy).
        ssim_functional: weight of ``1 - SSIM(F, functional Y)``.
        intensity: weight of ``|F - max(MR, Y)|_1`` (keeps the brighter functional uptake).
        gradient: weight of ``| |grad F| - max(|grad MR|, |grad Y|) |_1`` (keeps the stronger edge).
        correlation: weight of ``2 - CC(F, MR) - CC(F, Y)`` (Pearson correlation per image; keeps
            both sources linearly recoverable, which the CC and SCD metrics reward).
        fidelity: weight of ``(MSE(F, MR) + MSE(F, Y)) / 2`` (limits contrast overshoot; its
            minimum is the plain average, so keep it small next to the other terms).
    """

    ssim_mr: float = 6.0
    ssim_functional: float = 6.0
    intensity: float = 10.0
    gradient: float = 10.0
    correlation: float = 4.0
    fidelity: float = 8.0


def _gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> torch.Tensor:
    """Local SSIM (Wang et al. 2004) with a Gaussian window: ``(B, 1, H, W) x2 -> (B, 1, H, W)``."""
    w = _gaussian_window(window, sigma, x.device, x.dtype)
    pad = window // 2
    xp = F.pad(x, (pad,) * 4, mode="reflect")
    yp = F.pad(y, (pad,) * 4, mode="reflect")
    mu_x, mu_y = F.conv2d(xp, w), F.conv2d(yp, w)
    sxx = F.conv2d(xp * xp, w) - mu_x**2
    syy = F.conv2d(yp * yp, w) - mu_y**2
    sxy = F.conv2d(xp * yp, w) - mu_x * mu_y
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


def fusion_loss(fused: torch.Tensor, mr: torch.Tensor, functional: torch.Tensor, weights: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its terms for ``(B, 1, H, W)`` fused, MR and functional luminance."""
    l_ssim_mr = 1.0 - ssim_map(fused, mr).mean()
    l_ssim_fn = 1.0 - ssim_map(fused, functional).mean()
    l_int = F.l1_loss(fused, torch.maximum(mr, functional))
    l_grad = F.l1_loss(sobel_magnitude(fused), torch.maximum(sobel_magnitude(mr), sobel_magnitude(functional)))
    l_corr = 2.0 - pearson(fused, mr).mean() - pearson(fused, functional).mean()
    l_fid = 0.5 * (F.mse_loss(fused, mr) + F.mse_loss(fused, functional))
    total = (
        weights.ssim_mr * l_ssim_mr
        + weights.ssim_functional * l_ssim_fn
        + weights.intensity * l_int
        + weights.gradient * l_grad
        + weights.correlation * l_corr
        + weights.fidelity * l_fid
    )
    named = (("ssim_mr", l_ssim_mr), ("ssim_functional", l_ssim_fn), ("intensity", l_int), ("gradient", l_grad), ("correlation", l_corr), ("fidelity", l_fid), ("total", total))
    terms = {k: float(v.detach()) for k, v in named}
    return total, terms
