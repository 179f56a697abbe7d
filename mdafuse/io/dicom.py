"""Read MR, PET and SPECT (NM) DICOM series into :class:`~mdafuse.io.volume.Volume`.

Slices are ordered by their position along the slice normal ``n = row_cosine x column_cosine``
(``d = n . ImagePositionPatient``, ascending), never by file name or InstanceNumber, so slice 0
is the most inferior slice of an axial series and the affine's third column is ``+n * spacing``.
(highdicom's ``get_volume_from_series`` uses the opposite order; this module and its tests fix
the ascending convention.) Stored values are rescaled per slice with RescaleSlope/Intercept,
and PET in Bq/ml is converted to body-weight SUV with :func:`suv_scale` when the header allows
it; otherwise the raw values are returned and the reason is recorded in ``Volume.warnings``.

Patient names, IDs and birth dates are never logged nor stored: a subject is known by
:func:`mdafuse.privacy.pseudonym` of its PatientID.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder

from mdafuse.io.volume import Volume
from mdafuse.privacy import pseudonym

__all__ = [
    "DicomSeriesError",
    "SeriesInfo",
    "SUPPORTED_MODALITIES",
    "discover_series",
    "read_dicom_series",
    "suv_scale",
    "parse_dicom_datetime",
]

logger = logging.getLogger(__name__)

SUPPORTED_MODALITIES = ("MR", "PT", "NM")

_ORIENT_TOL = 1e-4  # direction-cosine difference accepted as "the same orientation"
_SPACING_RTOL = 0.01  # relative slice-spacing deviation accepted as "regular"


class DicomSeriesError(ValueError):
    """A DICOM series cannot be read as one regular volume; the message names the file or series."""


@dataclass(frozen=True)
class SeriesInfo:
    """One series found by :func:`discover_series` (no identifying values).

    Attributes:
        series_uid: SeriesInstanceUID.
        study_uid: StudyInstanceUID.
        modality: DICOM Modality.
        frame_of_reference_uid: FrameOfReferenceUID ("" when absent).
        n_files: number of files (instances) of the series.
        subject_key: pseudonymous key of the PatientID (:func:`mdafuse.privacy.pseudonym`).
        series_number: SeriesNumber (None when absent).
        files: the files, sorted by path (not slice order).
    """

    series_uid: str
    study_uid: str
    modality: str
    frame_of_reference_uid: str
    n_files: int
    subject_key: str
    series_number: int | None = None
    files: tuple[Path, ...] = field(default=(), repr=False)


def _candidate_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _dcmread(path: Path, headers_only: bool) -> Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=headers_only)
    except InvalidDicomError as exc:
        raise DicomSeriesError(f"{path}: not a DICOM file ({exc})") from exc
    except Exception as exc:  # pydicom raises many types on truncated or corrupt files
        raise DicomSeriesError(f"{path}: corrupt DICOM file ({type(exc).__name__}: {exc})") from exc


def discover_series(root: str | Path, salt: str | None = None) -> list[SeriesInfo]:
    """Group the DICOM files below ``root`` by SeriesInstanceUID.

    Files that are not DICOM (e.g. a ``manifest.csv``) are skipped and counted in a log message;
    only their number is logged, never header values.

    Args:
        root: folder searched recursively.
        salt: pseudonymisation salt (``None``: :func:`mdafuse.privacy.default_salt`).

    Returns:
        One :class:`SeriesInfo` per series, sorted by (subject_key, study_uid, modality, series_uid).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such DICOM folder")
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    skipped = 0
    for path in _candidate_files(root):
        try:
            ds = _dcmread(path, headers_only=True)
        except DicomSeriesError:
            skipped += 1
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        if not uid:
            skipped += 1
            continue
        groups.setdefault(uid, []).append((path, ds))
    if skipped:
        logger.info("%s: skipped %d files that are not readable DICOM instances", root, skipped)
    out = []
    for uid, items in groups.items():
        ds = items[0][1]
        number = ds.get("SeriesNumber")
        out.append(
            SeriesInfo(
                series_uid=uid,
                study_uid=str(ds.get("StudyInstanceUID", "")),
                modality=str(ds.get("Modality", "")),
                frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
                n_files=len(items),
                subject_key=pseudonym(str(ds.get("PatientID", "")), salt),
                series_number=int(number) if number not in (None, "") else None,
                files=tuple(p for p, _ in items),
            )
        )
    out.sort(key=lambda s: (s.subject_key, s.study_uid, s.modality, s.series_uid))
    return out


