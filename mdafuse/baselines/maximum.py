"""Maximum-selection fusion: each pixel takes the brighter source.

``F = max(A, B)``; the classic "select maximum" pixel rule, see G. Pajares, J. M. de la Cruz,
"A wavelet-based image fusion tutorial", Pattern Recognition 37(9):1855–1872, 2004, and the
pixel-level rules surveyed by A. P. James, B. V. Dasarathy, Information Fusion 19:4–19, 2014.
"""

from __future__ import annotations

import numpy as np

from mdafuse.baselines._common import check_pair, finish

__all__ = ["fuse"]


def fuse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fuse two grey images by the pixel-wise maximum.

    Args:
        a: ``(H, W)`` float image in [0, 1].
        b: ``(H, W)`` float image in [0, 1].

    Returns:
        ``(H, W)`` float32 fused image in [0, 1].
    """
    a64, b64 = check_pair(a, b, "maximum")
    return finish(np.maximum(a64, b64))
