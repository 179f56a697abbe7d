"""Colour conversions: full-range ITU-R BT.601 YCbCr (the JPEG/JFIF form), in numpy.

Channel order is (Y, Cb, Cr); all values in [0, 1] with Cb and Cr centred on 0.5. The inverse
matrix is computed as the exact matrix inverse, so a round trip is exact to float precision.
The lowest layer of the library: readers (:mod:`mdafuse.io`), metrics and fusion all use it; the
torch versions for batches on a device are in :mod:`mdafuse.fusion.color`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RGB_TO_YCBCR", "YCBCR_TO_RGB", "OFFSET", "rgb_to_ycbcr", "ycbcr_to_rgb", "with_luminance", "rebuilt_luminance", "luminance"]

_KR, _KB = 0.299, 0.114
_KG = 1.0 - _KR - _KB
RGB_TO_YCBCR = np.array(
    [
        [_KR, _KG, _KB],
        [-0.5 * _KR / (1 - _KB), -0.5 * _KG / (1 - _KB), 0.5],
        [0.5, -0.5 * _KG / (1 - _KR), -0.5 * _KB / (1 - _KR)],
    ],
    dtype=np.float64,
)
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)
OFFSET = np.array([0.0, 0.5, 0.5])


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` RGB in [0, 1] -> ``(..., 3)`` YCbCr in [0, 1] (BT.601 full range)."""
    rgb = np.asarray(rgb)
    if rgb.shape[-1] != 3:
        raise ValueError(f"rgb must have 3 channels in the last axis; got shape {rgb.shape}")
    out = rgb.astype(np.float64) @ RGB_TO_YCBCR.T + OFFSET
    return out.astype(np.float32)


def ycbcr_to_rgb(ycbcr: np.ndarray, clip: bool = True) -> np.ndarray:
    """``(..., 3)`` YCbCr -> RGB; clipped to [0, 1] unless ``clip=False``."""
    ycbcr = np.asarray(ycbcr)
    if ycbcr.shape[-1] != 3:
        raise ValueError(f"ycbcr must have 3 channels in the last axis; got shape {ycbcr.shape}")
    out = (ycbcr.astype(np.float64) - OFFSET) @ YCBCR_TO_RGB.T
    if clip:
        out = np.clip(out, 0.0, 1.0)
    return out.astype(np.float32)


def with_luminance(ycbcr: np.ndarray, y: np.ndarray) -> np.ndarray:
    """RGB image whose luminance is ``y`` and whose chroma is that of ``ycbcr``: the "fuse Y, keep Cb/Cr" rule.

    ``(H, W, 3)`` YCbCr and ``(H, W)`` luminance -> ``(H, W, 3)`` RGB in [0, 1] (``ycbcr`` is not changed).
    """
    ycbcr = np.asarray(ycbcr)
    y = np.asarray(y)
    if ycbcr.shape[-1] != 3 or y.shape != ycbcr.shape[:-1]:
        raise ValueError(f"y must have the shape of ycbcr without its channel axis; got {y.shape} and {ycbcr.shape}")
    return ycbcr_to_rgb(np.concatenate([y[..., None], ycbcr[..., 1:]], axis=-1))


def rebuilt_luminance(ycbcr: np.ndarray | None, y: np.ndarray) -> np.ndarray:
    """Luminance of the colour image the pipeline outputs for fused luminance ``y``: Y of the RGB image
    rebuilt by :func:`with_luminance` (clipping to [0, 1] lowers Y where the chroma is strong), or ``y``
    itself for a grey functional image (``ycbcr`` None). This is what benchmarks score for a fused Y.

    ``(H, W, 3)`` YCbCr or None and ``(H, W)`` luminance -> ``(H, W)`` float32 luminance (``y`` when grey).
    """
    if ycbcr is None:
        return y
    # float32 as the pipeline's fused luminance, so the values match its colour output bit for bit
    return luminance(with_luminance(ycbcr, np.asarray(y).astype(np.float32)))


def luminance(image: np.ndarray) -> np.ndarray:
    """Y of an RGB ``(H, W, 3)`` image, or the image itself when it is grey ``(H, W)``."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image.astype(np.float32)
    if image.ndim == 3 and image.shape[2] == 3:
        return rgb_to_ycbcr(image)[..., 0]
    raise ValueError(f"image must have shape (H, W) or (H, W, 3); got {image.shape}")
