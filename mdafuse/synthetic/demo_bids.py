"""The demo cohort as a BIDS-PET dataset: T1w and dynamic FDG PET from "different scanners".

Per subject and session ``sub-XXX/ses-YY/anat/sub-XXX_ses-YY_T1w.nii.gz`` (the demo MR grid,
16 x 128 x 128 at 1.5 mm) and ``pet/sub-XXX_ses-YY_trc-FDG_pet.nii.gz``: six frames over 60
minutes (Bq/mL, decay-corrected to injection) of the same phantom as the DICOM demo, whose mean
over the last 20 minutes is the phantom's SUV times the dose per gram. The PET is acquired with the
head in another position than the MR (a known rigid motion of a few degrees and millimetres per
session, in ``truth_registration.csv``), and the two images share no frame of reference, as in a
cohort from two scanners. Weight, height and sex are in ``participants.tsv`` (the PET sidecars
carry no body weight), session dates in ``sub-XXX_sessions.tsv``. ``truth.csv`` is the lesion truth
of the DICOM demo; both truth files are listed in ``.bidsignore``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from mdafuse.synthetic.demo_cohort import FINE_SLICES, MR_FIRST, MR_MM, MR_SIZE, MR_SLICES, PT_MM, PT_SIZE, PT_SLICES, _axial_affine, block_mean, check_demo_size, demo_phantom

__all__ = ["write_demo_bids", "FRAME_STARTS_S", "FRAME_DURATIONS_S", "FRAME_UPTAKE"]

logger = logging.getLogger(__name__)

#: the dynamic acquisition: frame starts and durations (s after injection)
FRAME_STARTS_S = (0.0, 300.0, 600.0, 1200.0, 2400.0, 3000.0)
FRAME_DURATIONS_S = (300.0, 300.0, 600.0, 1200.0, 600.0, 600.0)
#: uptake of each frame as a fraction of the late (40-60 min) uptake: FDG accumulates in tissue
FRAME_UPTAKE = (0.25, 0.45, 0.65, 0.85, 1.0, 1.0)


def _rigid_motion(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random head motion: rotation (deg, about z y x) up to 4 degrees and translation (mm, x y z) up to 4 mm."""
    return rng.uniform(-4.0, 4.0, 3), rng.uniform(-4.0, 4.0, 3)


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    az, ay, ax = np.deg2rad(angles_deg)
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    return rz @ ry @ rx


