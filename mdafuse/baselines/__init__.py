"""Classical image-fusion baselines, one module per method.

Every method is ``fuse(a, b, **options) -> f`` on grey ``(H, W)`` float images in [0, 1] (the MR
image and the functional image's luminance) and returns a float32 ``(H, W)`` image in [0, 1].
:data:`BASELINES` maps method names to these functions; :func:`fuse_color` applies one to an
MR/functional pair with the functional image's channel layout, like ``mdafuse.fuse_pair``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mdafuse.baselines import average, dwt, gff, ihs, laplacian, latlrr, maximum, minimum, nsst, pca

__all__ = ["BASELINES", "fuse_color"]

BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "average": average.fuse,
    "maximum": maximum.fuse,
    "minimum": minimum.fuse,
    "pca": pca.fuse,
    "laplacian": laplacian.fuse,
    "dwt": dwt.fuse,
    "ihs": ihs.fuse,
    "gff": gff.fuse,
    "latlrr": latlrr.fuse,
    "nsst": nsst.fuse,
}

# Methods with their own colour rule instead of "fuse Y, keep Cb/Cr".
_RGB_RULES: dict[Callable[..., np.ndarray], Callable[[np.ndarray, np.ndarray], np.ndarray]] = {ihs.fuse: ihs.fuse_rgb}


def fuse_color(method: str | Callable[..., np.ndarray], mr: np.ndarray, functional: np.ndarray) -> np.ndarray:
    """Fuse an MR image with a grey or colour functional image using a grey baseline.

    For a colour functional image the method fuses the MR with the functional luminance Y
    (BT.601) and the functional Cb/Cr are kept, as MdAFuse does; IHS uses its own RGB
    substitution rule (:func:`mdafuse.baselines.ihs.fuse_rgb`).

    Args:
        method: a name in :data:`BASELINES` or a grey fusion callable ``fuse(a, b)``.
        mr: ``(H, W)`` float MR image in [0, 1].
        functional: ``(H, W)`` or ``(H, W, 3)`` RGB float image in [0, 1].

    Returns:
        float32 fused image with the functional image's layout, ``(H, W)`` or ``(H, W, 3)``.

    Raises:
        ValueError: unknown method name, or shapes that do not match.
    """
    if isinstance(method, str):
        if method not in BASELINES:
            raise ValueError(f"method must be one of {sorted(BASELINES)}; got {method!r}")
        fn = BASELINES[method]
    elif callable(method):
        fn = method
    else:
        raise TypeError(f"method must be a baseline name or a callable; got {type(method).__name__}")
    functional = np.asarray(functional)
    if functional.ndim == 2:
        return fn(mr, functional)
    if functional.ndim != 3 or functional.shape[2] != 3:
        raise ValueError(f"functional must have shape (H, W) or (H, W, 3); got {functional.shape}")
    if fn in _RGB_RULES:
        return _RGB_RULES[fn](mr, functional)
    from mdafuse.color import rgb_to_ycbcr, with_luminance

    ycc = rgb_to_ycbcr(functional)
    return with_luminance(ycc, fn(mr, np.clip(ycc[..., 0], 0.0, 1.0)))
