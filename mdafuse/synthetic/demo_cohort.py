"""A small synthetic DICOM cohort (MR + FDG PET per subject and session) for demos and tests.

:func:`write_demo_cohort` renders :func:`mdafuse.synthetic.phantom.make_longitudinal_phantom` for each
subject on a fine grid (24 slices of 128 x 128 at 1.5 mm) and writes, per session:

* an MR series: the central 16 slices, 128 x 128 at 1.5 mm (FOV 192 x 192 x 24 mm), 12-bit
  ``round(4095 * mr)``;
* a PT series: the fine grid averaged over 2 x 2 x 2 blocks, 12 slices of 64 x 64 at 3 mm
  (FOV 192 x 192 x 36 mm), stored as int16 Bq/ml with a per-slice RescaleSlope, such that
  :func:`mdafuse.io.dicom.read_dicom_series` returns the phantom SUV (``Units = BQML``,
  DecayCorrection START, F-18 FDG, PatientWeight and injected dose in the header).

Both series carry PatientSex (M/F) and PatientSize (height in m), so lean body mass and SUL can be
computed (:mod:`mdafuse.longitudinal.response`). ``come_and_go=True`` renders
:data:`mdafuse.synthetic.phantom.COME_AND_GO_LESIONS` (a lesion appears at the second session and
one is gone from it) instead of the two default lesions.

Both series share the session's StudyInstanceUID and FrameOfReferenceUID and are centred on the
same patient point, so their affines align them. Sessions of one subject have different frames
of reference (the phantom misaligns them). Patients have made-up names, IDs and birth dates; file
names hold no patient data. Layout::

    OUT/manifest.csv                    subject,session,mr,pet,pet_fwhm_mm  (paths relative to OUT)
    OUT/truth.csv                       lesion truth per subject and session
    OUT/sub-001/ses-01/MR/MR_0000.dcm
    OUT/sub-001/ses-01/PT/PT_0000.dcm

Everything (including UIDs) is deterministic for a given ``seed``.

:func:`write_dicom_series` is the general writer used here and by the tests: any ``(Z, Y, X)``
volume and LPS affine to a single-frame MR or PT series.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import MRImageStorage, PositronEmissionTomographyImageStorage, generate_uid

from mdafuse.io.derived import new_file_dataset

if TYPE_CHECKING:
    from mdafuse.synthetic.phantom import LongitudinalPhantom

__all__ = ["PatientInfo", "PetDose", "write_dicom_series", "write_demo_cohort", "demo_phantom", "block_mean", "F18_HALF_LIFE_S"]

logger = logging.getLogger(__name__)

F18_HALF_LIFE_S = 6586.2

MR_SLICES, MR_SIZE, MR_MM = 16, 128, 1.5
PT_SLICES, PT_SIZE, PT_MM = 12, 64, 3.0
FINE_SLICES = 24
MR_FIRST = (FINE_SLICES - MR_SLICES) // 2
#: the demo PT series' resolution: the phantom's 4 mm FWHM blur and the 2 x 2 x 2 block mean onto
#: 3 mm voxels (a box of 3 mm: sigma 3 / sqrt(12) mm, FWHM 2.0 mm), added in quadrature
DEMO_PET_FWHM_MM = 4.5

_FIRST = ("ALEX", "SAM", "ROBIN", "KIM", "JORDAN", "TAYLOR", "CASEY", "MORGAN", "RILEY", "JAMIE")
_LAST = ("DEMO", "SAMPLE", "PHANTOM", "TESTER", "EXAMPLE", "MOCK")


@dataclass(frozen=True)
class PatientInfo:
    """Made-up patient attributes written into the demo headers."""

    name: str
    patient_id: str
    birth_date: str  # DICOM DA, YYYYMMDD
    sex: str  # "F", "M" or "O"
    weight_kg: float
    height_m: float | None = None  # DICOM PatientSize; None leaves it out of the headers


@dataclass(frozen=True)
class PetDose:
    """Injection of a PET series: dose in Bq, injection and series start times."""

    dose_bq: float
    injection: datetime
    series_start: datetime
    half_life_s: float = F18_HALF_LIFE_S

    def decayed_dose(self) -> float:
        """Dose decayed to the series start (DecayCorrection START)."""
        elapsed = (self.series_start - self.injection).total_seconds()
        return self.dose_bq * 2.0 ** (-elapsed / self.half_life_s)


def _ds_str(value: float) -> str:
    return f"{value:.10g}"[:16]


def write_dicom_series(
    data: np.ndarray,
    affine: np.ndarray,
    out_dir: str | Path,
    *,
    modality: str,
    patient: PatientInfo,
    study_uid: str,
    series_uid: str,
    frame_uid: str,
    study_datetime: datetime,
    series_number: int = 1,
    series_description: str = "",
    pet: PetDose | None = None,
    file_name: Callable[[int], str] | None = None,
    uid_entropy: Sequence[str] | None = None,
) -> list[Path]:
    """Write a ``(Z, Y, X)`` volume as a single-frame MR or PT DICOM series.

    Args:
        data: MR values in [0, 1] (stored as ``round(4095 * data)``, 12 bits) or PET SUV
            (stored as int16 Bq/ml = SUV * decayed dose / weight, per-slice RescaleSlope).
        affine: 4x4 voxel ``(x, y, z, 1)`` to LPS affine (see :mod:`mdafuse.io.volume`).
        out_dir: destination folder (created).
        modality: "MR" or "PT".
        patient: made-up patient attributes.
        study_uid, series_uid, frame_uid: UIDs of the study, series and frame of reference.
        study_datetime: StudyDate/StudyTime (MR series start; PET uses ``pet.series_start``).
        series_number, series_description: series attributes.
        pet: injection of a PT series (required for PT).
        file_name: slice index -> file name (default ``{modality}_{k:04d}.dcm``).
        uid_entropy: makes SOP Instance UIDs deterministic (``generate_uid`` entropy sources).

    Returns:
        The written files in slice order.
    """
    vol = np.asarray(data, dtype=np.float64)
    if vol.ndim != 3:
        raise ValueError(f"data must be (Z, Y, X); got shape {vol.shape}")
    affine = np.asarray(affine, dtype=np.float64)
    if modality == "PT":
        if pet is None:
            raise ValueError("pet (PetDose) is required for a PT series")
        if vol.min() < 0:
            raise ValueError("PET SUV values must be >= 0")
        bqml = vol * pet.decayed_dose() / (patient.weight_kg * 1000.0)
        sop_class = PositronEmissionTomographyImageStorage
        series_dt = pet.series_start
    elif modality == "MR":
        if vol.min() < 0 or vol.max() > 1:
            raise ValueError("MR data must lie in [0, 1]")
        sop_class = MRImageStorage
        series_dt = study_datetime
    else:
        raise ValueError(f"modality must be 'MR' or 'PT'; got {modality!r}")
    sx, sy, sz = (float(np.linalg.norm(affine[:3, i])) for i in range(3))
    row_dir, col_dir = affine[:3, 0] / sx, affine[:3, 1] / sy
    normal = np.cross(row_dir, col_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name_of = file_name or (lambda k: f"{modality}_{k:04d}.dcm")
    paths = []
    for k in range(vol.shape[0]):
        entropy = None if uid_entropy is None else [*uid_entropy, modality, str(k)]
        ds = new_file_dataset(sop_class, generate_uid(entropy_srcs=entropy))
        ds.PatientName = patient.name
        ds.PatientID = patient.patient_id
        ds.PatientBirthDate = patient.birth_date
        ds.PatientSex = patient.sex
        ds.PatientWeight = _ds_str(patient.weight_kg)
        if patient.height_m is not None:
            ds.PatientSize = _ds_str(patient.height_m)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.StudyDate = study_datetime.strftime("%Y%m%d")
        ds.StudyTime = study_datetime.strftime("%H%M%S")
        ds.StudyID = "1"
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "MdAFuse demo brain MR-PET"
        ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = series_dt.strftime("%Y%m%d")
        ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = series_dt.strftime("%H%M%S")
        ds.Modality = modality
        ds.SeriesNumber = series_number
        ds.SeriesDescription = series_description
        ds.InstanceNumber = k + 1
        ds.Manufacturer = "MdAFuse synthetic phantom"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientPosition = "HFS"
        ds.ImageOrientationPatient = [_ds_str(v) for v in (*row_dir, *col_dir)]
        position = affine @ np.array([0.0, 0.0, float(k), 1.0])
        ds.ImagePositionPatient = [_ds_str(v) for v in position[:3]]
        ds.SliceLocation = _ds_str(float(position[:3] @ normal))
        ds.PixelSpacing = [_ds_str(sy), _ds_str(sx)]
        ds.SliceThickness = _ds_str(sz)
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        if modality == "MR":
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = "SP"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "3D"
            ds.RepetitionTime = "8.1"
            ds.EchoTime = "3.7"
            ds.EchoTrainLength = "1"
            ds.MagneticFieldStrength = "3"
            ds.SpacingBetweenSlices = _ds_str(sz)
            ds.BitsStored = 12
            ds.HighBit = 11
            ds.PixelRepresentation = 0
            pixels = np.clip(np.rint(vol[k] * 4095.0), 0, 4095).astype(np.uint16)
        else:
            assert pet is not None
            top = float(bqml[k].max())
            slope = top / 32767.0 if top > 0 else 1.0
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            ds.RescaleSlope = _ds_str(slope)
            ds.RescaleIntercept = "0"
            pixels = np.clip(np.rint(bqml[k] / float(ds.RescaleSlope)), 0, 32767).astype(np.int16)
            ds.Units = "BQML"
            ds.DecayCorrection = "START"
            ds.CorrectedImage = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM"]
            ds.SeriesType = ["STATIC", "IMAGE"]
            ds.CountsSource = "EMISSION"
            ds.ReconstructionMethod = "OSEM"
            ds.NumberOfSlices = vol.shape[0]
            ds.ImageIndex = k + 1
            ds.FrameReferenceTime = "0"
            ds.ActualFrameDuration = 600000
            ds.DecayFactor = "1"
            ds.RandomsCorrectionMethod = "DLYD"
            ds.AttenuationCorrectionMethod = "CT"
            ds.CollimatorType = "NONE"
            ds.SliceSensitivityFactor = "1"
            rp = Dataset()
            rp.Radiopharmaceutical = "Fluorodeoxyglucose"
            rp.RadiopharmaceuticalStartTime = pet.injection.strftime("%H%M%S")
            rp.RadiopharmaceuticalStartDateTime = pet.injection.strftime("%Y%m%d%H%M%S")
            rp.RadionuclideTotalDose = _ds_str(pet.dose_bq)
            rp.RadionuclideHalfLife = _ds_str(pet.half_life_s)
            rp.RadionuclidePositronFraction = "0.9673"
            nuclide = Dataset()
            nuclide.CodeValue, nuclide.CodingSchemeDesignator, nuclide.CodeMeaning = "C-111A1", "SRT", "^18^Fluorine"
            rp.RadionuclideCodeSequence = DicomSequence([nuclide])
            drug = Dataset()
            drug.CodeValue, drug.CodingSchemeDesignator, drug.CodeMeaning = "C-B1031", "SRT", "Fluorodeoxyglucose F^18^"
            rp.RadiopharmaceuticalCodeSequence = DicomSequence([drug])
            ds.RadiopharmaceuticalInformationSequence = DicomSequence([rp])
        ds.PixelData = pixels.tobytes()
        path = out / name_of(k)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def demo_phantom(subject: int, timepoints: int, seed: int, come_and_go: bool = False) -> "LongitudinalPhantom":
    """The phantom of subject number ``subject`` (1-based) on the fine grid (24 x 128 x 128, 1.5 mm).

    MR series = ``timepoints[t].mr[MR_FIRST:MR_FIRST + MR_SLICES]``; PT series = 2 x 2 x 2 block mean
    of ``timepoints[t].suv``. ``come_and_go`` uses the lesions of
    :data:`mdafuse.synthetic.phantom.COME_AND_GO_LESIONS`.
    """
    from mdafuse.synthetic.phantom import COME_AND_GO_LESIONS, PhantomConfig, make_longitudinal_phantom

    config = PhantomConfig(fov_mm=MR_SIZE * MR_MM, slice_mm=MR_MM)
    if come_and_go:
        config = PhantomConfig(fov_mm=MR_SIZE * MR_MM, slice_mm=MR_MM, lesions=COME_AND_GO_LESIONS)
    return make_longitudinal_phantom(timepoints=timepoints, shape=(FINE_SLICES, MR_SIZE, MR_SIZE), seed=seed * 1000 + subject, config=config)


def _axial_affine(center_lps: np.ndarray, shape: tuple[int, int, int], spacing: float) -> np.ndarray:
    """Axial grid (rows posterior, columns left) of ``shape`` centred on ``center_lps``."""
    nz, ny, nx = shape
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = center_lps - spacing * np.array([(nx - 1) / 2.0, (ny - 1) / 2.0, (nz - 1) / 2.0])
    return affine


def block_mean(vol: np.ndarray, f: int) -> np.ndarray:
    """Mean over ``f x f x f`` blocks of a ``(Z, Y, X)`` volume whose sizes are multiples of ``f``."""
    z, y, x = vol.shape
    return vol.reshape(z // f, f, y // f, f, x // f, f).mean(axis=(1, 3, 5))


def check_demo_size(subjects: int, timepoints: int) -> None:
    """Raise ValueError unless 1 <= subjects <= 999 and 1 <= timepoints <= 99 (three-digit subject labels)."""
    if not 1 <= subjects <= 999:
        raise ValueError(f"subjects must be in 1..999; got {subjects}")
    if not 1 <= timepoints <= 99:
        raise ValueError(f"timepoints must be in 1..99; got {timepoints}")


def write_demo_cohort(out: str | Path, subjects: int = 3, timepoints: int = 2, seed: int = 0, come_and_go: bool = False) -> Path:
    """Write the synthetic DICOM cohort described in the module docstring.

    Args:
        out: destination folder (created; existing demo files are overwritten).
        subjects: number of subjects (1..999).
        timepoints: sessions per subject (1..99), 90 days apart.
        seed: seed of the phantom, the made-up patients and the UIDs.
        come_and_go: render an appearing and a vanishing lesion besides the default two
            (:func:`demo_phantom`).

    Returns:
        The path of ``OUT/manifest.csv`` (columns ``subject, session, mr, pet, pet_fwhm_mm``; ``mr``/``pet``
        are series folders relative to ``OUT``).
    """
    check_demo_size(subjects, timepoints)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    heights = np.random.default_rng([seed, 1729])  # its own stream: the other draws stay as before heights were added
    manifest_rows = []
    truth_rows = []
    for s in range(1, subjects + 1):
        subject = f"sub-{s:03d}"
        patient = PatientInfo(
            name=f"{_LAST[int(rng.integers(len(_LAST)))]}^{_FIRST[int(rng.integers(len(_FIRST)))]}",
            patient_id=f"DEMO{int(rng.integers(10**6)):06d}",
            birth_date=(datetime(1940, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 45)))).strftime("%Y%m%d"),
            sex=str(rng.choice(["F", "M"])),
            weight_kg=round(float(rng.uniform(55.0, 95.0)), 1),
        )
        patient = replace(patient, height_m=round(float(heights.uniform(1.55, 1.75) if patient.sex == "F" else heights.uniform(1.65, 1.90)), 2))
        center = np.array([rng.uniform(-5, 5), rng.uniform(10, 30), rng.uniform(20, 60)])
        phantom = demo_phantom(s, timepoints, seed, come_and_go)
        fine_affine = _axial_affine(center, (FINE_SLICES, MR_SIZE, MR_SIZE), MR_MM)
        mr_affine = _axial_affine(center, (MR_SLICES, MR_SIZE, MR_SIZE), MR_MM)
        pt_affine = _axial_affine(center, (PT_SLICES, PT_SIZE, PT_SIZE), PT_MM)
        base_day = datetime(2024, 1, 8) + timedelta(days=int(rng.integers(0, 300)))
        for t, tp in enumerate(phantom.timepoints):
            session = f"ses-{t + 1:02d}"
            day = base_day + timedelta(days=90 * t)
            injection = day + timedelta(hours=9, minutes=int(rng.integers(0, 60)))
            pet = PetDose(dose_bq=float(rng.uniform(300e6, 400e6)), injection=injection, series_start=injection + timedelta(minutes=60))
            mr_start = injection + timedelta(minutes=10)
            ent = [str(seed), subject, session]
            study_uid = generate_uid(entropy_srcs=[*ent, "study"])
            frame_uid = generate_uid(entropy_srcs=[*ent, "frame"])
            sdir = root / subject / session
            write_dicom_series(
                tp.mr[MR_FIRST : MR_FIRST + MR_SLICES], mr_affine, sdir / "MR", modality="MR", patient=patient,
                study_uid=study_uid, series_uid=generate_uid(entropy_srcs=[*ent, "MR"]), frame_uid=frame_uid,
                study_datetime=mr_start, series_number=2, series_description="T1 3D GRE (synthetic)",
                uid_entropy=ent,
            )  # fmt: skip
            write_dicom_series(
                block_mean(tp.suv, 2), pt_affine, sdir / "PT", modality="PT", patient=patient,
                study_uid=study_uid, series_uid=generate_uid(entropy_srcs=[*ent, "PT"]), frame_uid=frame_uid,
                study_datetime=mr_start, series_number=3, series_description="FDG brain static (synthetic)",
                pet=pet, uid_entropy=ent,
            )  # fmt: skip
            manifest_rows.append({"subject": subject, "session": session, "mr": f"{subject}/{session}/MR", "pet": f"{subject}/{session}/PT", "pet_fwhm_mm": f"{DEMO_PET_FWHM_MM:g}"})
            for row in phantom.truth:
                if row.timepoint != t:
                    continue
                centroid = fine_affine @ np.array([*row.centroid[::-1], 1.0])
                truth_rows.append(
                    {
                        "subject": subject,
                        "session": session,
                        "lesion_id": row.lesion_id,
                        "volume_ml": f"{row.physical_size:.4f}",
                        "mean_suv": f"{row.mean_suv:.4f}",
                        "max_suv": f"{row.max_suv:.4f}",
                        "nominal_suv": f"{row.nominal_suv:.4f}",
                        "radius_mm": f"{row.radius_mm:.4f}",
                        "centroid_lps_ses01_x": f"{centroid[0]:.3f}",
                        "centroid_lps_ses01_y": f"{centroid[1]:.3f}",
                        "centroid_lps_ses01_z": f"{centroid[2]:.3f}",
                    }
                )
    manifest = root / "manifest.csv"
    _write_csv(manifest, manifest_rows)
    _write_csv(root / "truth.csv", truth_rows)
    logger.info("wrote demo cohort: %d subjects x %d sessions under %s", subjects, timepoints, root)
    return manifest


def _write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
