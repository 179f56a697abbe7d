"""Discrete-wavelet-transform fusion.

H. Li, B. S. Manjunath, S. K. Mitra, "Multisensor image fusion using the wavelet transform",
Graphical Models and Image Processing 57(3):235–245, 1995: decompose both images with a 2-D DWT,
average the approximation (low-pass) coefficients, keep per coefficient the detail (high-pass)
coefficient with the larger absolute value, and invert. The transform is PyWavelets' ``wavedec2``
with symmetric extension; the reconstruction is cropped back to the input size (odd sizes grow
by one sample per level in the transform).
"""

from __future__ import annotations

import warnings

import numpy as np
import pywt

from mdafuse.baselines._common import check_pair, finish

__all__ = ["fuse"]


def fuse(a: np.ndarray, b: np.ndarray, wavelet: str = "db2", level: int = 3) -> np.ndarray:
    """Fuse two grey images in the wavelet domain.

    Args:
        a: ``(H, W)`` float image in [0, 1].
        b: ``(H, W)`` float image in [0, 1].
        wavelet: any discrete wavelet name known to PyWavelets (``pywt.wavelist(kind="discrete")``).
        level: decomposition levels (>= 1); capped at ``pywt.dwt_max_level`` for small images
            (at least one level is always used).

    Returns:
        ``(H, W)`` float32 fused image in [0, 1].

    Raises:
        ValueError: bad inputs, unknown ``wavelet`` or ``level < 1``.
    """
    if wavelet not in pywt.wavelist(kind="discrete"):
        raise ValueError(f"dwt: wavelet must be a discrete PyWavelets wavelet such as 'db2' or 'haar'; got {wavelet!r}")
    if int(level) != level or level < 1:
        raise ValueError(f"dwt: level must be an integer >= 1; got {level}")
    a64, b64 = check_pair(a, b, "dwt")
    w = pywt.Wavelet(wavelet)
    n = max(1, min(int(level), pywt.dwt_max_level(min(a64.shape), w.dec_len)))
    with warnings.catch_warnings():
        # Images smaller than the filter still get one level; PyWavelets warns about the borders.
        warnings.filterwarnings("ignore", message="Level value of", category=UserWarning)
        ca = pywt.wavedec2(a64, w, mode="symmetric", level=n)
        cb = pywt.wavedec2(b64, w, mode="symmetric", level=n)
    fused: list = [0.5 * (ca[0] + cb[0])]
    for da, db in zip(ca[1:], cb[1:]):
        fused.append(tuple(np.where(np.abs(x) >= np.abs(y), x, y) for x, y in zip(da, db)))
    rec = pywt.waverec2(fused, w, mode="symmetric")
    return finish(rec[: a64.shape[0], : a64.shape[1]])
