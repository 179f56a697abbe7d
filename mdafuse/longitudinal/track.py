"""Track lesions of one subject across time points: register, segment, match, report.

Pipeline of :func:`track_subject`:

1. Register each follow-up MR rigidly onto the baseline MR
   (:func:`mdafuse.longitudinal.registration.register_rigid`) and resample its MR and SUV into the
   baseline frame with the same transform (linear interpolation).
2. Segment lesions on each aligned SUV (:func:`mdafuse.longitudinal.segmentation.segment_lesions`);
   quantification always comes from the SUV, never from the display images.
3. Match lesions over time in the baseline frame: a lesion continues the track it overlaps most
   (Dice), or failing any overlap the track whose last centroid is nearest within
   ``max_match_distance_mm``; greedy, best pairs first. Unmatched lesions start new tracks;
   tracks not found at a time point get a row with ``present = False`` and size 0.
4. Report one row per (track, time point) with size, mean/max SUV, centroid and change since the
   track's first time point (absolute and %), plus the registration of that time point, and the
   response measures of :mod:`mdafuse.longitudinal.response` (SUVpeak, SULpeak, MTV, TLG).
   ``status_at_timepoint`` is ``baseline`` (present at time point 0), ``new`` (first seen at this
   follow-up), ``persisting`` (seen before and present), ``resolved`` (seen before, absent now;
   ``last_seen_*`` keep its last measurement) or ``not_measured`` (a follow-up without PET).
   ``note`` gives every reason a measure is missing or doubtful ("; "-separated); the response
   columns are then null (the older columns keep NaN for absent lesions).
5. One response row per follow-up (:data:`RESPONSE_SCHEMA`): PERCIST-style category against the
   baseline, with new and resolved lesions counted; ``response`` is repeated in the lesion rows.
6. Optionally write the tables (Parquet and CSV) and a figure: the fused, energy-enhanced slice
   through the lesions at each time point with lesion outlines, and lesion size over time.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from mdafuse.fusion.enhance import EnhanceConfig
from mdafuse.longitudinal.registration import RegistrationConfig, RegistrationResult, register_rigid
from mdafuse.longitudinal.response import ResponseConfig, percist_response, sul_factor, suv_peak
from mdafuse.longitudinal.segmentation import Lesion, SegmentationConfig, segment_lesions
from mdafuse.longitudinal.transform import RigidTransform
from mdafuse.modality import functional_modality

__all__ = ["TimepointInput", "TrackConfig", "TrackResult", "track_subject", "TABLE_SCHEMA", "RESPONSE_SCHEMA", "STATUSES"]

logger = logging.getLogger(__name__)

TABLE_SCHEMA = pa.schema(
    [
        ("subject", pa.string()),
        ("track_id", pa.int32()),
        ("timepoint", pa.int32()),
        ("timepoint_label", pa.string()),
        ("present", pa.bool_()),
        ("volume_voxels", pa.int64()),
        ("size", pa.float64()),
        ("size_unit", pa.string()),
        ("mean_suv", pa.float64()),
        ("max_suv", pa.float64()),
        ("centroid_z", pa.float64()),
        ("centroid_y", pa.float64()),
        ("centroid_x", pa.float64()),
        ("size_change", pa.float64()),
        ("size_change_pct", pa.float64()),
        ("mean_suv_change", pa.float64()),
        ("mean_suv_change_pct", pa.float64()),
        ("max_suv_change_pct", pa.float64()),
        ("reg_angle_deg", pa.float64()),
        ("reg_shift_z", pa.float64()),
        ("reg_shift_y", pa.float64()),
        ("reg_shift_x", pa.float64()),
        ("reg_ncc", pa.float64()),
        ("suv_peak", pa.float64()),
        ("sul_peak", pa.float64()),
        ("mtv_ml", pa.float64()),
        ("tlg", pa.float64()),
        ("volume_reliable", pa.bool_()),
        ("status_at_timepoint", pa.string()),
        ("last_seen_timepoint", pa.int32()),
        ("last_seen_size", pa.float64()),
        ("last_seen_suv_peak", pa.float64()),
        ("response", pa.string()),
        ("note", pa.string()),
    ]
)

#: one row per subject and follow-up time point (:mod:`mdafuse.longitudinal.response`)
RESPONSE_SCHEMA = pa.schema(
    [
        ("subject", pa.string()),
        ("timepoint", pa.int32()),
        ("timepoint_label", pa.string()),
        ("baseline_label", pa.string()),
        ("response", pa.string()),
        ("response_reason", pa.string()),
        ("response_measure", pa.string()),
        ("baseline_peak", pa.float64()),
        ("followup_peak", pa.float64()),
        ("peak_change", pa.float64()),
        ("peak_change_pct", pa.float64()),
        ("baseline_track_id", pa.int32()),
        ("followup_track_id", pa.int32()),
        ("n_lesions_baseline", pa.int32()),
        ("n_lesions", pa.int32()),
        ("n_new_lesions", pa.int32()),
        ("n_resolved_lesions", pa.int32()),
        ("baseline_tlg", pa.float64()),
        ("followup_tlg", pa.float64()),
        ("tlg_change_pct", pa.float64()),
        ("note", pa.string()),
    ]
)

#: values of ``status_at_timepoint``
STATUSES = ("baseline", "persisting", "new", "resolved", "not_measured")


@dataclass
class TimepointInput:
    """One time point of a subject.

    Attributes:
        mr: ``(H, W)`` or ``(Z, H, W)`` MR (any intensity scale; normalised for display only).
        suv: uptake image on the MR grid, same shape, in SUV (or another ratio-scaled unit); None
            when the time point has no PET (a follow-up only: its rows say "not measured").
        label: name shown in the table and figure (e.g. a date or "Pre").
        voxel_size_mm: ``(dy, dx)`` or ``(dz, dy, dx)``; None reports sizes in voxels.
        in_suv: False when ``suv`` holds stored units (e.g. Bq/ml) because SUV was not computable:
            SUL and the response are then not computed for this time point.
        weight_kg: patient weight (DICOM PatientWeight) for SUL; None when unknown.
        height_m: patient height (DICOM PatientSize, m) for SUL; None when unknown.
        sex: "M" or "F" (DICOM PatientSex) for SUL; None or anything else leaves SUL NaN.
    """

    mr: np.ndarray
    suv: np.ndarray | None
    label: str = ""
    voxel_size_mm: tuple[float, ...] | None = None
    in_suv: bool = True
    weight_kg: float | None = None
    height_m: float | None = None
    sex: str | None = None


@dataclass(frozen=True)
class TrackConfig:
    """Configuration of :func:`track_subject`.

    Attributes:
        subject: subject key written in every row (use a pseudonym, never a patient name).
        registration: rigid registration settings.
        segmentation: lesion segmentation rule.
        max_match_distance_mm: largest centroid distance for matching non-overlapping lesions
            (voxels when no voxel size is given).
        enhance: display enhancement settings.
        fuse: fuse MR and PET with :func:`mdafuse.fuse_pair` for the figure (else show an average).
        fusion_weights: weights for ``fuse_pair`` (None: the shipped weights of ``fusion_modality``).
        fusion_modality: functional modality of the uptake images (PET, SPECT; DICOM PT, NM),
            picking the shipped fusion weights when ``fusion_weights`` is None (None: PET's).
        device: torch device for fusion.
        suv_display_max: SUV shown as full scale in the figure (None: baseline 99.9th percentile).
        response: SUVpeak sphere and response thresholds (:mod:`mdafuse.longitudinal.response`).
    """

    subject: str = "subject"
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    max_match_distance_mm: float = 15.0
    enhance: EnhanceConfig = field(default_factory=EnhanceConfig)
    fuse: bool = True
    fusion_weights: str | None = None
    fusion_modality: str | None = None
    device: str = "cpu"
    suv_display_max: float | None = None
    response: ResponseConfig = field(default_factory=ResponseConfig)

    def __post_init__(self) -> None:
        # fail at configuration, not later inside the figure's fallback to the average
        functional_modality(self.fusion_modality)


@dataclass
class TrackResult:
    """Output of :func:`track_subject`.

    Attributes:
        table: one row per (track, time point), schema :data:`TABLE_SCHEMA`.
        transforms: per time point, baseline frame -> that time point (identity for the baseline).
        registrations: per follow-up time point, the registration result (None for the baseline).
        responses: one row per follow-up time point, schema :data:`RESPONSE_SCHEMA`.
        track_labels: per time point, int32 image in the baseline frame (0 background, else the
            track id).
        aligned_mr: per time point, MR resampled into the baseline frame.
        aligned_suv: per time point, SUV resampled into the baseline frame (zeros without PET).
        parquet_path, csv_path, response_parquet_path, response_csv_path, figure_path: files written by
            :func:`mdafuse.longitudinal.report.write_report` (None until then).
    """

    table: pa.Table
    transforms: list[RigidTransform]
    registrations: list[RegistrationResult | None]
    track_labels: list[np.ndarray]
    aligned_mr: list[np.ndarray]
    aligned_suv: list[np.ndarray]
    responses: pa.Table = field(default_factory=RESPONSE_SCHEMA.empty_table)
    parquet_path: Path | None = None
    csv_path: Path | None = None
    response_parquet_path: Path | None = None
    response_csv_path: Path | None = None
    figure_path: Path | None = None


def _validate(timepoints: list[TimepointInput]) -> tuple[int, ...]:
    if len(timepoints) < 2:
        raise ValueError(f"timepoints must hold at least 2 time points; got {len(timepoints)}")
    shape = np.asarray(timepoints[0].mr).shape
    if len(shape) not in (2, 3):
        raise ValueError(f"timepoints[0].mr must have shape (H, W) or (Z, H, W); got {shape}")
    for i, tp in enumerate(timepoints):
        if tp.suv is None and i == 0:
            raise ValueError("timepoints[0].suv is None: the baseline needs PET")
        for name in ("mr", "suv") if tp.suv is not None else ("mr",):
            arr = np.asarray(getattr(tp, name))
            if arr.shape != shape:
                raise ValueError(f"timepoints[{i}].{name} must have shape {shape} (the baseline MR's); got {arr.shape} (resample first)")
            if not np.isfinite(arr).all():
                raise ValueError(f"timepoints[{i}].{name} contains NaN or infinite values")
        if tp.voxel_size_mm is not None and len(tp.voxel_size_mm) != len(shape):
            raise ValueError(f"timepoints[{i}].voxel_size_mm must have {len(shape)} values; got {tp.voxel_size_mm}")
    return shape


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.logical_and(a, b).sum()
    return 2.0 * inter / (a.sum() + b.sum()) if inter else 0.0


def _match(tracks: dict[int, tuple[np.ndarray, np.ndarray]], lesions: list[Lesion], scale: np.ndarray, max_dist: float) -> dict[int, int]:
    """Greedy assignment lesion index -> track id (overlap first, then centroid distance)."""
    pairs = []
    for tid, (mask, centroid) in tracks.items():
        for li, les in enumerate(lesions):
            dice = _dice(mask, les.mask)
            dist = float(np.linalg.norm((np.asarray(les.centroid) - centroid) * scale))
            if dice > 0 or dist <= max_dist:
                pairs.append((-dice, dist, tid, li))
    pairs.sort()
    assigned: dict[int, int] = {}
    used: set[int] = set()
    for _, _, tid, li in pairs:
        if li in assigned or tid in used:
            continue
        assigned[li] = tid
        used.add(tid)
    return assigned


def _pct(now: float, base: float) -> float:
    return 100.0 * (now - base) / base if base else math.nan


#: response columns written as null (not NaN) when not computed; ``note`` says why
_NULL_IF_NAN = ("suv_peak", "sul_peak", "mtv_ml", "tlg", "last_seen_size", "last_seen_suv_peak")


def _null_nan(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _touches_edge(mask: np.ndarray) -> bool:
    """Whether ``mask`` holds a voxel on the first or last index of any axis."""
    for ax in range(mask.ndim):
        if np.take(mask, 0, axis=ax).any() or np.take(mask, -1, axis=ax).any():
            return True
    return False


@dataclass
class _Measure:
    """Response measures of one lesion at one time point."""

    suv_peak: float
    sul_peak: float
    mtv_ml: float
    tlg: float
    volume_reliable: bool | None
    notes: list[str]


def _measure(les: Lesion, suv: np.ndarray, size: float, unit: str, voxel: tuple[float, ...] | None, sul: float, tp_notes: list[str], cfg: TrackConfig) -> _Measure:
    notes = list(tp_notes)
    given = getattr(les, "suv_peak", None)
    peak = math.nan
    if voxel is not None:
        found = suv_peak(suv, les.mask, voxel, cfg.response.peak_volume_ml)
        peak = found.value
        if found.truncated:
            notes.append(f"SUVpeak sphere cut by the image edge ({found.n_inside} of {found.n_voxels} voxels)")
        if suv.ndim == 2:
            notes.append("2-D image: SUVpeak over the sphere's central disc")
    if given is not None and math.isfinite(float(given)):
        peak = float(given)
    if not math.isfinite(peak):
        notes.append("no voxel size: SUVpeak not computed")
    if _touches_edge(les.mask):
        notes.append("lesion on the image edge: size may be truncated")
    reliable = getattr(les, "volume_reliable", None)
    if getattr(cfg.segmentation, "psf_fwhm_mm", None) is None or voxel is None:
        reliable = None  # not judged without the PSF and the voxel size
    if reliable is False:
        notes.append("volume near the PET resolution: MTV unreliable")
    mtv = size if unit == "ml" else math.nan
    if unit != "ml":
        notes.append(f"size in {unit}: MTV and TLG not computed")
    return _Measure(peak, peak * sul, mtv, mtv * les.mean_suv, None if reliable is None else bool(reliable), notes)


def _timepoint_notes(tp: TimepointInput) -> tuple[float, list[str]]:
    """SUL factor of a time point and the notes every row of that time point carries."""
    if tp.suv is None:
        return math.nan, ["no PET at this time point: not measured"]
    if not tp.in_suv:
        return math.nan, ["PET not in SUV: uptake in stored units, SUL and response not computed"]
    factor, why = sul_factor(tp.weight_kg, tp.height_m, tp.sex)
    return factor, [why] if why else []


def track_subject(timepoints: list[TimepointInput], config: TrackConfig | None = None) -> TrackResult:
    """Register, segment, match and report lesions of one subject over time (module docstring).

    Args:
        timepoints: two or more :class:`TimepointInput`, baseline first, all on one grid shape.
        config: settings; :class:`TrackConfig()` by default.

    Returns:
        A :class:`TrackResult` (lesion and response tables, transforms, aligned images, written paths).

    Raises:
        ValueError: fewer than two time points, shape mismatch, non-finite values or a baseline without PET.
    """
    cfg = config if config is not None else TrackConfig()
    shape = _validate(timepoints)
    ndim = len(shape)
    voxel = timepoints[0].voxel_size_mm
    scale = np.asarray(voxel, dtype=np.float64) if voxel is not None else np.ones(ndim)
    if voxel is None:
        unit, unit_factor = "voxels", 1.0
    elif ndim == 3:
        unit, unit_factor = "ml", float(np.prod(voxel)) / 1000.0
    else:
        unit, unit_factor = "mm2", float(np.prod(voxel))

    seg_cfg = cfg.segmentation
    if voxel is not None and hasattr(seg_cfg, "voxel_mm") and getattr(seg_cfg, "voxel_mm") is None:
        seg_cfg = dataclasses.replace(seg_cfg, voxel_mm=tuple(float(v) for v in voxel))  # lets segmentation measure SUVpeak and reliability

    ref_mr = np.asarray(timepoints[0].mr, dtype=np.float32)
    transforms: list[RigidTransform] = [RigidTransform.identity(ndim)]
    registrations: list[RegistrationResult | None] = [None]
    aligned_mr = [ref_mr]
    aligned_suv = [np.asarray(timepoints[0].suv, dtype=np.float32)]
    for i, tp in enumerate(timepoints[1:], start=1):
        reg = register_rigid(ref_mr, tp.mr, cfg.registration)
        registrations.append(reg)
        transforms.append(reg.transform)
        aligned_mr.append(reg.transform.to_reference(np.asarray(tp.mr, dtype=np.float32)))
        if tp.suv is None:
            aligned_suv.append(np.zeros(shape, dtype=np.float32))
        else:
            aligned_suv.append(np.clip(reg.transform.to_reference(np.asarray(tp.suv, dtype=np.float32)), 0.0, None))
        logger.info("time point %d registered (NCC %.3f -> %.3f)", i, reg.ncc_before, reg.ncc_after)

    tracks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    per_time: list[dict[int, Lesion]] = []
    track_labels: list[np.ndarray] = []
    next_id = 1
    for t, suv in enumerate(aligned_suv):
        labels = np.zeros(shape, dtype=np.int32)
        found: dict[int, Lesion] = {}
        if timepoints[t].suv is None:
            per_time.append(found)
            track_labels.append(labels)
            logger.info("time point %d: no PET, not segmented", t)
            continue
        lesions = segment_lesions(suv, seg_cfg)
        assigned = _match(tracks, lesions, scale, cfg.max_match_distance_mm) if tracks else {}
        for li, les in enumerate(lesions):
            tid = assigned.get(li)
            if tid is None:
                tid = next_id
                next_id += 1
            found[tid] = les
            tracks[tid] = (les.mask, np.asarray(les.centroid))
            labels[les.mask] = tid
        per_time.append(found)
        track_labels.append(labels)
        logger.info("time point %d: %d lesions", t, len(lesions))

    tp_info = [_timepoint_notes(tp) for tp in timepoints]
    measures: list[dict[int, _Measure]] = [
        {tid: _measure(les, aligned_suv[t], les.volume_voxels * unit_factor, unit, voxel, tp_info[t][0], tp_info[t][1], cfg) for tid, les in found.items()}
        for t, found in enumerate(per_time)
    ]
    labels_of = [timepoints[t].label or f"t{t}" for t in range(len(timepoints))]
    responses = _responses(per_time, measures, tp_info, timepoints, labels_of, cfg)
    response_at = {r["timepoint"]: r["response"] for r in responses}

    rows: dict[str, list] = {name: [] for name in TABLE_SCHEMA.names}
    first: dict[int, Lesion] = {}
    first_t: dict[int, int] = {}
    last: dict[int, tuple[int, float, float]] = {}
    for t, found in enumerate(per_time):
        reg = registrations[t]
        tr = transforms[t]
        shift = (0.0,) * (3 - ndim) + tuple(tr.shift)
        measured = timepoints[t].suv is not None
        for tid in range(1, next_id):
            les = found.get(tid)
            if les is None and tid not in first:
                continue
            if les is not None and tid not in first:
                first[tid] = les
                first_t[tid] = t
            base = first[tid]
            present = les is not None
            m = measures[t].get(tid)
            n = les.volume_voxels if present else (0 if measured else None)
            size = n * unit_factor if n is not None else math.nan
            mean_suv = les.mean_suv if present else math.nan
            max_suv = les.max_suv if present else math.nan
            cen = (math.nan,) * (3 - ndim) + (tuple(les.centroid) if present else (math.nan,) * ndim)
            base_size = base.volume_voxels * unit_factor
            if not measured:
                status = "not_measured"
            elif present:
                status = "baseline" if t == 0 else "new" if first_t[tid] == t else "persisting"
            else:
                status = "resolved"
            if m is not None:
                last[tid] = (t, size, m.suv_peak)
                notes = list(m.notes)
            else:
                notes = list(tp_info[t][1])
                if measured:
                    seen = last[tid]
                    notes.append(f"resolved: last seen at {labels_of[seen[0]]} (size {seen[1]:.4g} {unit}, SUVpeak {seen[2]:.3g})")
            seen = last.get(tid, (None, math.nan, math.nan))
            if status == "persisting" and tid not in per_time[t - 1] and timepoints[t - 1].suv is not None:
                notes.append(f"reappeared after being absent at {labels_of[t - 1]}")
            values = {
                "subject": cfg.subject,
                "track_id": tid,
                "timepoint": t,
                "timepoint_label": labels_of[t],
                "present": present if measured else None,
                "volume_voxels": n,
                "size": size,
                "size_unit": unit,
                "mean_suv": mean_suv,
                "max_suv": max_suv,
                "centroid_z": cen[0],
                "centroid_y": cen[1],
                "centroid_x": cen[2],
                "size_change": size - base_size,
                "size_change_pct": _pct(size, base_size),
                "mean_suv_change": mean_suv - base.mean_suv,
                "mean_suv_change_pct": _pct(mean_suv, base.mean_suv),
                "max_suv_change_pct": _pct(max_suv, base.max_suv),
                "reg_angle_deg": tr.angle_deg,
                "reg_shift_z": shift[0] if ndim == 3 else math.nan,
                "reg_shift_y": shift[1],
                "reg_shift_x": shift[2],
                "reg_ncc": reg.ncc_after if reg is not None else 1.0,
                "suv_peak": m.suv_peak if m else math.nan,
                "sul_peak": m.sul_peak if m else math.nan,
                "mtv_ml": m.mtv_ml if m else (0.0 if measured and unit == "ml" else math.nan),
                "tlg": m.tlg if m else (0.0 if measured and unit == "ml" else math.nan),
                "volume_reliable": m.volume_reliable if m else None,
                "status_at_timepoint": status,
                "last_seen_timepoint": seen[0],
                "last_seen_size": seen[1],
                "last_seen_suv_peak": seen[2],
                "response": response_at.get(t),
                "note": "; ".join(dict.fromkeys(notes)),
            }
            for k in _NULL_IF_NAN:
                values[k] = _null_nan(values[k])
            for k, v in values.items():
                rows[k].append(v)
    table = pa.Table.from_pydict(rows, schema=TABLE_SCHEMA)
    for r in responses:
        for k in RESPONSE_SCHEMA.names:
            if RESPONSE_SCHEMA.field(k).type == pa.float64():
                r[k] = _null_nan(r.get(k))
    response_table = pa.Table.from_pylist(responses, schema=RESPONSE_SCHEMA)
    return TrackResult(table, transforms, registrations, track_labels, aligned_mr, aligned_suv, responses=response_table)


def _responses(
    per_time: list[dict[int, Lesion]],
    measures: list[dict[int, _Measure]],
    tp_info: list[tuple[float, list[str]]],
    timepoints: list[TimepointInput],
    labels: list[str],
    cfg: TrackConfig,
) -> list[dict]:
    """One response row per follow-up time point against the baseline (``RESPONSE_SCHEMA``)."""
    out = []
    base = measures[0]
    base_tlg = float(sum(m.tlg for m in base.values())) if base else 0.0
    for t in range(1, len(per_time)):
        now = measures[t]
        notes: list[str] = []
        row = {
            "subject": cfg.subject, "timepoint": t, "timepoint_label": labels[t], "baseline_label": labels[0],
            "n_lesions_baseline": len(base), "n_lesions": len(now),
            "n_new_lesions": sum(1 for tid in now if tid not in base),
            "n_resolved_lesions": sum(1 for tid in base if tid not in now),
            "baseline_tlg": base_tlg, "followup_tlg": float(sum(m.tlg for m in now.values())) if now else 0.0,
        }
        row["tlg_change_pct"] = _pct(row["followup_tlg"], base_tlg)
        measure = "SULpeak"
        if timepoints[t].suv is None or not timepoints[t].in_suv or not timepoints[0].in_suv:
            if timepoints[t].suv is None:
                why = "no PET at this time point"
            elif not timepoints[t].in_suv:
                why = "PET not in SUV at this time point"
            else:
                why = "baseline PET not in SUV"
            if timepoints[t].suv is None:
                row.update(n_lesions=None, n_new_lesions=None, n_resolved_lesions=None)
            row.update(response="NE", response_reason=why, response_measure="", followup_tlg=math.nan, tlg_change_pct=math.nan,
                       baseline_peak=math.nan, followup_peak=math.nan, peak_change=math.nan, peak_change_pct=math.nan,
                       baseline_track_id=None, followup_track_id=None, note=why)
            out.append(row)
            continue
        if not (math.isfinite(tp_info[0][0]) and math.isfinite(tp_info[t][0])):
            measure = "SUVpeak"
            notes.append("SUL not computable (weight/height/sex missing): response on SUVpeak")
        pick = (lambda m: m.sul_peak) if measure == "SULpeak" else (lambda m: m.suv_peak)
        category, reason, details = percist_response(
            {tid: pick(m) for tid, m in base.items()}, {tid: pick(m) for tid, m in now.items()}, row["n_new_lesions"], cfg.response
        )
        row.update(details, response=category, response_reason=reason, response_measure=measure, note="; ".join(notes))
        out.append(row)
    return out
