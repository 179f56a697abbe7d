"""Read and write 2-D raster images (PNG, JPEG, TIFF) as float32 arrays in [0, 1].

The library works on float32 in [0, 1]: grey images are ``(H, W)``, colour images ``(H, W, 3)``
(RGB, row then column). Only this module converts dtype or scale; nothing is transposed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mdafuse.io.encode import to_uint8

__all__ = ["ImageReadError", "read_image", "write_image", "read_pair", "is_grey_rgb"]

_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}


class ImageReadError(ValueError):
    """An image file could not be read or is not usable; the message names the file."""


def read_image(path: str | Path) -> np.ndarray:
    """Read a PNG, JPEG or TIFF file as float32 in [0, 1].

    Args:
        path: image file. 8-bit images are divided by 255, 16-bit by 65535; float TIFFs are
            accepted when already in [0, 1]. Alpha channels are dropped, palettes expanded.

    Returns:
        ``(H, W)`` for grey images, ``(H, W, 3)`` for colour images.

    Raises:
        ImageReadError: the file is missing, unreadable, empty or out of range.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file")
    if path.suffix.lower() not in _SUFFIXES:
        raise ImageReadError(f"{path}: unsupported image type {path.suffix!r}; expected one of {sorted(_SUFFIXES)}")
    try:
        with Image.open(path) as img:
            img.load()
            arr = _pil_to_float(img, path)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: cannot decode image ({exc})") from exc
    if arr.size == 0 or min(arr.shape[:2]) == 0:
        raise ImageReadError(f"{path}: image is empty (shape {arr.shape})")
    if arr.max() == arr.min():
        raise ImageReadError(f"{path}: image is blank (every pixel is {arr.flat[0]:.4g}); nothing to fuse")
    return arr


def _pil_to_float(img: Image.Image, path: Path) -> np.ndarray:
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("1", "L", "LA"):
        arr = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    elif mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    elif mode.startswith("I;16") or mode == "I":
        raw = np.asarray(img).astype(np.float64)
        # Pillow opens 16-bit PNGs as mode "I" (int32); values above 65535 mean a 32-bit image.
        if raw.min() < 0 or raw.max() > 65535:
            raise ImageReadError(f"{path}: integer image values outside 0..65535 (min {raw.min()}, max {raw.max()})")
        arr = (raw / 65535.0).astype(np.float32)
    elif mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise ImageReadError(f"{path}: float image must hold finite values in [0, 1]")
    else:
        raise ImageReadError(f"{path}: unsupported image mode {mode!r}")
    return np.ascontiguousarray(arr)


def is_grey_rgb(rgb: np.ndarray, tol: float = 1.0 / 255.0) -> bool:
    """True when an ``(H, W, 3)`` image has equal channels (a grey image saved as RGB)."""
    if rgb.ndim != 3:
        return False
    return bool(np.abs(rgb[..., 0] - rgb[..., 1]).max() <= tol and np.abs(rgb[..., 1] - rgb[..., 2]).max() <= tol)


def write_image(path: str | Path, image: np.ndarray, bits: int = 8) -> Path:
    """Write a float image in [0, 1] as PNG/JPEG/TIFF, rounding (not truncating) to 8 or 16 bits.

    Args:
        path: destination; its suffix selects the format. Parent folders are created.
        image: ``(H, W)`` or ``(H, W, 3)`` float array; values are clipped to [0, 1].
        bits: 8 or 16 (16 only for grey PNG/TIFF).
    """
    path = Path(path)
    if path.suffix.lower() not in _SUFFIXES:
        raise ValueError(f"{path}: unsupported output type {path.suffix!r}; expected one of {sorted(_SUFFIXES)}")
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"image must have shape (H, W) or (H, W, 3); got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"image for {path} contains NaN or infinite values")
    arr = np.clip(arr, 0.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    if bits == 8:
        Image.fromarray(to_uint8(arr)).save(path)
    elif bits == 16:
        if arr.ndim != 2:
            raise ValueError("16-bit output is supported for grey images only")
        Image.fromarray(np.clip(np.rint(arr * 65535.0), 0, 65535).astype(np.uint16)).save(path)
    else:
        raise ValueError(f"bits must be 8 or 16; got {bits}")
    return path


def read_pair(mr_path: str | Path, functional_path: str | Path, resample: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read an MR image and a functional (PET/SPECT/CT) image of the same slice.

    The MR is returned grey ``(H, W)`` (an RGB MR is converted to its BT.601 luminance); the
    functional image keeps its channels. With ``resample=True`` the functional image is resized
    (bilinear) to the MR grid, otherwise different sizes raise ``ImageReadError``.
    """
    mr = read_image(mr_path)
    fn = read_image(functional_path)
    if mr.ndim == 3:
        from mdafuse.color import luminance

        mr = luminance(mr)
    if fn.ndim == 3 and is_grey_rgb(fn):
        fn = fn.mean(axis=2, dtype=np.float32)
    if mr.shape[:2] != fn.shape[:2]:
        if not resample:
            raise ImageReadError(
                f"{functional_path}: size {fn.shape[1]}x{fn.shape[0]} differs from MR {mr_path} "
                f"size {mr.shape[1]}x{mr.shape[0]}; register the pair or pass resample=True (--resample)"
            )
        fn = resize_image(fn, mr.shape[:2])
    return mr, fn


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float image in [0, 1] to ``shape = (H, W)``."""
    h, w = shape
    if image.ndim == 2:
        out = np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
    else:
        out = np.stack([resize_image(image[..., c], shape) for c in range(image.shape[2])], axis=2)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
