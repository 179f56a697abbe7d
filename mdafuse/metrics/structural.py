"""Structural and perceptual fusion metrics: SSIM and VIF, each scored per source and combined.

SSIM follows Wang et al. (2004): Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, mean
of the SSIM map over the 'valid' region, ``data_range`` 1 on [0, 1] inputs (the same value as
L = 255 on 8-bit data). VIF is the multiscale pixel-domain VIF of Sheikh and Bovik (2006) on the
8-bit scale (noise variance 2 in 8-bit units).
"""

from __future__ import annotations

import math

import numpy as np

from mdafuse.metrics._common import as_grey, filter_valid, gaussian_kernel, prepare, reduce_pair

__all__ = ["ssim_index", "ssim", "vif_index", "vif"]


def ssim_index(
    x: np.ndarray,
    y: np.ndarray,
    *,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    gaussian: bool = True,
    k1: float = 0.01,
    k2: float = 0.03,
) -> float:
    """Mean structural similarity of two images.

    ``SSIM(x, y) = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))``
    with local (weighted, biased) statistics under the window, ``C1 = (k1 L)^2``,
    ``C2 = (k2 L)^2``, ``L = data_range``; the map is averaged over the region where the window
    fits (MATLAB ``filter2(..., 'valid')``, as Wang's reference code).

    Args:
        x: ``(H, W)`` or ``(H, W, 3)`` image in [0, 1]; H and W at least ``win_size``.
        y: image of the same ``(H, W)``.
        data_range: L, the dynamic range of the values (1 for [0, 1]).
        win_size: odd window size (11 by default).
        sigma: Gaussian standard deviation (1.5); ignored when ``gaussian=False``.
        gaussian: Gaussian window (default) or a uniform ``win_size x win_size`` box.
        k1, k2: stability constants.
    """
    gx, gy = as_grey(x, "x"), as_grey(y, "y")
    if gx.shape != gy.shape:
        raise ValueError(f"y must have the same (H, W) as x {gx.shape}; got {gy.shape}")
    return _ssim(gx, gy, data_range=data_range, win_size=win_size, sigma=sigma, gaussian=gaussian, k1=k1, k2=k2)


