"""Input checks and output handling shared by the classical fusion baselines."""

from __future__ import annotations

import numpy as np

__all__ = ["check_pair", "finish"]

_RANGE_TOL = 1e-4


def check_pair(a: np.ndarray, b: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate two grey images for fusion and return them as float64.

    Args:
        a: ``(H, W)`` first source image (MR), float in [0, 1].
        b: ``(H, W)`` second source image (functional luminance), float in [0, 1].
        method: name of the calling method, used in error messages.

    Returns:
        ``(a, b)`` as float64 ``(H, W)`` arrays.

    Raises:
        TypeError: an input is not array-like of real numbers.
        ValueError: wrong dimensionality, different shapes, non-finite values or values outside [0, 1].
    """
    out = []
    for name, img in (("a", a), ("b", b)):
        arr = np.asarray(img)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            raise TypeError(f"{method}: {name} must be a real-valued array; got dtype {arr.dtype}")
        if arr.ndim != 2:
            raise ValueError(f"{method}: {name} must be a grey image of shape (H, W); got shape {arr.shape}")
        if arr.size == 0:
            raise ValueError(f"{method}: {name} is empty (shape {arr.shape})")
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise ValueError(f"{method}: {name} contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -_RANGE_TOL or hi > 1.0 + _RANGE_TOL:
            raise ValueError(f"{method}: {name} must hold values in [0, 1]; got range [{lo:.4g}, {hi:.4g}]")
        out.append(arr)
    if out[0].shape != out[1].shape:
        raise ValueError(f"{method}: a and b must have the same shape; got {out[0].shape} and {out[1].shape}")
    return out[0], out[1]


def finish(f: np.ndarray) -> np.ndarray:
    """Clip a fused image to [0, 1] and return it as contiguous float32."""
    return np.ascontiguousarray(np.clip(f, 0.0, 1.0), dtype=np.float32)