# --------------------------------------------------------------------------- date and time


_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")


def _parse_tm(value: str) -> timedelta:
    value = str(value).strip().replace(":", "")
    m = _TM.match(value)
    if not m:
        raise ValueError(f"not a DICOM TM value: {value!r}")
    hh, mm, ss, frac = m.groups()
    micro = int((frac or "0").ljust(6, "0"))
    return timedelta(hours=int(hh), minutes=int(mm or 0), seconds=int(ss or 0), microseconds=micro)


def parse_dicom_datetime(date: str | None = None, time: str | None = None, dt: str | None = None) -> datetime:
    """Combine a DICOM DA and TM (or parse one DT) into a naive ``datetime``.

    A DT's UTC offset suffix (``+hhmm``/``-hhmm``) is dropped: all times of one series are taken to
    share a time zone.

    Raises:
        ValueError: the values are missing or malformed.
    """
    if dt:
        s = re.sub(r"[+-]\d{4}$", "", str(dt).strip())
        if len(s) < 8 or not s[:8].isdigit():
            raise ValueError(f"not a DICOM DT value: {dt!r}")
        base = datetime.strptime(s[:8], "%Y%m%d")
        return base + (_parse_tm(s[8:]) if len(s) > 8 else timedelta())
    if not date or not time:
        raise ValueError("a date and a time are required")
    d = str(date).strip().replace(".", "")
    if len(d) != 8 or not d.isdigit():
        raise ValueError(f"not a DICOM DA value: {date!r}")
    return datetime.strptime(d, "%Y%m%d") + _parse_tm(str(time))


# --------------------------------------------------------------------------- SUV


def suv_scale(ds: Dataset) -> tuple[float | None, list[str]]:
    """Body-weight SUV factor of one PET slice: ``SUVbw = factor * (stored * slope + intercept)``.

    ``factor = weight_g / dose_Bq``, taking 1 ml of tissue as 1 g, where ``dose_Bq`` is the injected
    RadionuclideTotalDose decayed to the time the image values are corrected to:

    * DecayCorrection ``START``: images are decay corrected to the series start, so the dose is
      decayed from RadiopharmaceuticalStartDateTime (or SeriesDate + RadiopharmaceuticalStartTime)
      to SeriesDate/SeriesTime: ``dose * 2 ** (-(t_series - t_inj) / half_life)``;
    * ``ADMIN``: images are decay corrected to the administration time: no decay of the dose;
    * ``NONE``: values are not decay corrected; the dose is decayed to this slice's
      AcquisitionDate/AcquisitionTime.

    Units must be ``BQML``; any other unit (CNTS, GML, ...) is returned with a warning and no
    factor, so callers keep raw values rather than mis-scaling them.

    Args:
        ds: a PET dataset (header only is enough).

    Returns:
        ``(factor, warnings)``: ``factor`` is None when SUV cannot be computed, with the reasons in
        ``warnings`` (attribute names only, never values that could identify the patient).
    """
    warnings: list[str] = []
    units = str(ds.get("Units", "")).strip().upper()
    if units != "BQML":
        warnings.append(f"PET Units is {units or 'missing'!r}, not 'BQML': SUV not computed, raw values returned")
        return None, warnings
    try:
        weight_kg = float(ds.PatientWeight)
    except (AttributeError, TypeError, ValueError):
        weight_kg = float("nan")
    if not (math.isfinite(weight_kg) and weight_kg > 0):
        warnings.append("PatientWeight missing or not positive: SUV not computed, raw Bq/ml returned")
        return None, warnings
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    if not seq:
        warnings.append("RadiopharmaceuticalInformationSequence missing: SUV not computed, raw Bq/ml returned")
        return None, warnings
    rp = seq[0]
    try:
        dose = float(rp.RadionuclideTotalDose)
        half_life = float(rp.RadionuclideHalfLife)
    except (AttributeError, TypeError, ValueError):
        warnings.append("RadionuclideTotalDose or RadionuclideHalfLife missing: SUV not computed, raw Bq/ml returned")
        return None, warnings
    if not (dose > 0 and half_life > 0):
        warnings.append("RadionuclideTotalDose or RadionuclideHalfLife not positive: SUV not computed")
        return None, warnings
    correction = str(ds.get("DecayCorrection", "")).strip().upper()
    if correction == "ADMIN":
        decayed = dose
    elif correction in ("START", "NONE"):
        try:
            if rp.get("RadiopharmaceuticalStartDateTime"):
                t_inj = parse_dicom_datetime(dt=rp.RadiopharmaceuticalStartDateTime)
            else:
                t_inj = parse_dicom_datetime(ds.get("SeriesDate"), rp.get("RadiopharmaceuticalStartTime"))
            if correction == "START":
                t_ref = parse_dicom_datetime(ds.get("SeriesDate"), ds.get("SeriesTime"))
            else:
                t_ref = parse_dicom_datetime(ds.get("AcquisitionDate") or ds.get("SeriesDate"), ds.get("AcquisitionTime"))
        except ValueError:
            warnings.append(
                f"injection or {'series' if correction == 'START' else 'acquisition'} date/time missing or malformed: "
                "SUV not computed, raw Bq/ml returned"
            )
            return None, warnings
        elapsed = (t_ref - t_inj).total_seconds()
        if elapsed < 0:
            warnings.append("injection time is after the reference time: SUV not computed, raw Bq/ml returned")
            return None, warnings
        decayed = dose * 2.0 ** (-elapsed / half_life)
    else:
        warnings.append(f"DecayCorrection {correction or 'missing'!r} not START/ADMIN/NONE: SUV not computed")
        return None, warnings
    return weight_kg * 1000.0 / decayed, warnings


