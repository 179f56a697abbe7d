"""PCA-weighted fusion.

The two images are treated as two variables observed at every pixel; the principal eigenvector
``v`` of their 2x2 covariance matrix gives the weights ``w = |v| / (|v_1| + |v_2|)`` (absolute
values, so negatively correlated sources still get positive weights) and
``F = w_1 * A + w_2 * B``. See V. P. S. Naidu, J. R. Raol, "Pixel-level image fusion using
wavelets and principal component analysis", Defence Science Journal 58(3):338–352, 2008.
"""

from __future__ import annotations

import numpy as np

from mdafuse.baselines._common import check_pair, finish

__all__ = ["fuse", "pca_weights"]


def pca_weights(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Weights of ``a`` and ``b`` from the principal eigenvector of their covariance.

    Args:
        a: ``(H, W)`` float image in [0, 1].
        b: ``(H, W)`` float image in [0, 1].

    Returns:
        ``(w_a, w_b)`` summing to 1. When both images are constant (zero covariance) the weights
        are ``(0.5, 0.5)``.
    """
    a64, b64 = check_pair(a, b, "pca")
    cov = np.cov(np.stack([a64.ravel(), b64.ravel()]))
    if not np.isfinite(cov).all() or np.abs(cov).max() <= 1e-15:
        return 0.5, 0.5
    vals, vecs = np.linalg.eigh(cov)
    v = np.abs(vecs[:, int(np.argmax(vals))])
    total = float(v.sum())
    return float(v[0] / total), float(v[1] / total)


def fuse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fuse two grey images with PCA weights.

    Args:
        a: ``(H, W)`` float image in [0, 1].
        b: ``(H, W)`` float image in [0, 1].

    Returns:
        ``(H, W)`` float32 fused image in [0, 1].
    """
    a64, b64 = check_pair(a, b, "pca")
    wa, wb = pca_weights(a64, b64)
    return finish(wa * a64 + wb * b64)
