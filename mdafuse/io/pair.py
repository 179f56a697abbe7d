"""Load one MR/functional pair from local files into the images fusion works on.

:func:`load_pair` is the first step of every per-pair path (the cohort job's decode stage,
``mdafuse fuse`` on volumes): it reads a 2-D image pair or two volumes (DICOM series folders or
NIfTI files), resamples the functional volume onto the MR grid, windows both to [0, 1] and colours
PET with the "hot" map, and says which slices to score and which to save as images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["PreparedPair", "load_pair", "read_volume", "window_functional", "SLICE_IMAGE_MODES", "VOLUME_KIND", "IMAGE_KIND"]

VOLUME_KIND = "volume"
IMAGE_KIND = "image2d"
SLICE_IMAGE_MODES = ("brain", "all", "none")


@dataclass
class PreparedPair:
    """A pair ready for the network: slices of MR and functional image on one grid, in [0, 1].

    Attributes:
        mr: ``(Z, H, W)`` float32 MR (a 2-D pair has ``Z = 1``).
        functional: ``(Z, H, W, 3)`` RGB or ``(Z, H, W)`` grey float32 functional image.
        score_slices: indices of the slices whose metrics are averaged into the pair's row.
        image_slices: indices of the slices saved as PNG.
        affine: 4x4 voxel-to-LPS affine of the MR grid (volumes), None for 2-D pairs.
        warnings: degradations met while reading (e.g. PET not in SUV), short texts.
        dicom_source: the MR series' :class:`~mdafuse.io.derived.DicomSource` when it was read from
            DICOM (for a derived DICOM series of the result), else None.
    """

    mr: np.ndarray
    functional: np.ndarray
    score_slices: np.ndarray
    image_slices: np.ndarray
    affine: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    dicom_source: object | None = None

    @property
    def n_slices(self) -> int:
        return int(self.mr.shape[0])

    @property
    def is_rgb(self) -> bool:
        return self.functional.ndim == 4


def read_volume(path: str | os.PathLike, series_uid: str | None, what: str):
    """A :class:`~mdafuse.io.volume.Volume` from a NIfTI file or a DICOM series folder.

    Raises:
        ValueError: ``path`` is neither (``what`` names the role, "mr" or "pet").
    """
    from mdafuse.io.dicom import read_dicom_series
    from mdafuse.io.nifti import read_nifti

    name = str(path)
    if name.endswith((".nii", ".nii.gz")):
        return read_nifti(path)
    if os.path.isdir(name):
        return read_dicom_series(path, series_uid or None)
    raise ValueError(f"{what}: expected a DICOM series folder or a .nii/.nii.gz file")


def window_functional(volume) -> tuple[np.ndarray, str]:
    """PET/SPECT volume -> [0, 1]: SUV 0..8 when in SUV, else 0..its 99.5th percentile (with a note).

    Returns:
        ``(windowed float32 of the same shape, note)``; the note is empty for SUV data.

    Raises:
        ValueError: the volume is empty (99.5th percentile <= 0).
    """
    from mdafuse.io.windows import window_suv

    if volume.units == "SUVbw":
        return window_suv(volume.data, 0.0, 8.0), ""
    hi = float(np.percentile(volume.data, 99.5)) if volume.data.size else 0.0
    if not hi > 0:
        raise ValueError("PET volume is empty (99.5th percentile <= 0)")
    return window_suv(volume.data, 0.0, hi), f"PET not in SUV (units {volume.units or 'unknown'}): windowed to its 99.5th percentile"


def _every(indices: np.ndarray, step: int) -> np.ndarray:
    return indices[:: max(1, int(step))]


def load_pair(
    mr_path: str | os.PathLike,
    functional_path: str | os.PathLike,
    kind: str,
    *,
    mr_series_uid: str | None = None,
    functional_series_uid: str | None = None,
    slice_images: str = "brain",
    score_every: int = 1,
    keep_dicom_source: bool = False,
) -> PreparedPair:
    """Read, resample and window one pair of local files.

    Args:
        mr_path, functional_path: 2-D images (``kind == "image2d"``), or DICOM series folders /
            NIfTI files (``kind == "volume"``).
        kind: :data:`IMAGE_KIND` or :data:`VOLUME_KIND`.
        mr_series_uid, functional_series_uid: the series to read when a folder holds several.
        slice_images: which volume slices to save as PNG: "brain" (slices with brain, see
            :func:`mdafuse.io.resample.select_slices`), "all" or "none".
        score_every: score every K-th brain slice (1: all of them).
        keep_dicom_source: keep the MR series' DICOM reference (``PreparedPair.dicom_source``) when
            the MR is a DICOM series, for writing a derived DICOM series of the result.

    Returns:
        The :class:`PreparedPair`. A volume's MR is windowed to its 1st..99.5th percentile
        (:func:`mdafuse.io.windows.normalise_mr`), the functional image resampled onto the MR grid
        (trilinear), windowed (:func:`window_functional`) and coloured with the "hot" map.

    Raises:
        ValueError: unreadable or mismatching input (the message says which), an MR with no brain slice.
    """
    if slice_images not in SLICE_IMAGE_MODES:
        raise ValueError(f"slice_images must be one of {SLICE_IMAGE_MODES}; got {slice_images!r}")
    if int(score_every) < 1:
        raise ValueError(f"score_every must be >= 1; got {score_every}")
    if kind == IMAGE_KIND:
        from mdafuse.io.images import read_pair

        mr, fn = read_pair(Path(mr_path), Path(functional_path))
        one = np.zeros(1, dtype=np.int64)
        return PreparedPair(mr[None], fn[None], one, one if slice_images != "none" else one[:0])
    if kind != VOLUME_KIND:
        raise ValueError(f"kind must be {IMAGE_KIND!r} or {VOLUME_KIND!r}; got {kind!r}")
    from mdafuse.io.resample import resample_to, select_slices
    from mdafuse.io.windows import normalise_mr, pet_colormap

    mr_vol = read_volume(mr_path, mr_series_uid, "mr")
    fn_vol = read_volume(functional_path, functional_series_uid, "pet")
    on_mr = resample_to(fn_vol, mr_vol, order=1)
    warnings = list(dict.fromkeys(str(w) for w in on_mr.warnings))
    windowed, note = window_functional(on_mr)
    if note:
        warnings.append(note)
    brain = select_slices(mr_vol, "brain")
    if brain.size == 0:
        raise ValueError("MR volume has no slice with brain (all slices empty)")
    images = {"brain": brain, "all": np.arange(mr_vol.shape[0], dtype=np.int64), "none": brain[:0]}[slice_images]
    source = None
    if keep_dicom_source and mr_vol.source_files:
        from mdafuse.io.derived import DicomSource

        source = DicomSource.from_volume(mr_vol)
    return PreparedPair(
        dicom_source=source,
        mr=normalise_mr(mr_vol.data),
        functional=pet_colormap(windowed),
        score_slices=_every(brain, score_every),
        image_slices=images,
        affine=np.asarray(mr_vol.affine, dtype=np.float64),
        warnings=warnings,
    )