# --------------------------------------------------------------------------- series reading


def _as_files(folder_or_files: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(folder_or_files, (str, Path)):
        p = Path(folder_or_files)
        if p.is_dir():
            files = _candidate_files(p)
            if not files:
                raise DicomSeriesError(f"{p}: folder holds no files")
            return files
        if p.is_file():
            return [p]
        raise FileNotFoundError(f"{p}: no such DICOM file or folder")
    files = [Path(f) for f in folder_or_files]
    if not files:
        raise DicomSeriesError("no DICOM files given")
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: no such DICOM file")
    return files


def _floats(ds: Dataset, name: str, n: int, path: Path) -> np.ndarray:
    value = ds.get(name)
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.array([])
    if arr.shape != (n,) or not np.isfinite(arr).all():
        raise DicomSeriesError(f"{path}: {name} missing or malformed (expected {n} numbers)")
    return arr


def read_dicom_series(
    folder_or_files: str | Path | Sequence[str | Path],
    series_uid: str | None = None,
    *,
    suv: bool = True,
    salt: str | None = None,
) -> Volume:
    """Read one MR, PT or NM series as a float32 ``(Z, Y, X)`` volume with its LPS affine.

    Args:
        folder_or_files: a folder (searched recursively; every non-hidden file must be DICOM) or a
            list of files.
        series_uid: the SeriesInstanceUID to read when several series are present.
        suv: convert PET in Bq/ml to SUVbw (``Volume.units == "SUVbw"``); when the header does not
            allow it, raw values are kept and ``Volume.warnings`` says why.
        salt: pseudonymisation salt for ``Volume.subject_key``.

    Returns:
        The volume; slice ``k`` comes from ``Volume.source_files[k]``.

    Raises:
        DicomSeriesError: a file is not DICOM or corrupt; several series and no ``series_uid``;
            unsupported modality; rows/columns, pixel spacing or orientation differ between slices;
            two slices share a position; slices are missing (a gap in the spacing) or irregular.
        FileNotFoundError: the folder or a file does not exist.
    """
    files = _as_files(folder_or_files)
    headers, unreadable = [], []
    for i, f in enumerate(files):
        try:
            # one full read per file: the header checks and the pixels use the same dataset
            ds = _dcmread(f, headers_only=False)
        except DicomSeriesError as exc:
            unreadable.append((i, f, str(exc).split(": ", 1)[-1]))
            continue
        if not ds.get("SeriesInstanceUID") and len(files) > 1:
            # pydicom reads a file cut inside its header without complaint: it just ends early
            unreadable.append((i, f, "truncated header (no SeriesInstanceUID)"))
            continue
        headers.append((f, ds))
    if unreadable:
        listed = "; ".join(f"file {i + 1} of {len(files)}, {f}: {why}" for i, f, why in unreadable[:5])
        more = f"; and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
        raise DicomSeriesError(f"{len(unreadable)} of {len(files)} files (in name order) are truncated or not readable DICOM: {listed}{more}")
    by_series: dict[str, list[tuple[Path, Dataset]]] = {}
    for f, ds in headers:
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((f, ds))
    if series_uid is not None:
        if series_uid not in by_series:
            raise DicomSeriesError(f"series {series_uid} not found among {len(files)} files ({len(by_series)} series present)")
        items = by_series[series_uid]
    elif len(by_series) > 1:
        raise DicomSeriesError(
            f"{len(files)} files hold {len(by_series)} series ({', '.join(sorted(by_series))}); pass series_uid to choose one"
        )
    else:
        (series_uid, items), = by_series.items()
    label = f"series {series_uid or '(no SeriesInstanceUID)'}"

    first_path, first = items[0]
    modality = str(first.get("Modality", "")).strip().upper()
    for f, ds in items:
        m = str(ds.get("Modality", "")).strip().upper()
        if m not in SUPPORTED_MODALITIES:
            raise DicomSeriesError(f"{f}: Modality {m or 'missing'!r} is not one of {SUPPORTED_MODALITIES} ({label})")
        if m != modality:
            raise DicomSeriesError(f"{f}: Modality {m!r} differs from {modality!r} of {first_path} ({label})")

    if len(items) == 1 and int(first.get("NumberOfFrames", 1) or 1) > 1:
        return _read_multiframe(first_path, modality, series_uid, suv, salt)

    rows, cols = int(first.get("Rows", 0)), int(first.get("Columns", 0))
    iop0 = _floats(first, "ImageOrientationPatient", 6, first_path)
    ps0 = _floats(first, "PixelSpacing", 2, first_path)
    geo = []
    for f, ds in items:
        if (int(ds.get("Rows", 0)), int(ds.get("Columns", 0))) != (rows, cols):
            raise DicomSeriesError(
                f"{f}: Rows x Columns {ds.get('Rows')} x {ds.get('Columns')} differ from {rows} x {cols} of {first_path} ({label})"
            )
        iop = _floats(ds, "ImageOrientationPatient", 6, f)
        if np.abs(iop - iop0).max() > _ORIENT_TOL:
            raise DicomSeriesError(f"{f}: ImageOrientationPatient differs from {first_path} ({label})")
        ps = _floats(ds, "PixelSpacing", 2, f)
        if np.abs(ps - ps0).max() > 1e-4 * max(1.0, float(ps0.max())):
            raise DicomSeriesError(f"{f}: PixelSpacing {ps.tolist()} differs from {ps0.tolist()} of {first_path} ({label})")
        geo.append(_floats(ds, "ImagePositionPatient", 3, f))
    row_dir, col_dir = iop0[:3], iop0[3:]
    normal = np.cross(row_dir, col_dir)
    if abs(np.linalg.norm(normal) - 1.0) > 1e-3 or abs(row_dir @ col_dir) > 1e-3:
        raise DicomSeriesError(f"{first_path}: ImageOrientationPatient is not two orthonormal directions ({label})")
    positions = np.array(geo)
    dist = positions @ normal
    order = np.argsort(dist, kind="stable")
    dist = dist[order]
    sorted_items = [items[i] for i in order]
    spacing = _check_spacing(dist, positions[order], normal, sorted_items, first, label)

    warnings: list[str] = []
    slices = []
    factors = []
    for k, (f, ds) in enumerate(sorted_items):
        pix = _pixel_array(ds, f, f"slice {k + 1} of {len(sorted_items)} (along the slice normal)")
        if pix.shape != (rows, cols):
            raise DicomSeriesError(f"{f}: pixel data shape {pix.shape} is not Rows x Columns ({rows}, {cols})")
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        values = pix.astype(np.float64) * slope + intercept
        if modality == "PT" and suv:
            factor, w = suv_scale(ds)
            warnings.extend(x for x in w if x not in warnings)
            factors.append(factor)
        slices.append(values)
    data = np.stack(slices)
    units = str(first.get("Units", "")).strip().upper() if modality in ("PT", "NM") else ""
    suv_factor = None
    if modality == "PT" and suv:
        if all(f is not None for f in factors):
            suv_factor = np.array(factors, dtype=np.float64)
            data = data * suv_factor[:, None, None]
            units = "SUVbw"
        elif any(f is not None for f in factors):
            warnings.append("SUV computable for only some slices: raw values returned for all")

    affine = _affine(row_dir, col_dir, ps0, spacing, positions[order][0])
    # the warnings travel with the volume (Volume.warnings), never to the log: they name the series UID
    return _volume(
        first, data, affine, modality, units, series_uid, salt, warnings,
        source_files=[f for f, _ in sorted_items],
        source_sop_uids=[str(ds.get("SOPInstanceUID", "")) for _, ds in sorted_items],
        suv_factor=suv_factor,
    )


def _pixel_array(ds: Dataset, path: Path, where: str) -> np.ndarray:
    """``ds.pixel_array``; a failure raises one line naming the file, ``where`` and the transfer syntax.

    A compressed transfer syntax whose decoder plugins are all missing (pylibjpeg and its
    -libjpeg/-openjpeg/-rle plugins, pyjpegls) is told apart from a corrupt file.
    """
    try:
        return ds.pixel_array
    except Exception as exc:
        raise DicomSeriesError(_decode_failure(ds, path, where, exc)) from exc


def _decode_failure(ds: Dataset, path: Path, where: str, exc: Exception) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    syntax = f"transfer syntax {ts.name} ({ts})" if ts else "transfer syntax (missing)"
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())  # pydicom's messages span several lines
    if ts:
        try:
            decoder = get_decoder(ts)
        except NotImplementedError:
            return f"{path}: {where}: no pixel data decoder exists for {syntax}"
        if decoder.UID.is_compressed and not decoder.is_available:
            missing = "; ".join(" ".join(m.split()) for m in decoder.missing_dependencies)
            return f"{path}: {where}: no decoder installed for {syntax} (missing: {missing})"
    return f"{path}: {where} is truncated or corrupt: cannot decode its pixel data, {syntax} ({detail})"


