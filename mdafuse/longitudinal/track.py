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
   track's first time point (absolute and %), plus the registration of that time point.
5. Optionally write the table (Parquet and CSV) and a figure: the fused, energy-enhanced slice
   through the lesions at each time point with lesion outlines, and lesion size over time.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from mdafuse.fusion.enhance import EnhanceConfig
from mdafuse.longitudinal.registration import RegistrationConfig, RegistrationResult, register_rigid
from mdafuse.longitudinal.segmentation import Lesion, SegmentationConfig, segment_lesions
from mdafuse.longitudinal.transform import RigidTransform
from mdafuse.modality import functional_modality

__all__ = ["TimepointInput", "TrackConfig", "TrackResult", "track_subject", "TABLE_SCHEMA"]

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
    ]
)


@dataclass
class TimepointInput:
    """One time point of a subject.

    Attributes:
        mr: ``(H, W)`` or ``(Z, H, W)`` MR (any intensity scale; normalised for display only).
        suv: uptake image on the MR grid, same shape, in SUV (or another ratio-scaled unit).
        label: name shown in the table and figure (e.g. a date or "Pre").
        voxel_size_mm: ``(dy, dx)`` or ``(dz, dy, dx)``; None reports sizes in voxels.
    """

    mr: np.ndarray
    suv: np.ndarray
    label: str = ""
    voxel_size_mm: tuple[float, ...] | None = None


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
        track_labels: per time point, int32 image in the baseline frame (0 background, else the
            track id).
        aligned_mr: per time point, MR resampled into the baseline frame.
        aligned_suv: per time point, SUV resampled into the baseline frame.
        parquet_path, csv_path, figure_path: files written by
            :func:`mdafuse.longitudinal.report.write_report` (None until then).
    """

    table: pa.Table
    transforms: list[RigidTransform]
    registrations: list[RegistrationResult | None]
    track_labels: list[np.ndarray]
    aligned_mr: list[np.ndarray]
    aligned_suv: list[np.ndarray]
    parquet_path: Path | None = None
    csv_path: Path | None = None
    figure_path: Path | None = None


def _validate(timepoints: list[TimepointInput]) -> tuple[int, ...]:
    if len(timepoints) < 2:
        raise ValueError(f"timepoints must hold at least 2 time points; got {len(timepoints)}")
    shape = np.asarray(timepoints[0].mr).shape
    if len(shape) not in (2, 3):
        raise ValueError(f"timepoints[0].mr must have shape (H, W) or (Z, H, W); got {shape}")
    for i, tp in enumerate(timepoints):
        for name in ("mr", "suv"):
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


def track_subject(timepoints: list[TimepointInput], config: TrackConfig | None = None) -> TrackResult:
    """Register, segment, match and report lesions of one subject over time (module docstring).

    Args:
        timepoints: two or more :class:`TimepointInput`, baseline first, all on one grid shape.
        config: settings; :class:`TrackConfig()` by default.

    Returns:
        A :class:`TrackResult` (table, transforms, aligned images, written paths).

    Raises:
        ValueError: fewer than two time points, shape mismatch or non-finite values.
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
        aligned_suv.append(np.clip(reg.transform.to_reference(np.asarray(tp.suv, dtype=np.float32)), 0.0, None))
        logger.info("time point %d registered (NCC %.3f -> %.3f)", i, reg.ncc_before, reg.ncc_after)

    tracks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    per_time: list[dict[int, Lesion]] = []
    track_labels: list[np.ndarray] = []
    next_id = 1
    for t, suv in enumerate(aligned_suv):
        lesions = segment_lesions(suv, cfg.segmentation)
        assigned = _match(tracks, lesions, scale, cfg.max_match_distance_mm) if tracks else {}
        found: dict[int, Lesion] = {}
        labels = np.zeros(shape, dtype=np.int32)
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

    rows: dict[str, list] = {name: [] for name in TABLE_SCHEMA.names}
    first: dict[int, Lesion] = {}
    for t, found in enumerate(per_time):
        reg = registrations[t]
        tr = transforms[t]
        shift = (0.0,) * (3 - ndim) + tuple(tr.shift)
        for tid in range(1, next_id):
            les = found.get(tid)
            if les is None and tid not in first:
                continue
            if les is not None and tid not in first:
                first[tid] = les
            base = first[tid]
            present = les is not None
            n = les.volume_voxels if present else 0
            size = n * unit_factor
            mean_suv = les.mean_suv if present else math.nan
            max_suv = les.max_suv if present else math.nan
            cen = (math.nan,) * (3 - ndim) + (tuple(les.centroid) if present else (math.nan,) * ndim)
            base_size = base.volume_voxels * unit_factor
            values = {
                "subject": cfg.subject,
                "track_id": tid,
                "timepoint": t,
                "timepoint_label": timepoints[t].label or f"t{t}",
                "present": present,
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
            }
            for k, v in values.items():
                rows[k].append(v)
    table = pa.Table.from_pydict(rows, schema=TABLE_SCHEMA)

    return TrackResult(table, transforms, registrations, track_labels, aligned_mr, aligned_suv)
