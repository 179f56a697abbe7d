"""Gradient-based fusion metrics: SF, AG, rSFe and Qabf.

SF and AG are computed on the 8-bit scale (``255 x``) as in VIFB (Zhang et al., CVPRW 2020);
rSFe and Qabf are ratios and do not depend on the scale.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from mdafuse.metrics._common import as_grey, prepare

__all__ = [
    "spatial_frequency",
    "extended_spatial_frequency",
    "sf",
    "ag",
    "directional_gradients",
    "rsfe",
    "qabf",
    "QABF_CONSTANTS",
]

DIAGONAL_WEIGHT = 1.0 / math.sqrt(2.0)
"""Distance weight ``w_d`` of the diagonal terms of the extended spatial frequency (Zheng et al.)."""


def spatial_frequency(x: np.ndarray, *, scale: float = 255.0) -> float:
    """Spatial frequency of one image (row and column first differences).

    ``RF^2 = mean_{i,j} (I(i, j) - I(i, j-1))^2``, ``CF^2 = mean_{i,j} (I(i, j) - I(i-1, j))^2``
    (each mean over the differences that exist), ``SF = sqrt(RF^2 + CF^2)`` on ``I = scale x``.

    Args:
        x: ``(H, W)`` or ``(H, W, 3)`` image in [0, 1], at least 2 x 2.
        scale: 255 (8-bit, default) or 1.
    """
    g = as_grey(x, "x")
    return _sf(g, scale)


def _sf(g: np.ndarray, scale: float) -> float:
    if min(g.shape) < 2:
        raise ValueError(f"images must be at least 2 x 2 for spatial frequency; got {g.shape}")
    i = g * float(scale)
    rf2 = float(np.mean(np.diff(i, axis=1) ** 2))
    cf2 = float(np.mean(np.diff(i, axis=0) ** 2))
    return math.sqrt(rf2 + cf2)


def sf(a: np.ndarray, b: np.ndarray, f: np.ndarray, *, scale: float = 255.0) -> float:
    """SF: spatial frequency (overall activity) of the fused image.

    Formula: ``SF = sqrt(RF^2 + CF^2)`` with ``RF``, ``CF`` the root-mean-square horizontal and
    vertical first differences of ``255 F`` (see :func:`spatial_frequency`).

    Reference: A. M. Eskicioglu, P. S. Fisher, "Image quality measures and their performance",
    IEEE Trans. Commun. 43(12):2959-2965, 1995; 8-bit convention of VIFB.

    Better: higher. Scale: 8-bit (``scale=255``) by default.
    """
    _, _, gf = prepare(a, b, f)
    return _sf(gf, scale)


def ag(a: np.ndarray, b: np.ndarray, f: np.ndarray, *, scale: float = 255.0) -> float:
    """AG: average gradient (sharpness) of the fused image.

    Formula: ``AG = 1 / ((M-1)(N-1)) sum_{i<M, j<N} sqrt((dx^2 + dy^2) / 2)`` with forward
    differences ``dx = I(i, j+1) - I(i, j)``, ``dy = I(i+1, j) - I(i, j)`` of ``I = 255 F``.

    Reference: G. Cui, H. Feng, Z. Xu, Q. Li, Y. Chen, "Detail preserved fusion of visible and
    infrared images using regional saliency extraction and multi-scale image decomposition",
    Optics Communications 341:199-209, 2015 (as VIFB).

    Better: higher. Scale: 8-bit (``scale=255``) by default.
    """
    _, _, gf = prepare(a, b, f)
    if min(gf.shape) < 2:
        raise ValueError(f"f must be at least 2 x 2 for AG; got {gf.shape}")
    i = gf * float(scale)
    dx = i[:-1, 1:] - i[:-1, :-1]
    dy = i[1:, :-1] - i[:-1, :-1]
    return float(np.mean(np.sqrt(0.5 * (dx * dx + dy * dy))))


def directional_gradients(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First differences over the last two axes along row, column, main and secondary diagonal.

    Returns ``(I(i,j) - I(i,j-1), I(i,j) - I(i-1,j), I(i,j) - I(i-1,j-1), I(i,j) - I(i-1,j+1))``
    with shapes ``(H, W-1), (H-1, W), (H-1, W-1), (H-1, W-1)`` for ``(H, W)`` input; leading axes
    (a torch ``(B, C, H, W)`` batch in the training losses) are kept.
    """
    return (
        g[..., :, 1:] - g[..., :, :-1],
        g[..., 1:, :] - g[..., :-1, :],
        g[..., 1:, 1:] - g[..., :-1, :-1],
        g[..., 1:, :-1] - g[..., :-1, 1:],
    )


