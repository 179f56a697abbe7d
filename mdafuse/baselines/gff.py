"""Guided-filtering-based fusion (GFF).

S. Li, X. Kang, J. Hu, "Image fusion with guided filtering", IEEE Transactions on Image
Processing 22(7):2864–2875, 2013, with the guided filter of K. He, J. Sun, X. Tang, "Guided image
filtering", ECCV 2010 (box-filter form).

1. Two-scale decomposition: base ``B_n = I_n * Z`` (31x31 mean filter), detail ``D_n = I_n - B_n``.
2. Saliency ``S_n = |I_n * L| * g``: absolute 3x3 Laplacian, smoothed by a Gaussian of radius
   ``r_g = 5`` and ``sigma_g = 5``.
3. Binary weight maps ``P_n = [S_n = max_k S_k]`` (ties give both sources weight).
4. Refinement with the source as guide: ``W^B_n = G_{r1, eps1}(P_n, I_n)`` and
   ``W^D_n = G_{r2, eps2}(P_n, I_n)``, paper values ``r1 = 45, eps1 = 0.3, r2 = 7, eps2 = 1e-6``,
   clipped at 0 and normalised to sum to one per pixel.
5. ``F = sum_n W^B_n B_n + W^D_n D_n``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mdafuse.baselines._common import check_pair, finish

__all__ = ["GFFConfig", "fuse", "guided_filter", "box_mean"]


@dataclass(frozen=True)
class GFFConfig:
    """Parameters of GFF; the defaults are those of Li, Kang & Hu (2013)."""

    base_size: int = 31
    r1: int = 45
    eps1: float = 0.3
    r2: int = 7
    eps2: float = 1e-6
    saliency_radius: int = 5
    saliency_sigma: float = 5.0


def box_mean(img: np.ndarray, r: int) -> np.ndarray:
    """Mean over a ``(2r+1) x (2r+1)`` window with half-sample symmetric borders.

    Args:
        img: ``(H, W)`` float array.
        r: window radius (>= 0); windows larger than the image are fine.
    """
    if r < 0:
        raise ValueError(f"box_mean: r must be >= 0; got {r}")
    return ndimage.uniform_filter(np.asarray(img, dtype=np.float64), size=2 * r + 1, mode="reflect")


def guided_filter(p: np.ndarray, guide: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Grey guided filter of He, Sun & Tang (2010).

    ``a = cov(I, p) / (var(I) + eps)``, ``b = mean(p) - a * mean(I)``, output
    ``q = mean(a) * I + mean(b)``, all means over ``(2r+1)^2`` windows.

    Args:
        p: ``(H, W)`` image to filter.
        guide: ``(H, W)`` guidance image ``I``.
        r: window radius (>= 0).
        eps: regularisation (> 0).

    Returns:
        ``(H, W)`` float64 filtered image.
    """
    if eps <= 0:
        raise ValueError(f"guided_filter: eps must be > 0; got {eps}")
    p = np.asarray(p, dtype=np.float64)
    guide = np.asarray(guide, dtype=np.float64)
    if p.shape != guide.shape or p.ndim != 2:
        raise ValueError(f"guided_filter: p and guide must be (H, W) of equal shape; got {p.shape} and {guide.shape}")
    mean_i = box_mean(guide, r)
    mean_p = box_mean(p, r)
    cov_ip = box_mean(guide * p, r) - mean_i * mean_p
    var_i = box_mean(guide * guide, r) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, r) * guide + box_mean(b, r)


def _saliency(img: np.ndarray, cfg: GFFConfig) -> np.ndarray:
    lap = np.abs(ndimage.laplace(img, mode="reflect"))
    truncate = cfg.saliency_radius / cfg.saliency_sigma
    return ndimage.gaussian_filter(lap, sigma=cfg.saliency_sigma, truncate=truncate, mode="reflect")


def _normalise(w: list[np.ndarray]) -> list[np.ndarray]:
    w = [np.clip(x, 0.0, None) for x in w]
    total = w[0] + w[1]
    flat = total <= 1e-12
    safe = np.where(flat, 1.0, total)
    return [np.where(flat, 0.5, x / safe) for x in w]


def fuse(a: np.ndarray, b: np.ndarray, config: GFFConfig | None = None) -> np.ndarray:
    """Fuse two grey images with GFF.

    Args:
        a: ``(H, W)`` float image in [0, 1].
        b: ``(H, W)`` float image in [0, 1].
        config: parameters; the paper's by default.

    Returns:
        ``(H, W)`` float32 fused image in [0, 1].
    """
    cfg = config or GFFConfig()
    if cfg.base_size < 1 or cfg.r1 < 0 or cfg.r2 < 0 or cfg.eps1 <= 0 or cfg.eps2 <= 0 or cfg.saliency_sigma <= 0:
        raise ValueError(f"gff: config needs base_size >= 1, radii >= 0, eps and sigma > 0; got {cfg}")
    a64, b64 = check_pair(a, b, "gff")
    imgs = (a64, b64)
    bases = [ndimage.uniform_filter(x, size=cfg.base_size, mode="reflect") for x in imgs]
    details = [x - bx for x, bx in zip(imgs, bases)]
    sal = [_saliency(x, cfg) for x in imgs]
    top = np.maximum(sal[0], sal[1])
    masks = [(s >= top).astype(np.float64) for s in sal]
    wb = _normalise([guided_filter(m, x, cfg.r1, cfg.eps1) for m, x in zip(masks, imgs)])
    wd = _normalise([guided_filter(m, x, cfg.r2, cfg.eps2) for m, x in zip(masks, imgs)])
    fused = wb[0] * bases[0] + wb[1] * bases[1] + wd[0] * details[0] + wd[1] * details[1]
    return finish(fused)
