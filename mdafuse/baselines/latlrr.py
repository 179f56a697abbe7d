"""Latent low-rank representation (LatLRR) fusion.

H. Li, X.-J. Wu, "Infrared and visible image fusion using latent low-rank representation",
arXiv:1804.08992, 2018 (the rule), with the LatLRR decomposition of G. Liu, S. Yan, "Latent
low-rank representation for subspace segmentation and feature extraction", ICCV 2011, solved by
the inexact augmented Lagrange multiplier method given there.

Each source image ``X`` (a matrix) is split as ``X = X Z + L X + E`` by solving

    min ||Z||_* + ||L||_* + lambda ||E||_1   subject to   X = X Z + L X + E,

so that ``X Z`` is the low-rank (global structure) part and ``L X`` the salient part (local
structure, edges); ``E`` is sparse noise and is discarded. The fused image is the average of the
low-rank parts plus the sum of the salient parts, ``F = (X_a Z_a + X_b Z_b) / 2 + L_a X_a + L_b X_b``,
as in Li & Wu (``lambda = 0.8``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from mdafuse.baselines._common import check_pair, finish

__all__ = ["LatLRRConfig", "latlrr", "fuse"]


@dataclass(frozen=True)
class LatLRRConfig:
    """Parameters of the LatLRR solver; ``lam`` is Li & Wu's, the solver's are Liu & Yan's usual ones."""

    lam: float = 0.8
    tol: float = 1e-6
    rho: float = 1.1
    mu: float = 1e-6
    mu_max: float = 1e6
    max_iter: int = 500


def _svt(m: np.ndarray, tau: float) -> np.ndarray:
    """Singular value thresholding: the proximal operator of ``tau * ||.||_*``."""
    if float(np.linalg.norm(m)) <= tau:
        # every singular value is at most the Frobenius norm: all are thresholded away (early iterations)
        return np.zeros_like(m)
    try:
        u, s, vt = scipy.linalg.svd(m, full_matrices=False, check_finite=False)
    except np.linalg.LinAlgError:
        # the divide-and-conquer driver can fail on nearly degenerate matrices; the QR driver does not
        u, s, vt = scipy.linalg.svd(m, full_matrices=False, check_finite=False, lapack_driver="gesvd")
    s = np.maximum(s - tau, 0.0)
    keep = s > 0
    return (u[:, keep] * s[keep]) @ vt[keep]


def latlrr(x: np.ndarray, config: LatLRRConfig = LatLRRConfig()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decompose one image matrix: ``x = x @ z + l @ x + e`` (Liu & Yan 2011, inexact ALM).

    Args:
        x: ``(H, W)`` float image.
        config: solver parameters.

    Returns:
        ``(low_rank, salient, sparse)`` = ``(x @ z, l @ x, e)``, each ``(H, W)``.

    Raises:
        RuntimeError: no convergence within ``config.max_iter`` iterations.
    """
    x = np.asarray(x, dtype=np.float64)
    h, w = x.shape
    xtx = x.T @ x
    xxt = x @ x.T
    z = np.zeros((w, w))
    lx = np.zeros((h, h))  # the paper's L
    lxx = np.zeros((h, w))  # lx @ x, kept from the previous iteration
    e = np.zeros((h, w))
    y1, y2, y3 = np.zeros((h, w)), np.zeros((w, w)), np.zeros((h, h))
    mu = config.mu
    inv_z = np.linalg.inv(np.eye(w) + xtx)
    inv_l = np.linalg.inv(np.eye(h) + xxt)
    # stop once every constraint residual is below tol * ||X||_F (at least tol)
    stop = config.tol * max(float(np.linalg.norm(x)), 1.0)
    for _ in range(config.max_iter):
        j = _svt(z + y2 / mu, 1.0 / mu)
        s = _svt(lx + y3 / mu, 1.0 / mu)
        z = inv_z @ (x.T @ (x - lxx - e) + j + (x.T @ y1 - y2) / mu)
        xz = x @ z
        lx = ((x - xz - e) @ x.T + s + (y1 @ x.T - y3) / mu) @ inv_l
        lxx = lx @ x
        r = x - xz - lxx
        t = r + y1 / mu
        e = np.sign(t) * np.maximum(np.abs(t) - config.lam / mu, 0.0)
        leq1 = r - e
        leq2 = z - j
        leq3 = lx - s
        if max(np.abs(leq1).max(), np.abs(leq2).max(), np.abs(leq3).max()) < stop:
            return xz, lxx, e
        y1 += mu * leq1
        y2 += mu * leq2
        y3 += mu * leq3
        mu = min(config.rho * mu, config.mu_max)
    raise RuntimeError(f"latlrr: no convergence in {config.max_iter} iterations; raise max_iter or tol")


def fuse(a: np.ndarray, b: np.ndarray, config: LatLRRConfig = LatLRRConfig()) -> np.ndarray:
    """LatLRR fusion (Li & Wu 2018): average of the low-rank parts plus the sum of the salient parts.

    Args:
        a: ``(H, W)`` float image in [0, 1] (MR).
        b: ``(H, W)`` float image in [0, 1] (functional luminance).
        config: solver parameters.

    Returns:
        ``(H, W)`` float32 fused image in [0, 1].
    """
    a64, b64 = check_pair(a, b, "latlrr")
    low_a, sal_a, _ = latlrr(a64, config)
    low_b, sal_b, _ = latlrr(b64, config)
    return finish((low_a + low_b) / 2.0 + sal_a + sal_b)
