"""Information-theoretic fusion metrics: entropy (EN) and mutual information (MI).

Both use the convention of the fusion benchmarks (VIFB, Zhang et al. 2020; MEFB, Zhang 2021):
images in [0, 1] are mapped to 8-bit grey levels ``round(255 x)`` and counted in a 256-bin
histogram (a 256 x 256 joint histogram for MI). Logarithms are base 2 (bits) by default;
``base=math.e`` gives nats.
"""

from __future__ import annotations

import numpy as np

from mdafuse.metrics._common import as_grey, check_base, prepare, quantize, reduce_pair

__all__ = ["entropy", "mutual_information", "en", "mi"]

_LEVELS = 256


def _entropy_of_counts(counts: np.ndarray, base: float) -> float:
    p = counts[counts > 0].astype(np.float64)
    p /= p.sum()
    return float(-np.sum(p * np.log(p)) / np.log(base))


def entropy(x: np.ndarray, *, base: float = 2.0) -> float:
    """Shannon entropy of one image's 256-level grey histogram.

    ``H(X) = -sum_l p_l log p_l`` with ``p_l`` the fraction of pixels at level
    ``l = round(255 x)``.

    Args:
        x: ``(H, W)`` or ``(H, W, 3)`` image in [0, 1] (colour: luminance).
        base: logarithm base; 2 gives bits (default), ``math.e`` nats.

    Returns:
        Entropy in ``[0, log_base(256)]`` (8 bits at most).
    """
    base = check_base(base)
    q = quantize(as_grey(x, "x"), _LEVELS)
    return _entropy_of_counts(np.bincount(q.ravel(), minlength=_LEVELS), base)


def mutual_information(x: np.ndarray, y: np.ndarray, *, base: float = 2.0) -> float:
    """Mutual information of two images from their 256 x 256 joint grey-level histogram.

    ``MI(X, Y) = H(X) + H(Y) - H(X, Y) = sum p(x, y) log(p(x, y) / (p(x) p(y)))``; so
    ``MI(X, X) = H(X)``.

    Args:
        x: ``(H, W)`` or ``(H, W, 3)`` image in [0, 1].
        y: image of the same ``(H, W)``.
        base: logarithm base; 2 gives bits (default), ``math.e`` nats.
    """
    base = check_base(base)
    qx = quantize(as_grey(x, "x"), _LEVELS)
    qy = quantize(as_grey(y, "y"), _LEVELS)
    if qx.shape != qy.shape:
        raise ValueError(f"y must have the same (H, W) as x {qx.shape}; got {qy.shape}")
    return _mi_levels(qx, qy, base)


def _mi_levels(qx: np.ndarray, qy: np.ndarray, base: float) -> float:
    joint = np.bincount((qx * _LEVELS + qy).ravel(), minlength=_LEVELS * _LEVELS).reshape(_LEVELS, _LEVELS)
    hx = _entropy_of_counts(joint.sum(axis=1), base)
    hy = _entropy_of_counts(joint.sum(axis=0), base)
    hxy = _entropy_of_counts(joint.ravel(), base)
    return max(hx + hy - hxy, 0.0)


def en(a: np.ndarray, b: np.ndarray, f: np.ndarray, *, base: float = 2.0) -> float:
    """EN: Shannon entropy of the fused image (A and B are validated but not used).

    Formula: ``EN = -sum_{l=0}^{255} p_F(l) log2 p_F(l)`` over the 256-bin histogram of
    ``round(255 F)``.

    Reference: J. W. Roberts, J. A. van Aardt, F. B. Ahmed, "Assessment of image fusion
    procedures using entropy, image quality, and multispectral classification", J. Appl. Remote
    Sens. 2(1):023522, 2008; convention of VIFB (Zhang et al., CVPRW 2020).

    Better: higher (more information in F). Scale: 8-bit levels, bits by default.

    Args:
        a, b, f: ``(H, W)`` or ``(H, W, 3)`` images in [0, 1] of one size.
        base: 2 (bits, default) or ``math.e`` (nats).
    """
    _, _, gf = prepare(a, b, f)
    return entropy(gf, base=base)


def mi(a: np.ndarray, b: np.ndarray, f: np.ndarray, *, base: float = 2.0, reduction: str = "sum") -> float:
    """MI: mutual information carried from both sources into the fused image.

    Formula: ``MI = MI(A, F) + MI(B, F)``, each from the 256 x 256 joint histogram of
    ``round(255 .)``, ``MI(X, F) = sum p(x, f) log2(p(x, f) / (p(x) p(f)))``.

    Reference: G. Qu, D. Zhang, P. Yan, "Information measure for performance of image fusion",
    Electronics Letters 38(7):313-315, 2002 (the summed form used by VIFB).

    Better: higher. Scale: 8-bit levels, bits by default.

    Args:
        a, b, f: ``(H, W)`` or ``(H, W, 3)`` images in [0, 1] of one size.
        base: 2 (bits, default) or ``math.e`` (nats).
        reduction: ``"sum"`` (default, Qu et al.) or ``"mean"`` of the two terms.
    """
    base = check_base(base)
    ga, gb, gf = prepare(a, b, f)
    qa, qb, qf = quantize(ga, _LEVELS), quantize(gb, _LEVELS), quantize(gf, _LEVELS)
    return reduce_pair(_mi_levels(qa, qf, base), _mi_levels(qb, qf, base), reduction)
