"""Laplacian-pyramid fusion.

Pyramid of P. J. Burt, E. H. Adelson, "The Laplacian pyramid as a compact image code", IEEE
Transactions on Communications 31(4):532–540, 1983; fusion in the pyramid domain after P. J. Burt,
R. J. Kolczynski, "Enhanced image capture through fusion", ICCV 1993, pp. 173–182. Here the
coarsest (Gaussian) level is averaged and every detail (Laplacian) level takes, per coefficient,
the source with the larger absolute value ("choose max" salience rule).

The pyramid is built with the 5-tap generating kernel ``[1, 4, 6, 4, 1] / 16`` (``a = 0.375``)
and half-sample symmetric borders. REDUCE blurs and keeps every second sample, so a side of ``n``
becomes ``ceil(n / 2)``; EXPAND inserts zeros back to the exact finer shape and blurs with four
times the kernel, so any size (odd included) reconstructs exactly.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mdafuse.baselines._common import check_pair, finish

__all__ = ["fuse", "build_pyramid", "collapse_pyramid", "max_levels"]

_KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
_MIN_SIDE = 4


def _blur(img: np.ndarray, gain: float = 1.0) -> np.ndarray:
    k = _KERNEL * gain
    out = ndimage.correlate1d(img, k, axis=0, mode="reflect")
    return ndimage.correlate1d(out, k, axis=1, mode="reflect")


def _reduce(img: np.ndarray) -> np.ndarray:
    return _blur(img)[::2, ::2]


def _expand(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    up = np.zeros(shape, dtype=np.float64)
    up[::2, ::2] = img
    return _blur(up, gain=2.0)


def max_levels(shape: tuple[int, int]) -> int:
    """Largest number of pyramid levels (detail levels plus the base) for an image of ``shape``.

    Reduction stops before the smaller side would drop below 4 pixels.
    """
    side = min(shape)
    levels = 1
    while side >= 2 * _MIN_SIDE - 1:
        side = (side + 1) // 2
        levels += 1
    return levels


def build_pyramid(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """Laplacian pyramid of ``img``: ``levels - 1`` detail images then the coarsest Gaussian level.

    Args:
        img: ``(H, W)`` float image.
        levels: number of levels, at least 1 (1 returns the image itself).

    Returns:
        List of float64 arrays from finest to coarsest.
    """
    if levels < 1:
        raise ValueError(f"laplacian: levels must be >= 1; got {levels}")
    pyr = []
    current = np.asarray(img, dtype=np.float64)
    for _ in range(levels - 1):
        smaller = _reduce(current)
        pyr.append(current - _expand(smaller, current.shape))
        current = smaller
    pyr.append(current)
    return pyr


def collapse_pyramid(pyr: list[np.ndarray]) -> np.ndarray:
    """Inverse of :func:`build_pyramid`: expand the coarsest level and add each detail level."""
    current = pyr[-1]
    for detail in reversed(pyr[:-1]):
        current = detail + _expand(current, detail.shape)
    return current


def fuse(a: np.ndarray, b: np.ndarray, levels: int = 4) -> np.ndarray:
    """Fuse two grey images in the Laplacian-pyramid domain.

    Args:
        a: ``(H, W)`` float image in [0, 1].
        b: ``(H, W)`` float image in [0, 1].
        levels: pyramid levels including the base (>= 1). Capped at :func:`max_levels` for small
            images.

    Returns:
        ``(H, W)`` float32 fused image in [0, 1].

    Raises:
        ValueError: bad inputs or ``levels < 1``.
    """
    if int(levels) != levels or levels < 1:
        raise ValueError(f"laplacian: levels must be an integer >= 1; got {levels}")
    a64, b64 = check_pair(a, b, "laplacian")
    n = min(int(levels), max_levels(a64.shape))
    pa, pb = build_pyramid(a64, n), build_pyramid(b64, n)
    fused = [np.where(np.abs(da) >= np.abs(db), da, db) for da, db in zip(pa[:-1], pb[:-1])]
    fused.append(0.5 * (pa[-1] + pb[-1]))
    return finish(collapse_pyramid(fused))
