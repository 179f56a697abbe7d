"""Statistical fusion metrics: SD, CC, SCD, MSE and PSNR.

Conventions follow VIFB (Zhang et al., CVPRW 2020): SD on the 8-bit scale (``255 x``); MSE and
PSNR on [0, 1] (VIFB divides by 255 before both); correlations are scale-free.
"""

from __future__ import annotations

import math

import numpy as np

from mdafuse.metrics._common import pearson, prepare, reduce_pair

__all__ = ["sd", "cc", "scd", "mse", "psnr"]


def sd(a: np.ndarray, b: np.ndarray, f: np.ndarray, *, ddof: int = 0, scale: float = 255.0) -> float:
    """SD: standard deviation (contrast) of the fused image.

    Formula: ``SD = sqrt(1 / (M N - ddof) * sum (s F(i, j) - mean(s F))^2)`` with ``s = scale``.

    Reference: J. Ma, Y. Ma, C. Li, "Infrared and visible image fusion methods and applications:
    a survey", Information Fusion 45:153-178, 2019; population form (``ddof=0``) as in VIFB.

    Better: higher. Scale: 8-bit (``scale=255``) by default; ``scale=1`` for [0, 1].

    Args:
        a, b, f: ``(H, W)`` or ``(H, W, 3)`` images in [0, 1] of one size (only F is used).
        ddof: 0 (population, default) or 1 (sample).
        scale: multiplier applied to F before the statistic.
    """
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 or 1; got {ddof!r}")
    _, _, gf = prepare(a, b, f)
    if gf.size <= ddof:
        raise ValueError(f"f must have more than {ddof} pixels for ddof={ddof}; got {gf.size}")
    return float(np.std(gf * float(scale), ddof=ddof))


def cc(a: np.ndarray, b: np.ndarray, f: np.ndarray, *, reduction: str = "mean") -> float:
    """CC: correlation coefficient between each source and the fused image.

    Formula: ``CC = (r(A, F) + r(B, F)) / 2`` with ``r`` the Pearson correlation
    ``sum (X - mean X)(F - mean F) / sqrt(sum (X - mean X)^2 sum (F - mean F)^2)``;
    ``r = 0`` when either image is constant.

    Reference: M. Deshmukh, U. Bhosale, "Image fusion and image quality assessment of fused
    images", Int. J. Image Process. 4(5):484, 2010 (mean form as in VIFB).

    Better: higher (at most 1 with the mean). Scale-free.

    Args:
        a, b, f: ``(H, W)`` or ``(H, W, 3)`` images in [0, 1] of one size.
        reduction: ``"mean"`` (default) or ``"sum"`` of the two correlations.
    """
    ga, gb, gf = prepare(a, b, f)
    return reduce_pair(pearson(ga, gf), pearson(gb, gf), reduction)


def scd(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """SCD: sum of the correlations of differences.

    Formula: ``SCD = r(F - B, A) + r(F - A, B)``: the difference ``F - B`` estimates what F took
    from A, and is correlated with A (and the same for B). ``r`` is the Pearson correlation, 0 when
    an input is constant. For ``F = A + B`` SCD is 2; for ``F = A`` it is ``r(A - B, A)``.

    Reference: V. Aslantas, E. Bendes, "A new image quality metric for image fusion: the sum of
    the correlations of differences", AEU Int. J. Electron. Commun. 69(12):1890-1896, 2015.

    Better: higher (range [-2, 2]). Scale-free.
    """
    ga, gb, gf = prepare(a, b, f)
    return pearson(gf - gb, ga) + pearson(gf - ga, gb)


def _mse(x: np.ndarray, y: np.ndarray) -> float:
    d = x - y
    return float(np.mean(d * d))


def mse(a: np.ndarray, b: np.ndarray, f: np.ndarray, *, scale: float = 1.0, reduction: str = "mean") -> float:
    """MSE: mean squared error of the fused image against each source.

    Formula: ``MSE = (MSE(A, F) + MSE(B, F)) / 2``, ``MSE(X, F) = 1 / (M N) sum (s X - s F)^2``
    with ``s = scale``.

    Reference: P. Jagalingam, A. V. Hegde, "A review of quality metrics for fused image", Aquatic
    Procedia 4:133-142, 2015 (mean over the sources on [0, 1], as VIFB).

    Better: lower. Scale: [0, 1] (``scale=1``) by default; ``scale=255`` gives 8-bit units
    (values grow by 255^2).

    Args:
        a, b, f: ``(H, W)`` or ``(H, W, 3)`` images in [0, 1] of one size.
        scale: multiplier applied to the images before differencing.
        reduction: ``"mean"`` (default) or ``"sum"`` of the two errors.
    """
    ga, gb, gf = prepare(a, b, f)
    s2 = float(scale) ** 2
    return reduce_pair(s2 * _mse(ga, gf), s2 * _mse(gb, gf), reduction)


def psnr(a: np.ndarray, b: np.ndarray, f: np.ndarray, *, data_range: float = 1.0) -> float:
    """PSNR of the fused image against both sources, in dB.

    Formula: ``PSNR = 10 log10(peak^2 / MSE)`` with ``MSE = (MSE(A, F) + MSE(B, F)) / 2`` on [0, 1]
    and ``peak = data_range`` (1 on [0, 1], identical to peak 255 on the 8-bit scale). Returns
    ``inf`` when F equals both sources.

    Reference: P. Jagalingam, A. V. Hegde, "A review of quality metrics for fused image", Aquatic
    Procedia 4:133-142, 2015; VIFB convention.

    Better: higher.

    Args:
        a, b, f: ``(H, W)`` or ``(H, W, 3)`` images in [0, 1] of one size.
        data_range: peak value on the [0, 1] scale (default 1).
    """
    if not (data_range > 0 and math.isfinite(data_range)):
        raise ValueError(f"data_range must be a positive finite number; got {data_range!r}")
    ga, gb, gf = prepare(a, b, f)
    err = 0.5 * (_mse(ga, gf) + _mse(gb, gf))
    if err == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / err)