def _affine(row_dir: np.ndarray, col_dir: np.ndarray, pixel_spacing: np.ndarray, spacing: float, origin: np.ndarray) -> np.ndarray:
    """Voxel (slice, row, column) -> patient (LPS, mm) 4x4 matrix of a slice stack.

    ``pixel_spacing`` is DICOM's (row spacing, column spacing); the slice axis is the normal
    ``row_dir x col_dir`` scaled by ``spacing``; ``origin`` is the first slice's ImagePositionPatient.
    """
    affine = np.eye(4)
    affine[:3, 0] = row_dir * pixel_spacing[1]
    affine[:3, 1] = col_dir * pixel_spacing[0]
    affine[:3, 2] = np.cross(row_dir, col_dir) * spacing
    affine[:3, 3] = origin
    return affine


def _volume(
    header: Dataset, data: np.ndarray, affine: np.ndarray, modality: str, units: str, series_uid: str | None,
    salt: str | None, warnings: list[str], *, source_files: list[Path], source_sop_uids: list[str], suv_factor: np.ndarray | None,
) -> Volume:
    """A :class:`Volume` with identifiers taken from a representative ``header`` (PatientID pseudonymised)."""
    return Volume(
        data=data.astype(np.float32),
        affine=affine,
        modality=modality,
        units=units,
        frame_of_reference_uid=str(header.get("FrameOfReferenceUID", "")) or None,
        series_uid=series_uid or None,
        study_uid=str(header.get("StudyInstanceUID", "")) or None,
        subject_key=pseudonym(str(header.get("PatientID", "")), salt),
        warnings=warnings,
        source_files=source_files,
        source_sop_uids=source_sop_uids,
        sop_class_uid=str(header.get("SOPClassUID", "")) or None,
        suv_factor=suv_factor,
    )


