"""Intensity windows that turn clinical volumes into the library's float32 [0, 1] images.

* :func:`normalise_mr`: percentile window of an MR slice or volume.
* :func:`window_suv`: a fixed SUV window (default 0 to 8).
* :func:`pet_colormap`: the "hot" colour map (black -> red -> yellow -> white, each primary rising
  linearly over one third of the range, as in MATLAB's/ImageJ's classic ``hot`` shape), so that
  fusion sees an RGB PET like the Harvard atlas PET images.
"""

from __future__ import annotations

import numpy as np

__all__ = ["normalise_mr", "window_suv", "pet_colormap", "pet_to_rgb"]


def normalise_mr(data: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.5) -> np.ndarray:
    """Map the ``low_pct``..``high_pct`` percentile range of ``data`` linearly to [0, 1], clipping.

    Args:
        data: MR values, any shape (a slice ``(H, W)`` or a volume ``(Z, Y, X)``); NaNs are ignored
            for the percentiles and become 0.
        low_pct: lower percentile (0..100).
        high_pct: upper percentile, greater than ``low_pct``.

    Returns:
        float32 array of the same shape in [0, 1]; all zeros when the window is empty (constant input).
    """
    if not 0.0 <= low_pct < high_pct <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low_pct < high_pct <= 100; got {low_pct}, {high_pct}")
    arr = np.asarray(data)
    finite_mask = np.isfinite(arr)
    all_finite = bool(finite_mask.all())
    finite = arr if all_finite else arr[finite_mask]
    if finite.size == 0:
        raise ValueError("data holds no finite values")
    lo, hi = np.percentile(finite, [low_pct, high_pct])
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.float32)
    # float32 arithmetic on whole volumes; the window's end points stay float64
    out = (arr.astype(np.float32) - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    return out if all_finite else np.nan_to_num(out, nan=0.0)


def window_suv(suv: np.ndarray, lo: float = 0.0, hi: float = 8.0) -> np.ndarray:
    """Map SUV ``lo``..``hi`` linearly to [0, 1], clipping; float32, same shape."""
    if not hi > lo:
        raise ValueError(f"SUV window needs hi > lo; got lo={lo}, hi={hi}")
    arr = np.asarray(suv, dtype=np.float32)
    out = (arr - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    return np.nan_to_num(out, nan=0.0, copy=False)


def pet_colormap(x: np.ndarray) -> np.ndarray:
    """The "hot" PET colour map: ``R = 3x``, ``G = 3x - 1``, ``B = 3x - 2``, each clipped to [0, 1].

    Args:
        x: windowed PET values in [0, 1], any shape, e.g. ``(H, W)``.

    Returns:
        float32 ``x.shape + (3,)`` RGB in [0, 1] (``(H, W, 3)`` for a slice): 0 is black, 1/3 red,
        2/3 yellow, 1 white; the map is monotone in luminance.

    Raises:
        ValueError: NaN or values outside [0, 1] (window with :func:`window_suv` first).
    """
    arr = np.asarray(x, dtype=np.float32)
    if arr.size and (not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError("pet_colormap input must be finite values in [0, 1]; window it with window_suv first")
    rgb = np.empty(arr.shape + (3,), dtype=np.float32)
    for channel in range(3):
        # float32 throughout: 3x - c is exact enough (within 1e-7) and this runs on whole volumes
        np.multiply(arr, np.float32(3.0), out=rgb[..., channel])
        rgb[..., channel] -= np.float32(channel)
    np.clip(rgb, 0.0, 1.0, out=rgb)
    return rgb


def pet_to_rgb(suv: np.ndarray, lo: float = 0.0, hi: float = 8.0) -> np.ndarray:
    """``pet_colormap(window_suv(suv, lo, hi))``: SUV ``(H, W)`` to an RGB ``(H, W, 3)`` PET image."""
    return pet_colormap(window_suv(suv, lo, hi))