def _moved(volume: np.ndarray, affine: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """``volume`` (on ``affine``, LPS) after the head moved by ``x -> R (x - c) + c + t`` (c: the grid centre)."""
    from scipy import ndimage

    centre = affine[:3, :3] @ ((np.array(volume.shape[::-1]) - 1) / 2.0) + affine[:3, 3]
    # output voxel (x, y, z) -> patient p -> p before the motion -> input voxel
    back = np.eye(4)
    back[:3, :3] = rotation.T
    back[:3, 3] = centre - rotation.T @ (centre + translation)
    m = np.linalg.inv(affine) @ back @ affine
    # scipy indexes (z, y, x): reverse the axes of m
    perm = np.eye(4)[[2, 1, 0, 3]]
    mz = perm @ m @ perm
    return ndimage.affine_transform(volume, mz[:3, :3], offset=mz[:3, 3], order=1, mode="constant", cval=0.0).astype(np.float32)


def write_demo_bids(out: str | Path, subjects: int = 3, timepoints: int = 2, seed: int = 0) -> Path:
    """Write the BIDS demo dataset of the module docstring; returns its root (``OUT``).

    The phantom, patients and sessions follow :func:`mdafuse.synthetic.demo_cohort.write_demo_cohort`
    with the same seed, so both demos show the same lesions.
    """
    from mdafuse.io.nifti import write_nifti, write_nifti_frames

    check_demo_size(subjects, timepoints)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    _write_json(root / "dataset_description.json", {
        "Name": "MdAFuse synthetic MR + dynamic FDG PET demo", "BIDSVersion": "1.9.0", "DatasetType": "raw",
        "License": "CC0", "Authors": ["MdAFuse"], "GeneratedBy": [{"Name": "mdafuse demo-cohort --bids"}],
    })  # fmt: skip
    (root / "README").write_text(
        "Synthetic brain phantom (two lesions that change over time), written by `mdafuse demo-cohort OUT --bids`.\n"
        "T1w and FDG PET per session, acquired in different head positions (truth_registration.csv);\n"
        "lesion truth in truth.csv. No real person's data.\n"
    )
    (root / ".bidsignore").write_text("truth.csv\ntruth_registration.csv\n")
    _write_json(root / "participants.json", {
        "sex": {"Description": "sex of the participant", "Levels": {"F": "female", "M": "male"}},
        "weight": {"Description": "body weight", "Units": "kg"},
        "height": {"Description": "body height", "Units": "cm"},
    })  # fmt: skip
    participants = ["participant_id\tsex\tweight\theight"]
    motion_rows = ["subject\tsession\trotation_z_deg\trotation_y_deg\trotation_x_deg\ttranslation_x_mm\ttranslation_y_mm\ttranslation_z_mm"]
    for s in range(1, subjects + 1):
        subject = f"sub-{s:03d}"
        sex = str(rng.choice(["F", "M"]))
        weight = round(float(rng.uniform(55.0, 95.0)), 1)
        height = round(float(rng.uniform(150.0, 195.0)), 0)
        participants.append(f"{subject}\t{sex}\t{weight:g}\t{height:g}")
        center = np.array([rng.uniform(-5, 5), rng.uniform(10, 30), rng.uniform(20, 60)])
        phantom = demo_phantom(s, timepoints, seed)
        fine_affine = _axial_affine(center, (FINE_SLICES, MR_SIZE, MR_SIZE), MR_MM)
        mr_affine = _axial_affine(center, (MR_SLICES, MR_SIZE, MR_SIZE), MR_MM)
        pt_affine = _axial_affine(center, (PT_SLICES, PT_SIZE, PT_SIZE), PT_MM)
        base_day = datetime(2024, 1, 8) + timedelta(days=int(rng.integers(0, 300)))
        sessions = ["session_id\tacq_time"]
        for t, tp in enumerate(phantom.timepoints):
            session = f"ses-{t + 1:02d}"
            injection = base_day + timedelta(days=90 * t, hours=9, minutes=int(rng.integers(0, 60)))
            dose_bq = float(rng.uniform(300e6, 400e6))
            angles, shift = _rigid_motion(rng)
            sessions.append(f"{session}\t{injection.strftime('%Y-%m-%dT%H:%M:%S')}")
            motion_rows.append(f"{subject}\t{session}\t" + "\t".join(f"{v:.4f}" for v in (*angles, *shift)))
            base = root / subject / session
            stem = f"{subject}_{session}"
            write_nifti(tp.mr[MR_FIRST : MR_FIRST + MR_SLICES].astype(np.float32), base / "anat" / f"{stem}_T1w.nii.gz", affine=mr_affine)
            _write_json(base / "anat" / f"{stem}_T1w.json", {"Manufacturer": "Synthetic", "MagneticFieldStrength": 3, "RepetitionTime": 0.008})
            late_suv = block_mean(_moved(tp.suv.astype(np.float32), fine_affine, _rotation(angles), shift), 2)
            bq_ml = late_suv * (dose_bq / (weight * 1000.0))
            frames = np.stack([u * bq_ml for u in FRAME_UPTAKE]).astype(np.float32)
            write_nifti_frames(frames, pt_affine, base / "pet" / f"{stem}_trc-FDG_pet.nii.gz", frame_s=FRAME_DURATIONS_S[-1])
            _write_json(base / "pet" / f"{stem}_trc-FDG_pet.json", _pet_sidecar(dose_bq, injection))
        (root / subject / f"{subject}_sessions.tsv").write_text("\n".join(sessions) + "\n")
    (root / "participants.tsv").write_text("\n".join(participants) + "\n")
    (root / "truth_registration.csv").write_text("\n".join(line.replace("\t", ",") for line in motion_rows) + "\n")
    logger.info("wrote BIDS demo: %d subjects x %d sessions under %s", subjects, timepoints, root)
    return root


def _pet_sidecar(dose_bq: float, injection: datetime) -> dict:
    """The BIDS-PET required fields of a 60-minute dynamic FDG acquisition starting at injection."""
    return {
        "Manufacturer": "Synthetic", "ManufacturersModelName": "MdAFuse phantom", "Units": "Bq/mL", "BodyPart": "Brain",
        "TracerName": "FDG", "TracerRadionuclide": "F18",
        "InjectedRadioactivity": round(dose_bq / 1e6, 3), "InjectedRadioactivityUnits": "MBq",
        "InjectedMass": "n/a", "InjectedMassUnits": "n/a", "SpecificRadioactivity": "n/a", "SpecificRadioactivityUnits": "n/a",
        "ModeOfAdministration": "bolus", "TimeZero": injection.strftime("%H:%M:%S"), "ScanStart": 0, "InjectionStart": 0,
        "FrameTimesStart": list(FRAME_STARTS_S), "FrameDuration": list(FRAME_DURATIONS_S), "AcquisitionMode": "list mode",
        "ImageDecayCorrected": True, "ImageDecayCorrectionTime": 0,
        "ReconMethodName": "OSEM", "ReconMethodParameterLabels": ["subsets", "iterations"], "ReconMethodParameterUnits": ["none", "none"],
        "ReconMethodParameterValues": [21, 3], "ReconFilterType": "Gaussian", "ReconFilterSize": 4, "AttenuationCorrection": "synthetic (none needed)",
    }  # fmt: skip


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")