def _ssim(
    x: np.ndarray, y: np.ndarray, *, data_range: float, win_size: int, sigma: float, gaussian: bool, k1: float, k2: float
) -> float:
    if not (isinstance(win_size, (int, np.integer)) and win_size >= 3 and win_size % 2 == 1):
        raise ValueError(f"win_size must be an odd integer >= 3; got {win_size!r}")
    if not (data_range > 0 and math.isfinite(data_range)):
        raise ValueError(f"data_range must be a positive finite number; got {data_range!r}")
    if min(x.shape) < win_size:
        raise ValueError(f"images must be at least win_size={win_size} pixels on each side; got {x.shape}")
    if gaussian:
        if not sigma > 0:
            raise ValueError(f"sigma must be positive; got {sigma!r}")
        k = gaussian_kernel(win_size, sigma)
    else:
        k = np.full(win_size, 1.0 / win_size)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    mx, my = filter_valid(x, k), filter_valid(y, k)
    sxx = filter_valid(x * x, k) - mx * mx
    syy = filter_valid(y * y, k) - my * my
    sxy = filter_valid(x * y, k) - mx * my
    num = (2.0 * mx * my + c1) * (2.0 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


def ssim(
    a: np.ndarray,
    b: np.ndarray,
    f: np.ndarray,
    *,
    reduction: str = "sum",
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    gaussian: bool = True,
) -> float:
    """SSIM for fusion: structural similarity of F to each source.

    Formula: ``SSIM = SSIM(A, F) + SSIM(B, F)`` (``reduction="mean"`` halves it), each the mean of
    Wang's SSIM map (Gaussian 11 x 11, sigma 1.5, K1 0.01, K2 0.03; see :func:`ssim_index`).

    Reference: Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment:
    from error visibility to structural similarity", IEEE TIP 13(4):600-612, 2004; the summed
    fusion form of VIFB (Zhang et al., CVPRW 2020).

    Better: higher (at most 2 with the sum). Scale: ``data_range=1`` on [0, 1], equivalent to
    L = 255 on 8-bit data.

    Args:
        a, b, f: ``(H, W)`` or ``(H, W, 3)`` images in [0, 1] of one size, at least ``win_size``.
        reduction: ``"sum"`` (default) or ``"mean"``.
        data_range, win_size, sigma, gaussian: window options of :func:`ssim_index`.
    """
    ga, gb, gf = prepare(a, b, f)
    opts = dict(data_range=data_range, win_size=win_size, sigma=sigma, gaussian=gaussian, k1=0.01, k2=0.03)
    return reduce_pair(_ssim(ga, gf, **opts), _ssim(gb, gf, **opts), reduction)


_VIF_EPS = 1e-10


def _vif_terms(ref: np.ndarray, dist: np.ndarray, sigma_nsq: float) -> tuple[float, float]:
    """Information terms (with and without distortion) of the 4-scale pixel VIF, summed."""
    num = 0.0
    den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1  # 17, 9, 5, 3
        k = gaussian_kernel(n, n / 5.0)
        if scale > 1:
            ref = filter_valid(ref, k)[::2, ::2]
            dist = filter_valid(dist, k)[::2, ::2]
        if min(ref.shape) < n:
            raise ValueError(f"images are too small for the 4-scale VIF (scale {scale} needs {n} pixels, has {ref.shape})")
        mu1, mu2 = filter_valid(ref, k), filter_valid(dist, k)
        s1 = np.maximum(filter_valid(ref * ref, k) - mu1 * mu1, 0.0)
        s2 = np.maximum(filter_valid(dist * dist, k) - mu2 * mu2, 0.0)
        s12 = filter_valid(ref * dist, k) - mu1 * mu2
        g = s12 / (s1 + _VIF_EPS)
        sv = s2 - g * s12
        flat1 = s1 < _VIF_EPS
        g[flat1] = 0.0
        sv[flat1] = s2[flat1]
        s1[flat1] = 0.0
        flat2 = s2 < _VIF_EPS
        g[flat2] = 0.0
        sv[flat2] = 0.0
        neg = g < 0
        sv[neg] = s2[neg]
        g[neg] = 0.0
        sv = np.maximum(sv, _VIF_EPS)
        num += float(np.sum(np.log10(1.0 + g * g * s1 / (sv + sigma_nsq))))
        den += float(np.sum(np.log10(1.0 + s1 / sigma_nsq)))
    return num, den


def vif_index(ref: np.ndarray, dist: np.ndarray, *, scale: float = 255.0, sigma_nsq: float = 2.0) -> float:
    """Multiscale pixel-domain visual information fidelity of ``dist`` with respect to ``ref``.

    Four scales with Gaussian windows of size ``N = 2^(5-s) + 1`` (17, 9, 5, 3) and sigma N / 5;
    between scales the image is filtered and subsampled by 2. With local statistics under the
    window, gain ``g = s_rd / s_r^2`` and distortion variance ``s_v^2 = s_d^2 - g s_rd``:

    ``VIF = sum log10(1 + g^2 s_r^2 / (s_v^2 + s_n^2)) / sum log10(1 + s_r^2 / s_n^2)``

    summed over all positions and scales; ``s_n^2 = sigma_nsq``. ``VIF(x, x) = 1``.

    Args:
        ref: reference ``(H, W)`` or ``(H, W, 3)`` in [0, 1]; at least 41 pixels a side.
        dist: image of the same ``(H, W)``.
        scale: multiplier applied to both images first: 255 (default, the 8-bit scale the noise
            variance 2 was set for) or 1 (as implementations on [0, 1] data; values differ).
        sigma_nsq: visual noise variance in the units after scaling.

    Returns:
        VIF; 1 for identical images, below 1 for lossy ones; 0.0 when ``ref`` is constant.
    """
    gr, gd = as_grey(ref, "ref"), as_grey(dist, "dist")
    if gr.shape != gd.shape:
        raise ValueError(f"dist must have the same (H, W) as ref {gr.shape}; got {gd.shape}")
    return _vif(gr, gd, scale, sigma_nsq)


def _vif(ref: np.ndarray, dist: np.ndarray, scale: float, sigma_nsq: float) -> float:
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive finite number (255 or 1); got {scale!r}")
    if not sigma_nsq > 0:
        raise ValueError(f"sigma_nsq must be positive; got {sigma_nsq!r}")
    num, den = _vif_terms(ref * float(scale), dist * float(scale), float(sigma_nsq))
    if den == 0.0:
        return 0.0
    return num / den


def vif(
    a: np.ndarray,
    b: np.ndarray,
    f: np.ndarray,
    *,
    reduction: str = "sum",
    scale: float = 255.0,
    sigma_nsq: float = 2.0,
) -> float:
    """VIF for fusion: visual information fidelity of F with respect to each source.

    Formula: ``VIF = VIF(A, F) + VIF(B, F)`` (``reduction="mean"`` halves it), each the 4-scale
    pixel-domain VIF of :func:`vif_index` with the source as reference.

    Reference: H. R. Sheikh, A. C. Bovik, "Image information and visual quality", IEEE TIP
    15(2):430-444, 2006 (pixel-domain multiscale form). Han et al. 2013 ("A new image fusion
    performance metric based on visual information fidelity", Information Fusion 14(2):127-135)
    define a different fusion-specific VIFF; it is not this function. Fusion papers that report
    VIF per source pair differ on summing or averaging, hence ``reduction``.

    Better: higher (1 per source when F equals it; above 1 when F is contrast-enhanced).
    Scale: 8-bit (``scale=255``, noise variance 2) by default; ``scale=1`` runs on [0, 1].

    Args:
        a, b, f: ``(H, W)`` or ``(H, W, 3)`` images in [0, 1] of one size (at least 41 a side).
        reduction: ``"sum"`` (default) or ``"mean"``.
        scale: 255 (default) or 1.
        sigma_nsq: visual noise variance (2).
    """
    ga, gb, gf = prepare(a, b, f)
    return reduce_pair(_vif(ga, gf, scale, sigma_nsq), _vif(gb, gf, scale, sigma_nsq), reduction)
