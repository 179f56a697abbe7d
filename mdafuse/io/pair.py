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

__all__ = ["PreparedPair", "load_pair", "read_volume", "read_functional", "window_functional", "subject_of", "SLICE_IMAGE_MODES", "REGISTER_MODES", "FRAMES_SHARED", "FRAMES_DIFFER", "VOLUME_KIND", "IMAGE_KIND"]

VOLUME_KIND = "volume"
IMAGE_KIND = "image2d"
SLICE_IMAGE_MODES = ("brain", "all", "none")
#: where the MR and the functional image come from, as far as the source says: "shared" (one
#: DICOM frame of reference), "differ" (separate acquisitions: BIDS, DICOM frames that differ) or
#: "" (unknown: manifests, 2-D folders; the affines are trusted)
FRAMES_SHARED, FRAMES_DIFFER = "shared", "differ"
#: when PET is registered to MR: "auto" (when the source says the frames of reference differ, or
#: both DICOM FrameOfReferenceUIDs are known and differ), "always", "never" (trust the headers)
REGISTER_MODES = ("auto", "always", "never")


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
        pet_fields: for a BIDS PET image, which sidecar and participant fields and frames made it
            (:func:`mdafuse.io.bids.read_bids_pet`); else "".
        registration: "none", or the method that registered PET to MR (e.g. "rigid-mi").
        registration_quality: normalised mutual information (1..2, higher is better) of MR and the
            registered PET over the head; NaN when not registered.
        registration_transform: the rigid transform (MR LPS mm -> PET LPS mm) as JSON; "" when not registered.
    """

    mr: np.ndarray
    functional: np.ndarray
    score_slices: np.ndarray
    image_slices: np.ndarray
    affine: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    dicom_source: object | None = None
    pet_fields: str = ""
    registration: str = "none"
    registration_quality: float = float("nan")
    registration_transform: str = ""

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


def subject_of(path: str | os.PathLike) -> str:
    """The BIDS ``sub-`` entity of a file name ("sub-01"), "" when it has none."""
    return next((part for part in Path(str(path)).name.split("_") if part.startswith("sub-") and len(part) > 4), "")


def read_functional(path: str | os.PathLike, series_uid: str | None, *, pet_window=None, participant: dict | None = None):
    """The functional volume and, for a BIDS PET image, the line saying which fields made it.

    A ``*_pet.nii[.gz]`` file with a ``.json`` sidecar beside it, or inside a BIDS dataset, is read
    as BIDS PET (:func:`mdafuse.io.bids.read_bids_pet`: frames averaged over ``pet_window``, SUV
    from the sidecar and ``participant``); anything else through :func:`read_volume`.

    Returns:
        ``(volume, used)``; ``used`` is "" for non-BIDS input.
    """
    from mdafuse.io import bids

    name = Path(str(path)).name
    if name.endswith(("_pet.nii", "_pet.nii.gz")) and (bids.sidecar_of(path).is_file() or bids.bids_root_of(path) is not None):
        window = bids.FrameWindow.parse(pet_window) if isinstance(pet_window, str) else pet_window
        return bids.read_bids_pet(path, window, participant=participant)
    return read_volume(path, series_uid, "pet"), ""


def _registered(fn_vol, mr_vol, register: str, frames: str):
    """``(functional on the MR grid, method, quality, transform JSON)``: registered when the mode says so."""
    from mdafuse.io.resample import resample_to

    fm, fr = fn_vol.frame_of_reference_uid, mr_vol.frame_of_reference_uid
    differ = frames == FRAMES_DIFFER or bool(fm and fr and fm != fr)
    if register == "never" or (register == "auto" and not differ):
        on_mr = resample_to(fn_vol, mr_vol, order=1, allow_different_frames=register == "never")
        return on_mr, "none", float("nan"), ""
    from mdafuse.registration import register_pet_to_mr, resample_pet_to_mr

    result = register_pet_to_mr(fn_vol, mr_vol)
    on_mr = resample_pet_to_mr(fn_vol, mr_vol, result.transform)
    row = result.as_row()
    return on_mr, row["registration"], float(row["registration_quality"]), row["registration_transform"]


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
    pet_window=None,
    participant: dict | None = None,
    register: str = "auto",
    frames: str = "",
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
        pet_window: frames of a BIDS PET image that make its static image
            (:class:`mdafuse.io.bids.FrameWindow` or its text, default ``last:20``).
        participant: the subject's ``participants.tsv`` row (weight, height, sex) for SUV of BIDS PET.
        register: :data:`REGISTER_MODES`; registration is rigid, by mutual information
            (:func:`mdafuse.registration.register_pet_to_mr`).
        frames: what the source says of the frames of reference: "shared", "differ" or "" (unknown).

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
    if register not in REGISTER_MODES:
        raise ValueError(f"register must be one of {REGISTER_MODES}; got {register!r}")
    from mdafuse.io.resample import select_slices
    from mdafuse.io.windows import normalise_mr, pet_colormap

    mr_subject, pet_subject = subject_of(mr_path), subject_of(functional_path)
    if mr_subject and pet_subject and mr_subject != pet_subject:
        raise ValueError(f"the MR is of {mr_subject} but the PET of {pet_subject}: not a pair")
    mr_vol = read_volume(mr_path, mr_series_uid, "mr")
    fn_vol, pet_fields = read_functional(functional_path, functional_series_uid, pet_window=pet_window, participant=participant)
    if pet_fields and not frames:  # a BIDS PET image is its own acquisition, whatever listed it
        frames = FRAMES_DIFFER
    on_mr, method, quality, transform = _registered(fn_vol, mr_vol, register, frames)
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
        pet_fields=pet_fields,
        registration=method,
        registration_quality=quality,
        registration_transform=transform,
    )
