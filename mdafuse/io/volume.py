"""The in-memory 3-D image used by the clinical readers and writers.

Convention (shared by every reader and writer in ``mdafuse.io``):

* ``Volume.data`` is float32 with shape ``(Z, Y, X)``: slice, row, column. Colour derived volumes
  (fusion results) may be ``(Z, Y, X, 3)`` RGB in [0, 1].
* ``Volume.affine`` is a 4x4 matrix mapping the voxel index ``(x, y, z, 1)`` = ``(column, row,
  slice, 1)`` -- the *reversed* array axes -- to patient coordinates in millimetres in the DICOM
  patient system **LPS** (+x towards the patient's left, +y posterior, +z head). For a DICOM series
  the first column is the row direction cosine times the column spacing, the second the column
  direction cosine times the row spacing, the third the slice normal times the slice spacing and
  the fourth the ImagePositionPatient of slice 0, so ``affine @ (i, j, k, 1)`` is the centre of
  ``data[k, j, i]``.
* NIfTI files are RAS+ and index ``(i, j, k)`` in array order. :mod:`mdafuse.io.nifti` converts on
  read with ``data_zyx = data_ijk.transpose(2, 1, 0)`` and ``affine_lps = diag(-1, -1, 1, 1) @
  affine_ras`` (and the inverse on write); the voxel index ``(i, j, k)`` keeps its meaning, only
  the patient axes x and y change sign.

A voxel index ``(z, y, x)`` maps to LPS as ``affine[:3, :3] @ (x, y, z) + affine[:3, 3]``: mind
the reversed order when multiplying by hand.

No patient-identifying value is stored: ``subject_key`` is a salted hash of the PatientID
(:func:`mdafuse.privacy.pseudonym`), and ``source_files`` are kept only so that writers can copy geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

__all__ = ["Volume", "LPS_TO_RAS"]

#: Converts LPS patient coordinates to RAS (and back: the matrix is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

@dataclass
class Volume:
    """A 3-D image with its voxel-to-patient geometry and non-identifying metadata.

    Attributes:
        data: float32 ``(Z, Y, X)`` (or ``(Z, Y, X, 3)`` RGB for derived colour volumes).
        affine: 4x4 float64 mapping ``(x, y, z, 1)`` = (column, row, slice) indices to LPS mm.
        modality: DICOM modality ("MR", "PT", "NM") or "OT" when unknown (e.g. NIfTI input).
        units: units of ``data``: "SUVbw" for PET converted to SUV, else the DICOM Units value
            ("BQML", "CNTS", ...) or "" when unknown / arbitrary (MR).
        frame_of_reference_uid: DICOM FrameOfReferenceUID, None when unknown.
        series_uid: DICOM SeriesInstanceUID, None when unknown.
        study_uid: DICOM StudyInstanceUID, None when unknown.
        subject_key: pseudonymous subject key (:func:`pseudonym`), None when unknown.
        warnings: degradations found while reading (e.g. SUV not computable); never silent.
        source_files: the files read, in slice order (``source_files[k]`` holds ``data[k]``; a single
            multi-frame file is one entry).
        source_sop_uids: SOPInstanceUID of each slice, in slice order.
        sop_class_uid: SOPClassUID of the source series.
        suv_factor: per-slice factor applied to convert Bq/ml to SUVbw, None when not applied.
    """

    data: np.ndarray
    affine: np.ndarray
    modality: str = "OT"
    units: str = ""
    frame_of_reference_uid: str | None = None
    series_uid: str | None = None
    study_uid: str | None = None
    subject_key: str | None = None
    warnings: list[str] = field(default_factory=list)
    source_files: list[Path] = field(default_factory=list)
    source_sop_uids: list[str] = field(default_factory=list)
    sop_class_uid: str | None = None
    suv_factor: np.ndarray | None = None

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.ndim not in (3, 4) or (data.ndim == 4 and data.shape[3] != 3):
            raise ValueError(f"Volume.data must have shape (Z, Y, X) or (Z, Y, X, 3); got {data.shape}")
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"Volume.affine must be 4x4; got shape {affine.shape}")
        if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise ValueError("Volume.affine must be finite and invertible")
        self.affine = affine

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(Z, Y, X)``."""
        return tuple(int(s) for s in self.data.shape[:3])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm in array order ``(slice, row, column)``."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(norms[2]), float(norms[1]), float(norms[0]))

    def with_data(self, data: np.ndarray, **changes: object) -> "Volume":
        """A copy on the same grid with new ``data`` (same leading shape) and optional field changes."""
        data = np.asarray(data)
        if data.shape[:3] != self.shape:
            raise ValueError(f"data must keep the grid shape {self.shape}; got {data.shape}")
        changes.setdefault("warnings", list(self.warnings))
        return replace(self, data=data, **changes)  # type: ignore[arg-type]
