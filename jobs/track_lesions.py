"""Track lesions for every subject of a cohort on Ray (one subject = one work unit).

    python -m jobs.track_lesions [COHORT] --out URI [--cohort-name NAME] [--run-id ID] ...

COHORT is a manifest (subject, session|timepoint, mr, pet; local or s3://) or a DICOM tree, as for
``jobs.fuse_cohort``; without it the synthetic demo cohort is used. The pairs are grouped by
subject and sorted by session; a subject's sessions are read (PET resampled onto that session's
MR, in SUV) and passed to :func:`mdafuse.longitudinal.track.track_subject`, which registers the
follow-ups onto the baseline, segments and matches lesions.

Outputs::

    OUT/lesions/cohort=C/run=R/*.parquet          one row per (subject, track, time point)
    OUT/tracking/cohort=C/run=R/<subject_id>/{lesions.parquet, lesions.csv, tracking.png, done.json}
    OUT/runs/cohort=C/run=R/tracking-summary.json

A subject that fails (unreadable series, a single time point) gives one row with
``status = "error"`` and its reason; rerunning the same run id skips subjects already written.
Every row has a ``warnings`` column: degradations found while reading (PET not in SUV, SUV
attributes missing, resampling notes), prefixed by the session. PET that cannot be converted to
SUV is tracked in its stored units (no rescaling): its ``mean_suv``/``max_suv`` columns are then
in those units and the segmentation's absolute SUV floor does not mean SUV; the warning says so.
Input locations and series UIDs never go under OUT (the work table stays in Ray's object store).
The figures fuse with the shipped weights of each subject's modality (its baseline session's, from
the pair table: DICOM PT/NM partner, folder name or manifest column) unless ``--modality`` or
``--weights`` fixes one.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.common import limit_threads, read_volume, scrub_locations
from jobs.fuse_cohort import DEMO_OUT, _cohort_name, read_result_tables, resolve_out, _default_run_id, _init_ray, _write_parquet, salt_is_default, stream_through_actors, worker_threads
from mdafuse import storage
from mdafuse.cohort import VOLUME_KIND, build_pair_table
from mdafuse.modality import UPTAKE_MODALITIES

log = logging.getLogger("jobs.track_lesions")


def _schema() -> pa.Schema:
    from mdafuse.longitudinal.track import TABLE_SCHEMA

    extra = [("status", pa.string()), ("error", pa.string()), ("warnings", pa.string()), ("n_timepoints", pa.int64()), ("outputs_uri", pa.string()), ("t_total_s", pa.float64())]
    return pa.schema(list(TABLE_SCHEMA) + [pa.field(n, t) for n, t in extra])


@dataclass(frozen=True)
class TrackJobConfig:
    """Settings of the tracking workers (picklable, no secrets)."""

    out: str
    cohort: str
    run_id: str
    endpoint: str | None = None
    fuse: bool = True
    weights: str | None = None
    modality: str | None = None
    device: str = "cpu"
    torch_threads: int = 1

    @property
    def outputs_root(self) -> str:
        return storage.join(self.out, "tracking", f"cohort={self.cohort}", f"run={self.run_id}")

    @property
    def table_root(self) -> str:
        return storage.join(self.out, "lesions", f"cohort={self.cohort}", f"run={self.run_id}")

    @property
    def run_root(self) -> str:
        return storage.join(self.out, "runs", f"cohort={self.cohort}", f"run={self.run_id}")


def natural_key(text: str) -> tuple:
    """Sort key that orders digit runs by value: ``tp2`` before ``tp10``, ``ses-9`` before ``ses-10``."""
    parts = re.split(r"(\d+)", str(text))
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts if p != ""), str(text)


def subject_table(pairs: pa.Table) -> pa.Table:
    """Group a pair table by subject: ``subject_id`` and ``timepoints`` (JSON list in natural session order)."""
    groups: dict[str, list[dict]] = {}
    for row in pairs.to_pylist():
        groups.setdefault(row["subject_id"], []).append(
            {k: row[k] for k in ("session", "kind", "mr", "pet", "mr_series_uid", "pet_series_uid", "modality")}
        )
    subjects = sorted(groups)
    return pa.table(
        {
            "subject_id": pa.array(subjects, pa.string()),
            "timepoints": pa.array([json.dumps(sorted(groups[s], key=lambda t: natural_key(t["session"]))) for s in subjects], pa.string()),
        }
    )


class TrackSubjects:
    """Ray Data callable class: tracks the lesions of each subject in a batch."""

    def __init__(self, config: TrackJobConfig) -> None:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        limit_threads(config.torch_threads)
        self.config = config
        self.schema = _schema()

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows: list[dict] = []
        for subject in batch.to_pylist():
            rows.extend(self.process(subject["subject_id"], json.loads(subject["timepoints"])))
        return pa.Table.from_pylist(rows, schema=self.schema)

    def process(self, subject_id: str, timepoints: list[dict]) -> list[dict]:
        """Rows of one subject; never raises (a failure becomes one error row)."""
        from mdafuse.io.resample import resample_to
        from mdafuse.longitudinal.track import TimepointInput, TrackConfig, track_subject

        cfg = self.config
        prefix = storage.join(cfg.outputs_root, subject_id)
        t0 = time.perf_counter()
        work = tempfile.mkdtemp(prefix="mdafuse-track-")
        notes: list[str] = []
        try:
            if len(timepoints) < 2:
                raise ValueError(f"need at least 2 time points; subject has {len(timepoints)}")
            tps = []
            for tp in timepoints:
                if tp["kind"] != VOLUME_KIND:
                    raise ValueError(f"session {tp['session']}: lesion tracking needs volumes (DICOM/NIfTI), got 2-D images")
                if not tp["mr"] or not tp["pet"]:
                    raise ValueError(f"session {tp['session']}: missing {'MR' if not tp['mr'] else 'PET'} location")
                mr = read_volume(storage.fetch_to_local(tp["mr"], work, cfg.endpoint), tp["mr_series_uid"], "mr")
                pet = resample_to(read_volume(storage.fetch_to_local(tp["pet"], work, cfg.endpoint), tp["pet_series_uid"], "pet"), mr)
                notes.extend(f"{tp['session']}: {w}" for w in pet_warnings(mr, pet))
                tps.append(TimepointInput(mr.data, pet.data, tp["session"], mr.spacing))
            local_out = Path(work) / "out"
            modality = cfg.modality or baseline_modality(timepoints, notes)
            result = track_subject(tps, TrackConfig(subject=subject_id, out_dir=local_out, fuse=cfg.fuse, fusion_weights=cfg.weights, fusion_modality=modality, device=cfg.device))
            for name in ("lesions.parquet", "lesions.csv", "tracking.png"):
                if (local_out / name).is_file():
                    storage.write_bytes(storage.join(prefix, name), (local_out / name).read_bytes(), cfg.endpoint)
            rows = result.table.to_pylist()
            for r in rows:
                r.update(status="ok", error="", n_timepoints=len(tps), outputs_uri=prefix)
            if not rows:
                rows = [{"subject": subject_id, "status": "ok", "error": "", "n_timepoints": len(tps), "outputs_uri": prefix}]
        except Exception as exc:  # noqa: BLE001 - a failed subject becomes an error row
            message = f"{type(exc).__name__}: {exc}"
            for tp in timepoints:
                message = scrub_locations(message, tp, work)
            log.warning("subject %s failed: %s", subject_id, message)
            rows = [{"subject": subject_id, "status": "error", "error": message[:2000], "n_timepoints": len(timepoints), "outputs_uri": ""}]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        elapsed = time.perf_counter() - t0
        text = "; ".join(dict.fromkeys(notes))
        for tp in timepoints:
            text = scrub_locations(text, tp, "")
        for r in rows:
            r["t_total_s"] = elapsed
            r["warnings"] = text[:2000]
        done = {"subject": subject_id, "status": rows[0]["status"], "rows": len(rows), "t_total_s": elapsed}
        try:
            storage.write_bytes(storage.join(prefix, "done.json"), json.dumps(done).encode(), cfg.endpoint)
        except Exception as exc:  # noqa: BLE001 - the rows still reach the table
            log.warning("subject %s: done record not written (%s)", subject_id, type(exc).__name__)
        return rows


def baseline_modality(timepoints: list[dict], notes: list[str]) -> str | None:
    """The baseline session's functional modality (None when unknown); a note when sessions differ."""
    found = [tp.get("modality") or None for tp in timepoints]
    if len({m for m in found if m}) > 1:
        listed = ", ".join(f"{tp['session']}: {m or 'unknown'}" for tp, m in zip(timepoints, found))
        notes.append(f"sessions differ in modality ({listed}); figures fuse with the baseline's weights")
    return found[0]