def _check_spacing(
    dist: np.ndarray,
    positions: np.ndarray,
    normal: np.ndarray,
    items: list[tuple[Path, Dataset]],
    first: Dataset,
    label: str,
) -> float:
    """Validate sorted slice distances and return the slice spacing in mm."""
    if len(dist) == 1:
        for name in ("SpacingBetweenSlices", "SliceThickness"):
            value = first.get(name)
            if value not in (None, "") and float(value) > 0:
                return float(value)
        return 1.0
    steps = np.diff(dist)
    dup = np.flatnonzero(steps < 1e-3)
    if dup.size:
        i = int(dup[0])
        raise DicomSeriesError(
            f"{items[i + 1][0]}: duplicate slice position {dist[i]:.3f} mm along the normal, same as {items[i][0]} ({label})"
        )
    step = float(np.median(steps))
    for i, s in enumerate(steps):
        if abs(s - step) > _SPACING_RTOL * step:
            ratio = s / step
            if abs(ratio - round(ratio)) <= _SPACING_RTOL * 5 and round(ratio) >= 2:
                raise DicomSeriesError(
                    f"{items[i + 1][0]}: missing slices: gap of {s:.3f} mm after {items[i][0]} where the spacing is "
                    f"{step:.3f} mm (about {round(ratio) - 1} slice(s) missing) ({label})"
                )
            raise DicomSeriesError(
                f"{items[i + 1][0]}: inconsistent slice spacing: {s:.3f} mm after {items[i][0]}, expected {step:.3f} mm ({label})"
            )
    offsets = positions - positions[0]
    lateral = offsets - np.outer(offsets @ normal, normal)
    worst = int(np.argmax(np.linalg.norm(lateral, axis=1)))
    if np.linalg.norm(lateral[worst]) > max(0.01, 0.01 * step):
        raise DicomSeriesError(
            f"{items[worst][0]}: slice is offset {np.linalg.norm(lateral[worst]):.3f} mm within the image plane from "
            f"{items[0][0]} (tilted or sheared stack not supported) ({label})"
        )
    return step


