"""A cohort as a table of MR/PET pairs: from a manifest, a BIDS dataset, a DICOM tree or a folder of PNG pairs.

:func:`build_pair_table` turns any of four sources into one Arrow table with a row per pair
(the work units of the cohort job, :data:`PAIR_SCHEMA`):

* a manifest (``.csv`` or ``.parquet``, local or ``s3://``) with columns ``subject``,
  ``session`` (or ``timepoint``), ``mr``, ``pet`` and optionally ``label``, ``modality``
  (PET, SPECT, CT; DICOM PT, NM) and ``pet_fwhm_mm`` (the PET scanner's resolution, for lesion
  volumes in tracking). ``mr``/``pet`` are
  DICOM series folders, NIfTI files or 2-D images, absolute, ``s3://`` or relative to the
  manifest's folder; an empty ``pet`` is kept (the job reports the pair as an error);
* a BIDS dataset (a folder with ``dataset_description.json``): each ``pet/*_pet.nii[.gz]`` with
  the T1w of its subject and session, or of the nearest session when asked
  (:func:`mdafuse.io.bids.index_bids_pairs`); the session key carries the PET's ``trc``, ``rec``,
  ``task`` and ``run`` entities; the pair is marked as from different acquisitions
  (``frames = "differ"``), so the job registers PET to MR by default;
* a DICOM tree: MR and PT/NM series are paired when they share StudyInstanceUID (and, preferably,
  FrameOfReferenceUID) (:func:`mdafuse.io.dicom.discover_series`); the subject is the pseudonym
  of the PatientID and the session the study's rank within the subject;
* a folder of 2-D pairs: ``MR/`` beside ``PET/`` (or ``SPECT/``, ``CT/``) with equal file names,
  as the Harvard atlas folders.

Each row carries the functional ``modality`` (PET, SPECT, CT, or empty when unknown): from the
manifest, the partner series' DICOM Modality (PT, NM) or the functional folder's name; the cohort
job picks the shipped weights by it (:data:`mdafuse.model.weights.MODALITY_WEIGHTS`).

Identifiers are pseudonymised: ``subject_id`` is :func:`mdafuse.privacy.pseudonym` of the
subject, ``pair_id`` the same salted sha256 of ``cohort|subject|session``. The raw subject value
is not kept in the table.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from mdafuse import storage
from mdafuse.io.pair import FRAMES_DIFFER, FRAMES_SHARED, IMAGE_KIND, VOLUME_KIND
from mdafuse.privacy import pseudonym
from mdafuse.modality import functional_modality

if TYPE_CHECKING:
    from mdafuse.io.bids import BidsSelection

__all__ = ["PAIR_SCHEMA", "FRAMES_SHARED", "FRAMES_DIFFER", "discover_bids_pairs", "IMAGE_SUFFIXES", "VOLUME_KIND", "IMAGE_KIND", "pair_id", "pair_kind", "build_pair_table", "read_manifest", "image_pair_paths", "discover_image_pairs", "discover_dicom_pairs", "PairSource"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_FUNCTIONAL_FOLDERS = ("PET", "SPECT", "PT", "CT", "NM")

PAIR_SCHEMA = pa.schema(
    [
        ("pair_id", pa.string()),
        ("subject_id", pa.string()),
        ("session", pa.string()),
        ("kind", pa.string()),
        ("mr", pa.string()),
        ("pet", pa.string()),
        ("mr_series_uid", pa.string()),
        ("pet_series_uid", pa.string()),
        ("label", pa.string()),
        ("modality", pa.string()),
        ("frames", pa.string()),
        ("mr_session", pa.string()),
        ("mr_gap_days", pa.string()),
        ("participant", pa.string()),
        ("note", pa.string()),
        ("pet_fwhm_mm", pa.string()),
    ]
)



@dataclass(frozen=True)
class PairSource:
    """What :func:`build_pair_table` found: the table and the kind of source it came from."""

    table: pa.Table
    source_kind: str  # "manifest", "bids", "dicom" or "images"


def pair_id(cohort: str, subject: str, session: str, salt: str | None = None) -> str:
    """Pseudonymous, stable id of one pair: salted sha256 of ``cohort|subject|session`` (16 hex digits)."""
    return pseudonym(f"pair|{cohort}|{subject}|{session}", salt)


def pair_kind(mr: str) -> str:
    """``"image2d"`` for PNG/JPEG/TIFF locations, ``"volume"`` for DICOM folders and NIfTI files."""
    return IMAGE_KIND if str(mr).lower().endswith(IMAGE_SUFFIXES) else VOLUME_KIND


def build_pair_table(source: str | os.PathLike, cohort: str, *, salt: str | None = None, endpoint: str | None = None, bids: "BidsSelection | None" = None) -> PairSource:
    """The pair table of a manifest file, a BIDS dataset, a DICOM tree or a folder of 2-D pairs.

    Args:
        source: manifest (``.csv``/``.parquet``, local or ``s3://``), or a local folder.
        cohort: cohort name, part of every ``pair_id``.
        salt: pseudonymisation salt (default :func:`mdafuse.privacy.default_salt`).
        endpoint: S3 endpoint for ``s3://`` manifests.
        bids: which PET images of a BIDS dataset to take and where their T1w may come from.

    Returns:
        :class:`PairSource` with a :data:`PAIR_SCHEMA` table, one row per pair, sorted by pair_id.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: a manifest lacks a column or repeats a subject/session, or no pair was found.
    """
    text = str(source)
    if not cohort:
        raise ValueError("cohort name must not be empty")
    if text.lower().endswith((".csv", ".parquet", ".pq")):
        return PairSource(read_manifest(text, cohort, salt=salt, endpoint=endpoint), "manifest")
    if storage.is_s3(text):
        raise ValueError(f"{text}: an s3:// cohort must be a manifest (.csv or .parquet); DICOM trees are discovered locally")
    folder = Path(text)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such cohort manifest or folder")
    if not folder.is_dir():
        raise ValueError(f"{folder}: expected a manifest (.csv/.parquet) or a folder; got a {folder.suffix or 'plain'} file")
    if (folder / "MR").is_dir() and any((folder / f).is_dir() for f in _FUNCTIONAL_FOLDERS):
        return PairSource(discover_image_pairs(folder, cohort, salt=salt), "images")
    from mdafuse.io.bids import is_bids_root

    if is_bids_root(folder):
        return PairSource(discover_bids_pairs(folder, cohort, selection=bids, salt=salt), "bids")
    for name in ("manifest.csv", "manifest.parquet"):
        if (folder / name).is_file():
            return PairSource(read_manifest(folder / name, cohort, salt=salt), "manifest")
    return PairSource(discover_dicom_pairs(folder, cohort, salt=salt), "dicom")


def _table(rows: list[dict[str, str]]) -> pa.Table:
    rows = sorted(({**{name: "" for name in PAIR_SCHEMA.names}, **r} for r in rows), key=lambda r: r["pair_id"])
    return pa.Table.from_pylist(rows, schema=PAIR_SCHEMA)


def _resolve(location: str, base: str) -> str:
    location = location.strip()
    if not location or storage.is_s3(location) or os.path.isabs(location):
        return location
    return storage.join(base, location)


def read_manifest(uri: str | os.PathLike, cohort: str, *, salt: str | None = None, endpoint: str | None = None) -> pa.Table:
    """Read a CSV/Parquet manifest into a :data:`PAIR_SCHEMA` table (see module docstring).

    Raises:
        ValueError: missing columns, an empty manifest, or a repeated (subject, session).
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    text = str(uri)
    data = storage.read_bytes(text, endpoint)
    if text.lower().endswith(".csv"):
        convert = pacsv.ConvertOptions(strings_can_be_null=False, column_types={c: pa.string() for c in ("subject", "session", "timepoint", "mr", "pet", "label", "modality", "pet_fwhm_mm")})
        table = pacsv.read_csv(io.BytesIO(data), convert_options=convert)
    else:
        table = pq.read_table(io.BytesIO(data))
    cols = set(table.column_names)
    session_col = "session" if "session" in cols else "timepoint" if "timepoint" in cols else None
    missing = [c for c in ("subject", "mr", "pet") if c not in cols] + ([] if session_col else ["session (or timepoint)"])
    if missing:
        raise ValueError(f"{text}: manifest lacks column(s) {missing}; expected subject, session/timepoint, mr, pet[, label, modality]")
    if table.num_rows == 0:
        raise ValueError(f"{text}: manifest has no rows")
    base = text.rsplit("/", 1)[0] if storage.is_s3(text) else str(Path(text).resolve().parent)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, rec in enumerate(table.to_pylist()):
        subject = "" if rec["subject"] is None else str(rec["subject"]).strip()
        session = "" if rec[session_col] is None else str(rec[session_col]).strip()
        if not subject:
            raise ValueError(f"{text}: row {i + 1} has an empty subject")
        pid = pair_id(cohort, subject, session, salt)
        if pid in seen:
            raise ValueError(f"{text}: row {i + 1} repeats a subject/session pair; each pair must appear once")
        seen.add(pid)
        mr = _resolve("" if rec["mr"] is None else str(rec["mr"]), base)
        pet = _resolve("" if rec["pet"] is None else str(rec["pet"]), base)
        try:
            modality = functional_modality(None if rec.get("modality") is None else str(rec["modality"])) or ""
        except ValueError as exc:
            raise ValueError(f"{text}: row {i + 1}: {exc}") from None
        fwhm = "" if rec.get("pet_fwhm_mm") is None else str(rec["pet_fwhm_mm"]).strip()
        if fwhm and not _positive(fwhm):
            raise ValueError(f"{text}: row {i + 1}: pet_fwhm_mm must be a resolution in mm > 0; got {fwhm!r}")
        rows.append(
            {
                "pair_id": pid,
                "subject_id": pseudonym(subject, salt),
                "session": session,
                "kind": pair_kind(mr or pet),
                "mr": mr,
                "pet": pet,
                "mr_series_uid": "",
                "pet_series_uid": "",
                "label": "" if rec.get("label") is None else str(rec["label"]),
                "modality": modality,
                "pet_fwhm_mm": fwhm,
            }
        )
    return _table(rows)


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def discover_bids_pairs(folder: str | os.PathLike, cohort: str, *, selection: "BidsSelection | None" = None, salt: str | None = None) -> pa.Table:
    """Pairs of a BIDS dataset: every PET image (after the entity filters) with its T1w.

    A PET image whose T1w cannot be chosen is kept with an empty ``mr`` and the reason in ``note``
    (the job reports it as an error row). The subject's ``participants.tsv`` weight, height and sex
    travel with the pair (``participant``, JSON) for SUV; they never reach an output table.

    Raises:
        BidsError: not a BIDS dataset, or no PET image passes the filters.
    """
    import json

    from mdafuse.io.bids import index_bids_pairs, participants

    root = Path(folder).resolve()
    rows = []
    table = participants(root)  # read once for the dataset
    people: dict[str, str] = {}
    for found in index_bids_pairs(root, selection):
        if found.subject not in people:
            rec = table.get(found.subject, {})
            people[found.subject] = json.dumps({k: rec[k] for k in ("weight", "height", "sex", "gender") if rec.get(k)})
        rows.append(
            {
                "pair_id": pair_id(cohort, found.subject, found.session, salt),
                "subject_id": pseudonym(found.subject, salt),
                "session": found.session,
                "kind": VOLUME_KIND,
                "mr": found.mr,
                "pet": found.pet,
                "modality": "PET",
                "frames": FRAMES_DIFFER,
                "mr_session": found.mr_session,
                "mr_gap_days": "" if found.mr_gap_days != found.mr_gap_days else f"{found.mr_gap_days:g}",
                "participant": people[found.subject],
                "note": found.note,
            }
        )
    return _table(rows)


def image_pair_paths(folder: str | os.PathLike) -> list[tuple[Path, Path | None]]:
    """``(MR image, functional image or None)`` for each image in ``folder/MR``, sorted by name.

    The functional image is the file of the same name in the first of ``PET/``, ``SPECT/``, ``PT/``,
    ``CT/``, ``NM/`` that exists beside ``MR/``.
    """
    folder = Path(folder)
    fdir = next((folder / f for f in _FUNCTIONAL_FOLDERS if (folder / f).is_dir()), None)
    if fdir is None or not (folder / "MR").is_dir():
        raise ValueError(f"{folder}: expected MR/ beside one of {list(_FUNCTIONAL_FOLDERS)}")
    pairs = []
    for mr in sorted((folder / "MR").iterdir()):
        if mr.is_file() and not mr.name.startswith(".") and mr.suffix.lower() in IMAGE_SUFFIXES:
            fn = fdir / mr.name
            pairs.append((mr, fn if fn.is_file() else None))
    return pairs


def discover_image_pairs(folder: str | os.PathLike, cohort: str, *, salt: str | None = None) -> pa.Table:
    """Pairs of a 2-D folder: ``MR/<name>`` with ``PET|SPECT|PT|CT|NM/<name>`` (same file name).

    The subject is the file stem and the session is empty. An MR image without a partner is kept
    with an empty ``pet``, a functional image without an MR partner with an empty ``mr``: the job
    reports both as error rows instead of dropping them.
    """
    rows = []
    mr_stems = set()
    for mr, fn in image_pair_paths(folder):
        mr_stems.add(mr.stem)
        rows.append(
            {
                "pair_id": pair_id(cohort, mr.stem, "", salt),
                "subject_id": pseudonym(mr.stem, salt),
                "session": "",
                "kind": IMAGE_KIND,
                "mr": str(mr.resolve()),
                "pet": str(fn.resolve()) if fn is not None else "",
                "mr_series_uid": "",
                "pet_series_uid": "",
                "label": "",
                "modality": (functional_modality(fn.parent.name) or "") if fn is not None else "",
            }
        )
    fdir = next(Path(folder) / f for f in _FUNCTIONAL_FOLDERS if (Path(folder) / f).is_dir())
    for fn in sorted(fdir.iterdir()):
        if fn.is_file() and not fn.name.startswith(".") and fn.suffix.lower() in IMAGE_SUFFIXES and fn.stem not in mr_stems:
            rows.append(
                {
                    "pair_id": pair_id(cohort, fn.stem, "", salt),
                    "subject_id": pseudonym(fn.stem, salt),
                    "session": "",
                    "kind": IMAGE_KIND,
                    "mr": "",
                    "pet": str(fn.resolve()),
                    "mr_series_uid": "",
                    "pet_series_uid": "",
                    "label": "",
                    "modality": functional_modality(fdir.name) or "",
                }
            )
    if not rows:
        raise ValueError(f"{folder}: no images in MR/")
    return _table(rows)


def _study_sort_key(path: str | os.PathLike, study_uid: str) -> tuple[bool, str, str, str]:
    """Ordering key of a study from one of its files: (no date, StudyDate, StudyTime, StudyInstanceUID).

    Only the two header elements are read; an unreadable or missing value sorts last.
    """
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyDate", "StudyTime"])
        date = "".join(c for c in str(ds.get("StudyDate", "") or "") if c.isdigit())[:8]
        time_ = str(ds.get("StudyTime", "") or "").strip()
    except Exception:  # noqa: BLE001 - a header that cannot be read orders by UID only
        date, time_ = "", ""
    hhmmss, _, frac = time_.partition(".")
    digits = "".join(c for c in hhmmss if c.isdigit()).ljust(6, "0")[:6]
    time_key = f"{digits}.{''.join(c for c in frac if c.isdigit()).ljust(6, '0')[:6]}" if time_ else ""
    return (len(date) != 8, date, time_key, study_uid)


def _frames(mr_uid: str | None, pet_uid: str | None) -> str:
    """FRAMES_SHARED or FRAMES_DIFFER when both FrameOfReferenceUIDs are known, else "" (unknown: the affines are trusted)."""
    if not (mr_uid and pet_uid):
        return ""
    return FRAMES_SHARED if mr_uid == pet_uid else FRAMES_DIFFER


def discover_dicom_pairs(folder: str | os.PathLike, cohort: str, *, salt: str | None = None) -> pa.Table:
    """Pair MR with PT (or NM) series of a DICOM tree by StudyInstanceUID, preferring one FrameOfReferenceUID.

    Each MR series becomes one pair; its partner is the PT series (else NM) of the same study
    with the most files, one in the MR's frame of reference first (``frames = "shared"``); a
    partner in another frame (``"differ"``) is registered by the job. An MR with no partner is kept with an empty
    ``pet``. Sessions are ``ses-01``, ``ses-02``, ... per subject in order of StudyDate and
    StudyTime (studies without a date come last, ties and missing values by StudyInstanceUID).
    The dates are only used for ordering: they are never stored in the table.

    Raises:
        ValueError: no MR series below ``folder``.
    """
    from mdafuse.io.dicom import discover_series

    series = discover_series(folder, salt=salt)
    mrs = [s for s in series if s.modality == "MR"]
    if not mrs:
        raise ValueError(f"{folder}: no MR DICOM series found ({len(series)} series of other modalities)")
    order: dict[tuple[str, str], tuple] = {}
    for s in series:
        key = (s.subject_key, s.study_uid)
        if key not in order and s.files:
            order[key] = _study_sort_key(s.files[0], s.study_uid)
    studies: dict[str, list[str]] = {}
    for (subject, study), _ in sorted(order.items(), key=lambda kv: (kv[0][0], kv[1])):
        studies.setdefault(subject, []).append(study)
    rows = []
    for mr in mrs:
        partners = [s for s in series if s.modality in ("PT", "NM") and s.study_uid == mr.study_uid]
        # one frame of reference first: no registration needed
        partners.sort(key=lambda s: (s.frame_of_reference_uid != mr.frame_of_reference_uid, s.modality != "PT", -s.n_files, s.series_uid))
        pet = partners[0] if partners else None
        frames = _frames(mr.frame_of_reference_uid, pet.frame_of_reference_uid) if pet is not None else ""
        rank = studies[mr.subject_key].index(mr.study_uid) + 1
        session = f"ses-{rank:02d}"
        mr_in_study = [s for s in mrs if s.study_uid == mr.study_uid and s.subject_key == mr.subject_key]
        if len(mr_in_study) > 1:
            session += f"-mr{mr_in_study.index(mr) + 1}"
        rows.append(
            {
                "pair_id": pair_id(cohort, mr.subject_key, session, salt),
                "subject_id": mr.subject_key,
                "session": session,
                "kind": VOLUME_KIND,
                "mr": str(Path(mr.files[0]).resolve().parent) if mr.files else "",
                "pet": str(Path(pet.files[0]).resolve().parent) if pet and pet.files else "",
                "mr_series_uid": mr.series_uid,
                "pet_series_uid": pet.series_uid if pet else "",
                "label": "",
                "modality": (functional_modality(pet.modality) or "") if pet else "",
                "frames": frames,
            }
        )
    return _table(rows)
