"""Shared helpers for the fusion metrics: input validation, quantisation, filtering, correlation.

Every public metric takes ``(a, b, f)``: source A, source B and the fused image F, each grey
``(H, W)`` or colour ``(H, W, 3)`` float32/float64 in [0, 1]. Colour images are scored on their
luminance (BT.601 Y, :func:`mdafuse.color.luminance`). All arithmetic is float64.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from mdafuse.color import luminance

__all__ = ["as_grey", "prepare", "quantize", "pearson", "gaussian_kernel", "filter_valid", "reduce_pair", "check_base"]

RANGE_TOL = 1e-6
"""Values may leave [0, 1] by this much (float rounding in a fusion output) and are then clipped."""


def as_grey(x: np.ndarray, name: str) -> np.ndarray:
    """Validate one image and return it as float64 ``(H, W)`` in [0, 1].

    Args:
        x: ``(H, W)`` or ``(H, W, 3)`` RGB, float32 or float64, finite, in [0, 1].
        name: argument name used in error messages.

    Raises:
        TypeError: ``x`` is not a floating-point array.
        ValueError: wrong number of dimensions, non-finite values or values outside [0, 1].
    """
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(
            f"{name} must be a float32/float64 array in [0, 1]; got dtype {arr.dtype} "
            "(divide 8-bit images by 255 first)"
        )
    if arr.ndim == 3 and arr.shape[2] == 3:
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} must hold finite values; found NaN or inf")
        _check_range(arr, name)
        arr = luminance(np.clip(arr, 0.0, 1.0))
    elif arr.ndim != 2:
        raise ValueError(f"{name} must have shape (H, W) or (H, W, 3); got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {arr.shape}")
    grey = arr.astype(np.float64, copy=False)
    if not np.isfinite(grey).all():
        raise ValueError(f"{name} must hold finite values; found NaN or inf")
    _check_range(grey, name)
    return np.clip(grey, 0.0, 1.0)


def _check_range(arr: np.ndarray, name: str) -> None:
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -RANGE_TOL or hi > 1.0 + RANGE_TOL:
        raise ValueError(f"{name} must have values in [0, 1]; got min {lo:.6g}, max {hi:.6g}")


def prepare(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a fusion triple and return float64 grey ``(H, W)`` arrays of one shape."""
    ga, gb, gf = as_grey(a, "a"), as_grey(b, "b"), as_grey(f, "f")
    if gb.shape != ga.shape:
        raise ValueError(f"b must have the same (H, W) as a {ga.shape}; got {gb.shape}")
    if gf.shape != ga.shape:
        raise ValueError(f"f must have the same (H, W) as a {ga.shape}; got {gf.shape}")
    return ga, gb, gf


def quantize(x: np.ndarray, levels: int = 256) -> np.ndarray:
    """Map [0, 1] to integer grey levels ``0 .. levels-1`` by rounding (``x * (levels - 1)``)."""
    return np.clip(np.rint(x * (levels - 1)), 0, levels - 1).astype(np.intp)


def check_base(base: float) -> float:
    """Validate a logarithm base (2 for bits, ``math.e`` for nats)."""
    if not (isinstance(base, (int, float)) and math.isfinite(base) and base > 0 and base != 1):
        raise ValueError(f"base must be a positive number other than 1 (2 for bits, math.e for nats); got {base!r}")
    return float(base)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two arrays; 0.0 when either is constant (correlation undefined)."""
    dx = x - x.mean()
    dy = y - y.mean()
    den = math.sqrt(float(np.sum(dx * dx)) * float(np.sum(dy * dy)))
    if den == 0.0:
        return 0.0
    return float(np.sum(dx * dy)) / den


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of odd length ``size`` (the separable factor of MATLAB's fspecial)."""
    r = (size - 1) / 2.0
    t = np.arange(size, dtype=np.float64) - r
    k = np.exp(-(t * t) / (2.0 * sigma * sigma))
    return k / k.sum()


def filter_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable 2-D filtering with kernel ``outer(k, k)``, keeping only the 'valid' region.

    Args:
        x: ``(H, W)`` float64.
        k: symmetric 1-D kernel of odd length n.

    Returns:
        ``(H - n + 1, W - n + 1)``, as MATLAB ``filter2(outer(k, k), x, 'valid')``.
    """
    n = k.size
    r = (n - 1) // 2
    y = ndimage.correlate1d(x, k, axis=0, mode="constant")
    y = ndimage.correlate1d(y, k, axis=1, mode="constant")
    return y[r : x.shape[0] - (n - 1 - r), r : x.shape[1] - (n - 1 - r)]


def reduce_pair(v_af: float, v_bf: float, reduction: str) -> float:
    """Combine the A-F and B-F scores: ``"sum"`` or ``"mean"``."""
    if reduction == "sum":
        return float(v_af + v_bf)
    elif reduction == "mean":
        return float(0.5 * (v_af + v_bf))
    else:
        raise ValueError(f"reduction must be 'sum' or 'mean'; got {reduction!r}")