def _read_multiframe(path: Path, modality: str, series_uid: str | None, suv: bool, salt: str | None) -> Volume:
    """A single multi-frame NM/PT file (NM tomographic reconstruction style): frames stacked along the normal."""
    ds = _dcmread(path, headers_only=False)
    plane = ds
    if "ImageOrientationPatient" not in ds and ds.get("DetectorInformationSequence"):
        plane = ds.DetectorInformationSequence[0]
    iop = _floats(plane, "ImageOrientationPatient", 6, path)
    ipp = _floats(plane, "ImagePositionPatient", 3, path)
    ps = _floats(ds, "PixelSpacing", 2, path)
    spacing = None
    for name in ("SpacingBetweenSlices", "SliceThickness"):
        value = ds.get(name)
        if value not in (None, "") and float(value) != 0:
            spacing = float(value)
            break
    if spacing is None:
        raise DicomSeriesError(f"{path}: multi-frame image lacks SpacingBetweenSlices and SliceThickness")
    pix = np.asarray(_pixel_array(ds, path, "multi-frame image"), dtype=np.float64)
    if pix.ndim != 3:
        raise DicomSeriesError(f"{path}: expected (frames, rows, columns) pixel data; got shape {pix.shape}")
    data = pix * float(ds.get("RescaleSlope", 1.0) or 1.0) + float(ds.get("RescaleIntercept", 0.0) or 0.0)
    warnings: list[str] = []
    units = str(ds.get("Units", "")).strip().upper()
    suv_factor = None
    if modality == "PT" and suv:
        factor, warnings = suv_scale(ds)
        if factor is not None:
            data = data * factor
            units = "SUVbw"
            suv_factor = np.full(data.shape[0], factor)
    affine = _affine(iop[:3], iop[3:], ps, spacing, ipp)
    return _volume(
        ds, data, affine, modality, units, series_uid, salt, warnings,
        source_files=[path], source_sop_uids=[str(ds.get("SOPInstanceUID", ""))], suv_factor=suv_factor,
    )
