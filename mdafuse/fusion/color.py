"""Colour conversions of batches on a torch device: BT.601 YCbCr with the constants of :mod:`mdafuse.color`."""

from __future__ import annotations

import torch

from mdafuse.color import OFFSET, RGB_TO_YCBCR, YCBCR_TO_RGB

__all__ = ["rgb_to_ycbcr_torch", "ycbcr_to_rgb_torch"]


def rgb_to_ycbcr_torch(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB -> ``(B, 3, H, W)`` YCbCr (same constants as the numpy version)."""
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb must have shape (B, 3, H, W); got {tuple(rgb.shape)}")
    m = torch.as_tensor(RGB_TO_YCBCR, dtype=rgb.dtype, device=rgb.device)
    off = torch.as_tensor(OFFSET, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return torch.einsum("ij,bjhw->bihw", m, rgb) + off


def ycbcr_to_rgb_torch(ycbcr: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` YCbCr -> ``(B, 3, H, W)`` RGB (not clipped)."""
    if ycbcr.ndim != 4 or ycbcr.shape[1] != 3:
        raise ValueError(f"ycbcr must have shape (B, 3, H, W); got {tuple(ycbcr.shape)}")
    m = torch.as_tensor(YCBCR_TO_RGB, dtype=ycbcr.dtype, device=ycbcr.device)
    off = torch.as_tensor(OFFSET, dtype=ycbcr.dtype, device=ycbcr.device).view(1, 3, 1, 1)
    return torch.einsum("ij,bjhw->bihw", m, ycbcr - off)
