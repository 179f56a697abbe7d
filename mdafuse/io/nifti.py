"""Read and write NIfTI-1 volumes as :class:`~mdafuse.io.volume.Volume` (via nibabel).

NIfTI stores an array indexed ``(i, j, k)`` and an affine to **RAS+** millimetres. A Volume holds
``(Z, Y, X)`` data and an affine to **LPS** (the DICOM patient system). The conversion is explicit
and exact:

* read: ``data = nifti_data.transpose(2, 1, 0)`` and ``affine = diag(-1, -1, 1, 1) @ affine_ras``;
* write: the inverse (``transpose(2, 1, 0)`` and the same diagonal matrix, its own inverse).

The voxel index ``(i, j, k)`` = ``(x, y, z)`` = (column, row, slice) keeps its meaning; only the
sign of the patient x and y axes changes. The sform is used when its code is non-zero, else the
qform (nibabel's ``affine``). Colour volumes ``(Z, Y, X, 3)`` in [0, 1] are written as RGB24.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from mdafuse.io.encode import to_uint8
from mdafuse.io.volume import LPS_TO_RAS, Volume

__all__ = ["NiftiError", "RGB24", "read_nifti", "read_nifti_frames", "write_nifti", "write_nifti_frames"]

#: NIfTI's RGB24 voxel type (three uint8 per voxel, interleaved).
RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])


class NiftiError(ValueError):
    """A NIfTI file cannot be read as a volume; the message names the file."""


def _load(path: Path):
    """nibabel's image of ``path``; a ``.nii.gz`` is inflated with ISA-L (several times faster than zlib).

    A ``.nii.gz`` whose bytes are not gzip is read as plain NIfTI: some S3 servers store ``.gz``
    objects with ``Content-Encoding: gzip``, and HTTP clients then hand back the inflated bytes.
    """
    if path.name.endswith(".gz"):
        raw = path.read_bytes()
        if raw[:2] != b"\x1f\x8b":
            data = raw
        else:
            try:
                from isal import igzip
            except ImportError:
                return nib.load(str(path))
            data = igzip.decompress(raw)
        for kind in (nib.Nifti1Image, nib.Nifti2Image):
            try:
                return kind.from_bytes(data)
            except Exception:  # noqa: BLE001 - not this NIfTI version: try the next, then nibabel's own loader
                continue
    return nib.load(str(path))


def read_nifti(path: str | Path) -> Volume:
    """Read a 3-D NIfTI file (``.nii`` or ``.nii.gz``) as a float32 ``(Z, Y, X)`` Volume.

    A 4-D file with a trailing axis of length 1 is accepted; RGB24 files come back as
    ``(Z, Y, X, 3)`` in [0, 1]. Scaling (``scl_slope``/``scl_inter``) is applied by nibabel.

    Raises:
        FileNotFoundError: the file does not exist.
        NiftiError: not a NIfTI image, or not 3-D.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such NIfTI file")
    try:
        img = _load(path)
    except Exception as exc:
        raise NiftiError(f"{path}: cannot read as NIfTI ({type(exc).__name__}: {exc})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise NiftiError(f"{path}: {type(img).__name__} is not a NIfTI image")
    raw_dtype = img.get_data_dtype()
    if raw_dtype.names is not None and set(raw_dtype.names) >= {"R", "G", "B"}:
        arr = np.asanyarray(img.dataobj)
        rgb = np.stack([arr["R"], arr["G"], arr["B"]], axis=-1).astype(np.float32) / 255.0
        if rgb.ndim != 4:
            raise NiftiError(f"{path}: expected a 3-D RGB volume; got shape {arr.shape}")
        data = rgb.transpose(2, 1, 0, 3)
    else:
        arr = np.asarray(img.get_fdata(dtype=np.float32))
        while arr.ndim > 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim != 3:
            raise NiftiError(f"{path}: expected a 3-D volume; got shape {arr.shape}")
        data = arr.transpose(2, 1, 0)
    affine = LPS_TO_RAS @ np.asarray(img.affine, dtype=np.float64)
    return Volume(data=np.ascontiguousarray(data), affine=affine, modality="OT", units="")


def write_nifti(volume: Volume | np.ndarray, path: str | Path, affine: np.ndarray | None = None) -> Path:
    """Write a Volume (or a ``(Z, Y, X)`` / ``(Z, Y, X, 3)`` array with an LPS ``affine``) as NIfTI.

    Grey data is written as float32; RGB data (values in [0, 1]) as RGB24, rounded. Both sform and
    qform are set (code 1, scanner) to the RAS affine.

    Args:
        volume: a Volume, or an array in ``(Z, Y, X)`` order.
        path: destination ending in ``.nii`` or ``.nii.gz``; parent folders are created.
        affine: 4x4 voxel-to-LPS affine, required with an array and forbidden with a Volume.

    Returns:
        ``path``.
    """
    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise ValueError(f"{path}: NIfTI output must end with .nii or .nii.gz")
    if isinstance(volume, Volume):
        if affine is not None:
            raise ValueError("affine must not be given with a Volume (it carries its own)")
        vol = volume
    else:
        if affine is None:
            raise ValueError("affine (4x4 voxel-to-LPS) is required when writing an array")
        vol = Volume(data=np.asarray(volume), affine=affine)
    if not np.isfinite(vol.data).all():
        raise ValueError(f"data for {path} contains NaN or infinite values")
    affine_ras = LPS_TO_RAS @ vol.affine
    if vol.data.ndim == 4:
        rgb = to_uint8(vol.data).transpose(2, 1, 0, 3)
        arr = np.empty(rgb.shape[:3], dtype=RGB24)
        arr["R"], arr["G"], arr["B"] = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        img = nib.Nifti1Image(arr, affine_ras)
    else:
        img = nib.Nifti1Image(np.ascontiguousarray(vol.data.transpose(2, 1, 0)), affine_ras)
        img.header.set_data_dtype(np.float32)
    img.set_sform(affine_ras, code=1)
    img.set_qform(affine_ras, code=1)
    if vol.units in ("", "mm"):
        img.header.set_xyzt_units("mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def read_nifti_frames(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3-D or 4-D (dynamic) grey NIfTI file as frames.

    Returns:
        ``(frames, affine)``: float32 ``(T, Z, Y, X)`` (``T = 1`` for a 3-D file) and the 4x4
        voxel-to-LPS affine, with the same axis conventions as :func:`read_nifti`.

    Raises:
        FileNotFoundError: the file does not exist.
        NiftiError: not a NIfTI image, RGB, or neither 3-D nor 4-D.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such NIfTI file")
    try:
        img = _load(path)
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise NiftiError(f"{type(img).__name__} is not a NIfTI image")
        if img.get_data_dtype().names is not None:
            raise NiftiError("an RGB image cannot be a PET frame series")
        arr = np.asarray(img.get_fdata(dtype=np.float32))
    except NiftiError as exc:
        raise NiftiError(f"{path}: {exc}") from None
    except Exception as exc:
        raise NiftiError(f"{path}: cannot read as NIfTI ({type(exc).__name__}: {exc})") from exc
    while arr.ndim > 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise NiftiError(f"{path}: expected a 3-D or 4-D volume; got shape {arr.shape}")
    frames = np.ascontiguousarray(arr.transpose(3, 2, 1, 0))
    return frames, LPS_TO_RAS @ np.asarray(img.affine, dtype=np.float64)


def write_nifti_frames(frames: np.ndarray, affine: np.ndarray, path: str | Path, frame_s: float = 0.0) -> Path:
    """Write ``(T, Z, Y, X)`` frames with a voxel-to-LPS ``affine`` as a 4-D float32 NIfTI file.

    ``frame_s`` is stored as the time step (pixdim[4], seconds) for viewers; BIDS keeps the real
    frame times in the sidecar.
    """
    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise ValueError(f"{path}: NIfTI output must end with .nii or .nii.gz")
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 4:
        raise ValueError(f"frames must be (T, Z, Y, X); got shape {frames.shape}")
    if not np.isfinite(frames).all():
        raise ValueError(f"data for {path} contains NaN or infinite values")
    affine_ras = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    img = nib.Nifti1Image(np.ascontiguousarray(frames.transpose(3, 2, 1, 0)), affine_ras)
    img.header.set_data_dtype(np.float32)
    img.set_sform(affine_ras, code=1)
    img.set_qform(affine_ras, code=1)
    img.header.set_xyzt_units("mm", "sec")
    zooms = list(img.header.get_zooms())
    zooms[3] = float(frame_s) if frame_s > 0 else 1.0
    img.header.set_zooms(zooms)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path
