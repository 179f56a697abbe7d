"""Energy-based colour enhancement of a batch of slices on a torch device (the cohort job's model stage).

The same formulas and float32 arithmetic as :func:`mdafuse.fusion.enhance.enhance` (read its
module docstring), batched over slices so that the device that fused them enhances them too and
only 8-bit images leave it (:func:`to_uint8_torch`). Outputs agree with the numpy function to
float32 rounding (a few 1e-7); tests/fusion/test_enhance_torch.py holds them to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mdafuse.color import RGB_TO_YCBCR, YCBCR_TO_RGB
from mdafuse.fusion.enhance import EnhanceConfig

__all__ = ["enhance_batch", "to_uint8_torch"]


def _symmetric_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad the last two axes by ``pad`` with scipy's "reflect" (edge sample repeated: d c b a | a b c d)."""
    if pad == 0:
        return x
    left, right = x[..., :, :pad].flip(-1), x[..., :, -pad:].flip(-1)
    x = torch.cat([left, x, right], dim=-1)
    top, bottom = x[..., :pad, :].flip(-2), x[..., -pad:, :].flip(-2)
    return torch.cat([top, x, bottom], dim=-2)


def _energy(luma: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, H, W)`` luminance -> local energy (mean of Y^2 over a window, reflected borders), in [0, 1]."""
    if window > min(luma.shape[-2:]) * 2:
        raise ValueError(f"window {window} is too large for slices of {tuple(luma.shape[-2:])}")
    sq = luma.clamp(0.0, 1.0).square()
    padded = _symmetric_pad(sq[:, None], window // 2)
    # the box mean is separable: rows then columns (as scipy's uniform_filter), 2w instead of w^2 operations
    rows = F.avg_pool2d(padded, (window, 1), stride=1)
    return F.avg_pool2d(rows, (1, window), stride=1)[:, 0].clamp(0.0, 1.0)


def _weight(energy: torch.Tensor, threshold: float, softness: float) -> torch.Tensor:
    s = 0.5 * (1.0 + torch.tanh((0.5 / softness) * (energy - threshold)))
    s0 = 0.5 * (1.0 + torch.tanh(torch.tensor(0.5 * (0.0 - threshold) / softness, dtype=torch.float64))).item()
    return ((s - s0) / (1.0 - s0)).clamp(0.0, 1.0)


def _mix(planes: list[torch.Tensor], matrix, offset: tuple[float, float, float]) -> list[torch.Tensor]:
    m = torch.as_tensor(matrix, dtype=torch.float32)
    return [m[i, 0].item() * planes[0] + m[i, 1].item() * planes[1] + m[i, 2].item() * planes[2] + offset[i] for i in range(3)]


def _colormap(values: torch.Tensor, name: str) -> torch.Tensor:
    v = values.clamp(0.0, 1.0)
    if name == "hot":
        channels = [3.0 * v, 3.0 * v - 1.0, 3.0 * v - 2.0]
    elif name == "jet":
        channels = [1.5 - (4.0 * v - 3.0).abs(), 1.5 - (4.0 * v - 2.0).abs(), 1.5 - (4.0 * v - 1.0).abs()]
    else:
        raise ValueError(f"colormap must be 'hot' or 'jet'; got {name!r}")
    return torch.stack(channels, dim=-1).clamp(0.0, 1.0)


def enhance_batch(fused: torch.Tensor, functional: torch.Tensor, config: EnhanceConfig | None = None) -> torch.Tensor:
    """Enhance fused slices where their functional slices have high local energy.

    Args:
        fused: ``(B, H, W, 3)`` RGB or ``(B, H, W)`` grey fused slices, float in [0, 1].
        functional: ``(B, H, W, 3)`` or ``(B, H, W)`` functional slices on the same grid.
        config: parameters (:class:`~mdafuse.fusion.enhance.EnhanceConfig` defaults).

    Returns:
        ``(B, H, W, 3)`` float32 RGB in [0, 1] on the inputs' device.

    Raises:
        ValueError: the batches differ in size.
    """
    cfg = config if config is not None else EnhanceConfig()
    if fused.shape[:3] != functional.shape[:3] or fused.ndim not in (3, 4) or functional.ndim not in (3, 4):
        raise ValueError(f"fused and functional must be (B, H, W[, 3]) batches of one size; got {tuple(fused.shape)} and {tuple(functional.shape)}")
    fn = functional.float().clamp(0.0, 1.0)
    luma = _mix([fn[..., 0], fn[..., 1], fn[..., 2]], RGB_TO_YCBCR, (0.0, 0.0, 0.0))[0] if fn.ndim == 4 else fn
    energy = _energy(luma.clamp(0.0, 1.0), cfg.window)
    w = _weight(energy, cfg.threshold, cfg.softness)
    if fused.ndim == 4:
        rgb = fused.float().clamp(0.0, 1.0)
        y, cb, cr = _mix([rgb[..., 0], rgb[..., 1], rgb[..., 2]], RGB_TO_YCBCR, (0.0, 0.5, 0.5))
        chroma = 1.0 + cfg.gain * w
        y = y + cfg.brightness * w * (1.0 - y)
        out = torch.stack(_mix([y, (cb - 0.5) * chroma, (cr - 0.5) * chroma], YCBCR_TO_RGB, (0.0, 0.0, 0.0)), dim=-1)
        return out.clamp(0.0, 1.0)
    grey = fused.float().clamp(0.0, 1.0)[..., None]
    alpha = min(1.0, cfg.gain) * w[..., None]
    return (grey + alpha * (_colormap(energy, cfg.colormap) - grey)).clamp(0.0, 1.0)


def to_uint8_torch(image: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1] -> uint8 as :func:`mdafuse.io.encode.to_uint8`: clip, x255 in float64, round half to even."""
    return image.double().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
