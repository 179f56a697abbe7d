"""Non-subsampled shearlet-style fusion (multiscale, multidirectional, shift-invariant).

The transform follows the non-subsampled shearlet transform (NSST) of G. Easley, D. Labate and W.-Q. Lim,
"Sparse directional image representations using the discrete shearlet transform", Applied and
Computational Harmonic Analysis 25(1):25–46, 2008: a non-subsampled pyramid splits the image into a
low-pass image and band-pass images at full size, and each band-pass image is split further into
directional subbands by filters that tile the frequency plane by orientation. The fusion rule is the
usual one of NSST-based fusion (e.g. Q. Miao, C. Shi, P. Xu, M. Yang, Y. Shi, "A novel algorithm of image
fusion using shearlets", Optics Communications 284(6):1540–1547, 2011): average the low-pass images and
keep, per directional coefficient, the one with the larger absolute value.

Simplification, stated: the directional filters here are an exact angular partition of unity in the
Fourier domain (squared-cosine wedges, ``sum_k W_k = 1``) instead of shear matrices on a pseudo-polar
grid, and the pyramid is Gaussian in frequency; both are non-subsampled, so the decomposition is
shift-invariant and the subbands add back to the image exactly. Borders are handled by symmetric
padding before the FFT.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from mdafuse.baselines._common import check_pair, finish

__all__ = ["fuse", "decompose", "direction_windows"]


def _frequencies(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    wy = np.fft.fftfreq(shape[0])[:, None] * np.ones((1, shape[1]))
    wx = np.fft.fftfreq(shape[1])[None, :] * np.ones((shape[0], 1))
    return wy, wx


def direction_windows(shape: tuple[int, int], directions: int) -> np.ndarray:
    """``(directions, H, W)`` Fourier-domain wedges that add up to 1 everywhere (a read-only, cached array).

    Wedge ``k`` is centred on orientation ``k * pi / directions`` of the frequency vector (0: frequencies
    along x, i.e. structure that varies along x such as vertical edges) and falls off as a squared cosine
    to zero at the neighbouring centres; orientation is taken modulo pi so each wedge is point-symmetric.
    """
    if int(directions) != directions or directions < 1:
        raise ValueError(f"nsst: directions must be an integer >= 1; got {directions}")
    return _direction_windows(tuple(shape), int(directions))


@lru_cache(maxsize=16)
def _direction_windows(shape: tuple[int, int], directions: int) -> np.ndarray:
    # both images of a pair, and every pair of one size, use the same wedges
    wy, wx = _frequencies(shape)
    theta = np.mod(np.arctan2(wy, wx), np.pi)
    step = np.pi / directions
    windows = np.zeros((directions, *shape))
    for k in range(directions):
        # circular distance to the centre on the half circle [0, pi)
        d = np.abs(np.mod(theta - k * step + np.pi / 2, np.pi) - np.pi / 2)
        inside = d < step
        windows[k][inside] = np.cos(d[inside] * np.pi / (2 * step)) ** 2
    windows.setflags(write=False)
    return windows


def decompose(x: np.ndarray, levels: int = 3, directions: tuple[int, ...] | int = 8) -> tuple[np.ndarray, list[np.ndarray]]:
    """Low-pass image and per level ``(directions, H, W)`` directional subbands of a grey image.

    Level 1 is the finest. ``low + sum of every subband`` is ``x`` (up to floating-point rounding).
    ``directions`` is one count for all levels or one per level.
    """
    if int(levels) != levels or levels < 1:
        raise ValueError(f"nsst: levels must be an integer >= 1; got {levels}")
    counts = (directions,) * levels if isinstance(directions, int) else tuple(directions)
    if len(counts) != levels:
        raise ValueError(f"nsst: give one direction count or {levels} of them; got {directions}")
    spectrum = np.fft.fft2(x)
    wy, wx = _frequencies(x.shape)
    radius2 = wy**2 + wx**2
    previous = np.ones(x.shape)
    bands = []
    for level, count in enumerate(counts, start=1):
        # Gaussian low-pass whose width halves per level: the frequency-domain counterpart of the a-trous pyramid
        sigma = 0.25 / 2 ** (level - 1)
        low = np.exp(-radius2 / (2 * sigma**2))
        band = spectrum * (previous - low)
        bands.append(np.real(np.fft.ifft2(band[None] * direction_windows(x.shape, count))))
        previous = low
    return np.real(np.fft.ifft2(spectrum * previous)), bands


def fuse(a: np.ndarray, b: np.ndarray, levels: int = 3, directions: tuple[int, ...] | int = (16, 8, 8), pad: int = 16) -> np.ndarray:
    """Fuse two grey images in a non-subsampled shearlet-style domain.

    Args:
        a: ``(H, W)`` float image in [0, 1].
        b: ``(H, W)`` float image in [0, 1].
        levels: band-pass levels (>= 1).
        directions: directional subbands per level, finest first (one count for all levels, or one per level).
        pad: symmetric padding in pixels on each side before the FFT (keeps the periodic transform
            from mixing opposite borders).

    Returns:
        ``(H, W)`` float32 fused image in [0, 1].

    Raises:
        ValueError: bad inputs, ``levels < 1``, a direction count below 1 or ``pad < 0``.
    """
    if int(pad) != pad or pad < 0:
        raise ValueError(f"nsst: pad must be an integer >= 0; got {pad}")
    a64, b64 = check_pair(a, b, "nsst")
    pa, pb = (np.pad(x, int(pad), mode="symmetric") for x in (a64, b64))
    low_a, bands_a = decompose(pa, levels, directions)
    low_b, bands_b = decompose(pb, levels, directions)
    fused = 0.5 * (low_a + low_b)
    for ba, bb in zip(bands_a, bands_b):
        fused += np.where(np.abs(ba) >= np.abs(bb), ba, bb).sum(axis=0)
    h, w = a64.shape
    return finish(fused[pad : pad + h, pad : pad + w])