def _sf4(grads: tuple[np.ndarray, ...], npix: int) -> float:
    rf2 = float(np.sum(grads[0] ** 2)) / npix
    cf2 = float(np.sum(grads[1] ** 2)) / npix
    md2 = DIAGONAL_WEIGHT * float(np.sum(grads[2] ** 2)) / npix
    sd2 = DIAGONAL_WEIGHT * float(np.sum(grads[3] ** 2)) / npix
    return math.sqrt(rf2 + cf2 + md2 + sd2)


def extended_spatial_frequency(x: np.ndarray) -> float:
    """Four-direction spatial frequency of Zheng et al. (2007), on [0, 1] values.

    ``SF = sqrt(RF^2 + CF^2 + MDF^2 + SDF^2)``, each term a sum of squared first differences
    (row, column, main diagonal, secondary diagonal) divided by ``M N``, the diagonal terms
    multiplied by ``w_d = 1/sqrt(2)`` (see :func:`rsfe`).

    Args:
        x: ``(H, W)`` or ``(H, W, 3)`` image in [0, 1], at least 2 x 2.
    """
    g = as_grey(x, "x")
    if min(g.shape) < 2:
        raise ValueError(f"x must be at least 2 x 2 for spatial frequency; got {g.shape}")
    return _sf4(directional_gradients(g), g.size)