def pet_warnings(mr, pet) -> list[str]:
    """Degradations of one time point's PET (already resampled onto ``mr``), as short texts.

    Reader warnings (e.g. SUV attributes missing) are kept; PET not in SUVbw adds a note that it
    is tracked in its stored units.
    """
    out = [str(w) for w in list(getattr(mr, "warnings", []) or []) + list(getattr(pet, "warnings", []) or [])]
    if getattr(pet, "units", "") != "SUVbw":
        out.append(
            f"PET not in SUV (units {getattr(pet, 'units', '') or 'unknown'}): tracked in its stored units; "
            "mean_suv/max_suv are in those units and the SUV floor of the segmentation does not apply as SUV"
        )
    return list(dict.fromkeys(out))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jobs.track_lesions",
        description=(
            "Track lesions of every subject of a cohort on Ray: register follow-ups onto the baseline, segment "
            "and match lesions, report size and SUV over time (one Parquet row per subject, lesion and time point). "
            "Rerunning the same --run-id skips subjects already written. Without COHORT the demo cohort is used."
        ),
        epilog="example: python -m jobs.track_lesions manifest.csv --out s3://bucket/tracking --run-id r1",
    )
    p.add_argument("cohort", nargs="?", metavar="COHORT", help="manifest (.csv/.parquet) or DICOM tree; omit for the demo cohort")
    p.add_argument("--out", metavar="URI", help=f"output root (default {DEMO_OUT} for the demo)")
    p.add_argument("--cohort-name", metavar="NAME", help="cohort partition name")
    p.add_argument("--run-id", metavar="ID", help="run partition name (reuse to resume)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="tracking actors (default: from the cluster's CPUs)")
    p.add_argument("--cpus-per-worker", type=float, default=0.5, metavar="C", help="CPUs per actor (default 0.5)")
    p.add_argument("--num-gpus-per-worker", type=float, default=0.0, metavar="G", help="GPUs per actor for display fusion (default 0)")
    p.add_argument("--no-fuse", action="store_true", help="skip network fusion in the figures (faster)")
    p.add_argument("--weights", metavar="FILE", help="fusion weights for the figures (default: the shipped weights of each subject's modality)")
    p.add_argument(
        "--modality",
        type=str.upper,
        choices=UPTAKE_MODALITIES,
        default=None,
        help="one uptake modality for the whole cohort, picking the figures' fusion weights; default: each subject's own (its baseline session's)",
    )
    p.add_argument("--s3-endpoint", metavar="URL", help="S3 endpoint (default: AWS_ENDPOINT_URL_S3)")
    p.add_argument("--address", metavar="ADDR", help="Ray address (default: RAY_ADDRESS or local)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray started here")
    p.add_argument("--smoke-test", action="store_true", help="demo cohort of 1 subject x 2 time points, no network fusion")
    p.add_argument("--demo-subjects", type=int, default=2, help="demo cohort subjects (default 2)")
    p.add_argument("--demo-timepoints", type=int, default=2, help="demo time points per subject (default 2)")
    p.add_argument("--seed", type=int, default=0, help="demo cohort seed")
    p.add_argument("--torch-threads", type=int, default=None, help="torch/OpenMP threads per actor (default: its CPU share, at least 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return p


def _done_subjects(table_root: str, endpoint: str | None) -> set[str]:
    done: set[str] = set()
    for t in read_result_tables(table_root, ["subject"], endpoint):
        done.update(t.column("subject").to_pylist())
    return done


def run(args: argparse.Namespace) -> dict:
    demo = args.cohort is None
    out = resolve_out(args)
    if demo:
        from mdafuse.io.demo_cohort import write_demo_cohort

        subjects, tps = (1, 2) if args.smoke_test else (args.demo_subjects, args.demo_timepoints)
        folder = Path(tempfile.mkdtemp(prefix="mdafuse-demo-input-")) if storage.is_s3(out) else Path(out) / "demo-input-tracking"
        write_demo_cohort(folder, subjects, tps, args.seed)
        source = str(folder / "manifest.csv")
    else:
        source = args.cohort
    default_salt = salt_is_default(demo)
    cfg = TrackJobConfig(
        out=out,
        cohort=args.cohort_name or _cohort_name(None if demo else source),
        run_id=args.run_id or ("demo" if demo else _default_run_id()),
        endpoint=args.s3_endpoint,
        fuse=not (args.no_fuse or args.smoke_test),
        weights=args.weights,
        modality=args.modality,
        device="cuda" if args.num_gpus_per_worker > 0 else "cpu",
        torch_threads=worker_threads(args),
    )
    subjects = subject_table(build_pair_table(source, cfg.cohort, endpoint=args.s3_endpoint).table)
    done = _done_subjects(cfg.table_root, cfg.endpoint)
    todo = subjects.filter(pa.array([s not in done for s in subjects.column("subject_id").to_pylist()], pa.bool_()))
    t0 = time.perf_counter()
    if todo.num_rows:
        attempt = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}"
        record = pa.table({"subject_id": todo.column("subject_id"), "n_timepoints": pa.array([len(json.loads(t)) for t in todo.column("timepoints").to_pylist()], pa.int64())})
        _write_parquet(record, storage.join(cfg.run_root, "tracking-attempts", f"{attempt}.parquet"), cfg.endpoint)
        ray = _init_ray(args)
        res = ray.cluster_resources()
        if args.workers is not None:
            workers = args.workers
        elif args.num_gpus_per_worker > 0:
            workers = max(1, int(res.get("GPU", 0) // args.num_gpus_per_worker))
        else:
            workers = max(1, int(max(0.0, res.get("CPU", 1) - 1) // args.cpus_per_worker))
        workers = max(1, min(workers, todo.num_rows))
        stream_through_actors(ray, todo, TrackSubjects, cfg, args, workers, 1, cfg.table_root, attempt)
    wall = time.perf_counter() - t0
    statuses: dict[str, str] = {}
    for f in storage.list_files(cfg.table_root, ".parquet", cfg.endpoint):
        t = pq.read_table(io.BytesIO(storage.read_bytes(f, cfg.endpoint)), columns=["subject", "status"])
        statuses.update(zip(t.column("subject").to_pylist(), t.column("status").to_pylist()))
    summary = {
        "cohort": cfg.cohort,
        "run_id": cfg.run_id,
        "out": cfg.out,
        "subjects_total": subjects.num_rows,
        "subjects_written": len(statuses),
        "ok": sum(1 for s in statuses.values() if s == "ok"),
        "error": sum(1 for s in statuses.values() if s != "ok"),
        "skipped_already_done": subjects.num_rows - todo.num_rows,
        "processed_this_attempt": todo.num_rows,
        "wall_s": round(wall, 3),
        "salt_is_default": default_salt,
        "layout": {"table": cfg.table_root, "outputs": cfg.outputs_root},
    }
    storage.write_bytes(storage.join(cfg.run_root, "tracking-summary.json"), json.dumps(summary, indent=2).encode(), cfg.endpoint)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"track_lesions: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"cohort {summary['cohort']}, run {summary['run_id']}: {summary['subjects_total']} subjects, {summary['ok']} ok, "
        f"{summary['error']} error, {summary['skipped_already_done']} already done"
    )
    print(f"  lesion table: {summary['layout']['table']}/*.parquet")
    print(f"  figures     : {summary['layout']['outputs']}/<subject_id>/tracking.png")
    return 0 if summary["subjects_written"] == summary["subjects_total"] else 1


if __name__ == "__main__":
    sys.exit(main())
