"""Weighted-average fusion, the simplest pixel-level rule.

``F = w * A + (1 - w) * B``. It is the reference "no-learning" baseline in most fusion surveys,
e.g. H. Li, B. S. Manjunath, S. K. Mitra, "Multisensor image fusion using the wavelet transform",
Graphical Models and Image Processing 57(3):235–245, 1995 (pixel averaging as the comparison), and
A. P. James, B. V. Dasarathy, "Medical image fusion: a survey of the state of the art",
Information Fusion 19:4–19, 2014.
"""

from __future__ import annotations

import numpy as np

from mdafuse.baselines._common import check_pair, finish

__all__ = ["fuse"]


def fuse(a: np.ndarray, b: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """Fuse two grey images by a weighted average.

    Args:
        a: ``(H, W)`` float image in [0, 1] (MR).
        b: ``(H, W)`` float image in [0, 1] (functional luminance).
        weight: weight of ``a`` in [0, 1]; ``b`` gets ``1 - weight``.

    Returns:
        ``(H, W)`` float32 fused image in [0, 1].

    Raises:
        ValueError: bad shapes or ranges, or ``weight`` outside [0, 1].
    """
    if not (0.0 <= float(weight) <= 1.0):
        raise ValueError(f"average: weight must be in [0, 1]; got {weight}")
    a64, b64 = check_pair(a, b, "average")
    return finish(weight * a64 + (1.0 - weight) * b64)