def rsfe(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """rSFe: ratio of spatial-frequency error of the fused image against a reference activity.

    Formula (Zheng et al.): the extended spatial frequency of an image is
    ``SF = sqrt(RF^2 + CF^2 + MDF^2 + SDF^2)`` with ``RF^2 = 1/(MN) sum (I(i,j) - I(i,j-1))^2``,
    ``CF^2 = 1/(MN) sum (I(i,j) - I(i-1,j))^2``, ``MDF^2 = w_d/(MN) sum (I(i,j) - I(i-1,j-1))^2``,
    ``SDF^2 = w_d/(MN) sum (I(i,j) - I(i-1,j+1))^2`` and diagonal distance weight
    ``w_d = 1/sqrt(2)``. The reference ``SF_R`` uses, in each direction D, the gradient
    ``Grad_D(R) = max(|Grad_D(A)|, |Grad_D(B)|)`` element-wise. Then
    ``rSFe = (SF_F - SF_R) / SF_R``: negative means F lost activity (blur), positive means it
    gained some (noise, artefacts). ``SF_R = 0`` (both sources constant) gives 0 when F is
    constant too and ``inf`` otherwise.

    Reference: Y. Zheng, E. A. Essock, B. C. Hansen, A. M. Haun, "A new metric based on extended
    spatial frequency and its application to DWT based fusion algorithms", Information Fusion
    8(2):177-192, 2007.

    Better: smaller ``|rSFe|`` (0 is ideal). Scale-free (a ratio).
    """
    ga, gb, gf = prepare(a, b, f)
    if min(ga.shape) < 2:
        raise ValueError(f"images must be at least 2 x 2 for rSFe; got {ga.shape}")
    npix = ga.size
    grads_a = directional_gradients(ga)
    grads_b = directional_gradients(gb)
    ref = tuple(np.maximum(np.abs(da), np.abs(db)) for da, db in zip(grads_a, grads_b))
    sf_r = _sf4(ref, npix)
    sf_f = _sf4(directional_gradients(gf), npix)
    if sf_r == 0.0:
        return 0.0 if sf_f == 0.0 else math.inf
    return (sf_f - sf_r) / sf_r


QABF_CONSTANTS = {"gamma_g": 0.9994, "kappa_g": -15.0, "sigma_g": 0.5, "gamma_a": 0.9879, "kappa_a": -22.0, "sigma_a": 0.8}
"""Sigmoid constants of Xydeas & Petrovic (2000) for edge strength (g) and orientation (a)."""


def _sobel(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gx = ndimage.sobel(g, axis=1, mode="nearest")
    gy = ndimage.sobel(g, axis=0, mode="nearest")
    strength = np.hypot(gx, gy)
    alpha = np.arctan2(gy, gx)
    alpha = np.where(alpha > math.pi / 2, alpha - math.pi, alpha)
    alpha = np.where(alpha <= -math.pi / 2, alpha + math.pi, alpha)
    return strength, alpha


def _edge_preservation(gx: np.ndarray, ax: np.ndarray, gf: np.ndarray, af: np.ndarray) -> np.ndarray:
    c = QABF_CONSTANTS
    hi = np.maximum(gx, gf)
    rel = np.divide(np.minimum(gx, gf), hi, out=np.zeros_like(hi), where=hi > 0)
    orient = 1.0 - np.abs(ax - af) / (math.pi / 2)
    q_g = c["gamma_g"] / (1.0 + np.exp(c["kappa_g"] * (rel - c["sigma_g"])))
    q_a = c["gamma_a"] / (1.0 + np.exp(c["kappa_a"] * (orient - c["sigma_a"])))
    return q_g * q_a


def qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray, *, exponent: float = 1.0) -> float:
    """Qabf: edge-information preservation of Xydeas and Petrovic (Q^{AB/F}).

    Formula: Sobel gradients give edge strength ``g = sqrt(sx^2 + sy^2)`` and orientation
    ``alpha = atan(sy / sx)`` (in (-pi/2, pi/2]). For source X: relative strength
    ``G^XF = min(g_X, g_F) / max(g_X, g_F)``, relative orientation
    ``A^XF = 1 - |alpha_X - alpha_F| / (pi/2)``, preservation
    ``Q^XF = Gamma_g / (1 + exp(k_g (G^XF - s_g))) * Gamma_a / (1 + exp(k_a (A^XF - s_a)))``
    with ``Gamma_g = 0.9994, k_g = -15, s_g = 0.5, Gamma_a = 0.9879, k_a = -22, s_a = 0.8``, and
    ``Qabf = sum (Q^AF w_A + Q^BF w_B) / sum (w_A + w_B)`` with ``w_X = g_X^L`` (``L = exponent``).
    Borders are replicated for the Sobel filter. The best attainable value with these constants is
    ``Q_g(1) Q_a(1) ~ 0.9748``; 0 when both sources are constant.

    Reference: C. S. Xydeas, V. Petrovic, "Objective image fusion performance measure",
    Electronics Letters 36(4):308-309, 2000.

    Better: higher (in [0, 1)). Scale-free.

    Args:
        a, b, f: ``(H, W)`` or ``(H, W, 3)`` images in [0, 1] of one size.
        exponent: weight exponent L (1 by default).
    """
    if not (exponent >= 0 and math.isfinite(exponent)):
        raise ValueError(f"exponent must be a non-negative finite number; got {exponent!r}")
    ga, gb, gf = prepare(a, b, f)
    sa, aa = _sobel(ga)
    sb, ab = _sobel(gb)
    sf_, af = _sobel(gf)
    wa = sa**exponent
    wb = sb**exponent
    den = float(np.sum(wa + wb))
    if den == 0.0:
        return 0.0
    num = float(np.sum(_edge_preservation(sa, aa, sf_, af) * wa + _edge_preservation(sb, ab, sf_, af) * wb))
    return num / den
