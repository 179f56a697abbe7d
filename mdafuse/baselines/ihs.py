"""IHS (intensity-hue-saturation) substitution fusion.

The linear IHS transform with ``I = (R + G + B) / 3`` and the "fast IHS" substitution of
T.-M. Tu, S.-C. Su, H.-C. Shyu, P. S. Huang, "A new look at IHS-like image fusion methods",
Information Fusion 2(3):177–186, 2001: replacing ``I`` by the MR image and inverting the
transform equals adding ``MR - I`` to every RGB channel, ``F = RGB + (MR - I)``. Hue and
saturation (the colour of the functional image) are kept; its intensity is replaced by the
anatomy. Used for MR-PET by e.g. S. Daneshvar, H. Ghassemian, "MRI and PET image fusion by
combining IHS and retina-inspired models", Information Fusion 11(2):114–123, 2010.

On grey inputs there is no hue or saturation to keep: the functional image is all intensity and
substitution returns the MR image unchanged. :func:`fuse` therefore returns ``a`` (clipped to
[0, 1]) for a grey pair, so IHS carries no functional information on MR-CT or grey SPECT; use
:func:`fuse_rgb` (which :func:`mdafuse.baselines.fuse_color` does) for colour functional images.
"""

from __future__ import annotations

import numpy as np

from mdafuse.baselines._common import check_pair, finish

__all__ = ["fuse", "fuse_rgb"]


def fuse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Grey IHS substitution: the intensity ``b`` is replaced by ``a``, so the result is ``a``.

    Args:
        a: ``(H, W)`` float image in [0, 1] (MR).
        b: ``(H, W)`` float image in [0, 1] (functional intensity); checked but not used.

    Returns:
        ``(H, W)`` float32 image equal to ``a``.
    """
    a64, _ = check_pair(a, b, "ihs")
    return finish(a64)


def fuse_rgb(mr: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Fast IHS substitution of a colour functional image's intensity by the MR image.

    Args:
        mr: ``(H, W)`` float MR image in [0, 1].
        rgb: ``(H, W, 3)`` float RGB functional image in [0, 1].

    Returns:
        ``(H, W, 3)`` float32 RGB in [0, 1]: ``clip(rgb + (mr - mean(rgb, channels)))``.

    Raises:
        ValueError: wrong shapes or value ranges.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"ihs: rgb must have shape (H, W, 3); got {rgb.shape}")
    intensity = rgb.astype(np.float64).mean(axis=2)
    mr64, intensity = check_pair(mr, intensity, "ihs")
    if not (rgb.min() >= -1e-4 and rgb.max() <= 1.0 + 1e-4):
        raise ValueError(f"ihs: rgb must hold values in [0, 1]; got range [{rgb.min():.4g}, {rgb.max():.4g}]")
    return finish(rgb.astype(np.float64) + (mr64 - intensity)[..., None])
