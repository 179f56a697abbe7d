"""Track lesions for every subject of a cohort on Ray (one subject = one work unit).

    python -m jobs.track_lesions [COHORT] --out URI [--cohort-name NAME] [--run-id ID] ...
    mdafuse track COHORT --out URI ...                  (the same job, same options)

COHORT is a manifest (subject, session|timepoint, mr, pet; local or s3://) or a DICOM tree, as for
the fusion job; without it the synthetic demo cohort is used. The pairs are grouped by subject and
sorted by session; a subject's sessions are read (PET resampled onto that session's MR, in SUV)
and passed to :func:`mdafuse.longitudinal.track.track_subject`, which registers the follow-ups
onto the baseline, segments and matches lesions.

Outputs (layout of :mod:`mdafuse.jobs.runtime`)::

    OUT/lesions/cohort=C/run=R/*.parquet          one row per (subject, track, time point)
    OUT/responses/cohort=C/run=R/*.parquet        one row per (subject, follow-up): response category
    OUT/tracking/cohort=C/run=R/<subject_id>/{lesions.parquet, lesions.csv, response.parquet,
                                              response.csv, tracking.png, done.json}
    OUT/runs/cohort=C/run=R/tracking-summary.json

The lesion rows carry the response measures (SUVpeak, SULpeak, MTV, TLG), the lesion's
``status_at_timepoint`` (baseline, persisting, new, resolved, not_measured) and a ``note`` with
every reason a measure is missing; the response rows the PERCIST-style category per follow-up
(:mod:`mdafuse.longitudinal.response`). SUL needs PatientWeight, PatientSize and PatientSex, read
from the PET's DICOM header (never written out); NIfTI input has no SUL. A follow-up session
without PET is registered but not measured (its rows say so, its response is NE); a baseline
without PET is an error.

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
import json
import logging
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from mdafuse import storage
from mdafuse.jobs import runtime
from mdafuse.modality import UPTAKE_MODALITIES
from mdafuse.storage import Store

log = logging.getLogger(__name__)

PROG = "python -m jobs.track_lesions"


def row_schema() -> pa.Schema:
    """The lesion table's columns plus the job's status columns."""
    from mdafuse.longitudinal.track import TABLE_SCHEMA

    extra = [
        ("status", pa.string()), ("error", pa.string()), ("warnings", pa.string()), ("n_timepoints", pa.int64()),
        ("outputs_uri", pa.string()), ("t_total_s", pa.float64()), ("worker", pa.string()), ("node_id", pa.string()),
    ]
    return pa.schema(list(TABLE_SCHEMA) + [pa.field(n, t) for n, t in extra])


def response_schema() -> pa.Schema:
    """The response table's columns plus the job's status columns (only ok subjects have response rows)."""
    from mdafuse.longitudinal.track import RESPONSE_SCHEMA

    extra = [("status", pa.string()), ("error", pa.string()), ("warnings", pa.string()), ("outputs_uri", pa.string())]
    return pa.schema(list(RESPONSE_SCHEMA) + [pa.field(n, t) for n, t in extra])


def patient_body(volume) -> tuple[float | None, float | None, str | None]:
    """``(weight_kg, height_m, sex)`` from the first DICOM file a volume was read from; None where unknown.

    NIfTI volumes (and unreadable headers) give ``(None, None, None)``. The values are used for SUL only.
    """
    files = list(getattr(volume, "source_files", []) or [])
    if not files or str(files[0]).endswith((".nii", ".nii.gz")):
        return None, None, None
    try:
        import pydicom

        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - not DICOM or unreadable: SUL is then not computed, with a note
        return None, None, None

    def number(name: str) -> float | None:
        try:
            value = float(ds.get(name))
        except (TypeError, ValueError):
            return None
        return value if value > 0 else None

    sex = str(ds.get("PatientSex", "") or "").strip().upper() or None
    return number("PatientWeight"), number("PatientSize"), sex


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
    psf_fwhm_mm: float | None = None

    @property
    def layout(self) -> runtime.RunLayout:
        return runtime.RunLayout(Store(self.out, self.endpoint), self.cohort, self.run_id)


def _positive_mm(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0; got {text}")
    return value


def subject_fwhm(timepoints: list[dict], default: float | None) -> float | None:
    """The PET resolution of a subject: the baseline's manifest ``pet_fwhm_mm``, else ``--psf-fwhm-mm`` (None: unknown)."""
    given = next((tp.get("pet_fwhm_mm") for tp in timepoints if tp.get("pet")), "")
    return float(given) if given else default


def natural_key(text: str) -> tuple:
    """Sort key that orders digit runs by value: ``tp2`` before ``tp10``, ``ses-9`` before ``ses-10``."""
    parts = re.split(r"(\d+)", str(text))
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts if p != ""), str(text)


def subject_table(pairs: pa.Table) -> pa.Table:
    """Group a pair table by subject: ``subject_id`` and ``timepoints`` (JSON list in natural session order)."""
    groups: dict[str, list[dict]] = {}
    for row in pairs.to_pylist():
        groups.setdefault(row["subject_id"], []).append(
            {k: row.get(k) or "" for k in ("session", "kind", "mr", "pet", "mr_series_uid", "pet_series_uid", "modality", "pet_fwhm_mm")}
        )
    subjects = sorted(groups)
    return pa.table(
        {
            "subject_id": pa.array(subjects, pa.string()),
            "timepoints": pa.array([json.dumps(sorted(groups[s], key=lambda t: natural_key(t["session"]))) for s in subjects], pa.string()),
        }
    )


def _scrub(message: str, timepoints: list[dict], work: str = "") -> str:
    for tp in timepoints:
        message = runtime.scrub_locations(message, {"mr": tp.get("mr") or "", "pet": tp.get("pet") or ""}, work, (tp.get("mr_series_uid") or "", tp.get("pet_series_uid") or ""))
    return message


class TrackSubjects:
    """Ray Data callable class: tracks the lesions of each subject in a batch."""

    def __init__(self, config: TrackJobConfig) -> None:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        runtime.limit_threads(config.torch_threads)
        self.config = config
        self.schema = row_schema()
        self.worker, self.node_id = runtime.where_am_i()

    def __call__(self, batch: dict) -> pa.Table:
        rows: list[dict] = []
        for subject_id, timepoints in zip(batch["subject_id"], batch["timepoints"]):
            responses: list[dict] = []
            lesions = self.process(str(subject_id), json.loads(str(timepoints)), responses)
            rows.append({
                "subject": str(subject_id),
                "rows_json": json.dumps(lesions, default=_json_default),
                "responses_json": json.dumps(responses, default=_json_default),
            })
        return pa.Table.from_pylist(rows)

    def process(self, subject_id: str, timepoints: list[dict], responses: list[dict] | None = None) -> list[dict]:
        """Lesion rows of one subject (response rows appended to ``responses``); never raises (a failure becomes one error row)."""
        from mdafuse.io.pair import read_volume
        from mdafuse.io.resample import resample_to
        from mdafuse.longitudinal.report import write_report
        from mdafuse.longitudinal.segmentation import SegmentationConfig
        from mdafuse.longitudinal.track import TimepointInput, TrackConfig, track_subject

        cfg = self.config
        outputs = cfg.layout.under("tracking").child(subject_id)
        t0 = time.perf_counter()
        work = tempfile.mkdtemp(prefix="mdafuse-track-")
        notes: list[str] = []
        try:
            if len(timepoints) < 2:
                raise ValueError(f"need at least 2 time points; subject has {len(timepoints)}")
            tps = []
            for tp in timepoints:
                if tp["kind"] != "volume":
                    raise ValueError(f"session {tp['session']}: lesion tracking needs volumes (DICOM/NIfTI), got 2-D images")
                if not tp["mr"] or (not tp["pet"] and not tps):
                    what = "MR" if not tp["mr"] else "PET (the baseline needs PET)"
                    raise ValueError(f"session {tp['session']}: missing {what} location")
                mr = read_volume(storage.fetch_to_local(tp["mr"], work, cfg.endpoint), tp["mr_series_uid"], "mr")
                if not tp["pet"]:
                    notes.append(f"{tp['session']}: no PET: time point registered but not measured (response NE)")
                    tps.append(TimepointInput(mr.data, None, tp["session"], mr.spacing))
                    continue
                raw = read_volume(storage.fetch_to_local(tp["pet"], work, cfg.endpoint), tp["pet_series_uid"], "pet")
                weight, height, sex = patient_body(raw)
                pet = resample_to(raw, mr)
                notes.extend(f"{tp['session']}: {w}" for w in pet_warnings(mr, pet))
                tps.append(TimepointInput(mr.data, pet.data, tp["session"], mr.spacing, in_suv=getattr(pet, "units", "") == "SUVbw",
                                          weight_kg=weight, height_m=height, sex=sex))
            local_out = Path(work) / "out"
            modality = cfg.modality or baseline_modality(timepoints, notes)
            track_config = TrackConfig(
                subject=subject_id, fuse=cfg.fuse, fusion_weights=cfg.weights, fusion_modality=modality, device=cfg.device,
                segmentation=SegmentationConfig(psf_fwhm_mm=subject_fwhm(timepoints, cfg.psf_fwhm_mm)),
            )
            result = write_report(track_subject(tps, track_config), tps, track_config, local_out)
            for name in ("lesions.parquet", "lesions.csv", "response.parquet", "response.csv", "tracking.png"):
                if (local_out / name).is_file():
                    outputs.write_bytes(name, (local_out / name).read_bytes())
            rows = result.table.to_pylist()
            for r in rows:
                r.update(status="ok", error="", n_timepoints=len(tps), outputs_uri=outputs.root)
            if not rows:
                rows = [{"subject": subject_id, "status": "ok", "error": "", "n_timepoints": len(tps), "outputs_uri": outputs.root,
                         "note": "no lesion at any time point"}]
            subject_responses = result.responses.to_pylist()
            for r in subject_responses:
                r.update(status="ok", error="", outputs_uri=outputs.root)
        except Exception as exc:  # noqa: BLE001 - a failed subject becomes an error row
            subject_responses = []
            message = _scrub(f"{type(exc).__name__}: {exc}", timepoints, work)
            log.warning("subject %s failed: %s", subject_id, message)
            rows = [{"subject": subject_id, "status": "error", "error": message[:2000], "n_timepoints": len(timepoints), "outputs_uri": ""}]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        elapsed = time.perf_counter() - t0
        text = _scrub("; ".join(dict.fromkeys(notes)), timepoints)
        for r in rows:
            r.update(t_total_s=elapsed, warnings=text[:2000], worker=self.worker, node_id=self.node_id)
        for r in subject_responses:
            r.update(warnings=text[:2000])
        if responses is not None:
            responses.extend(subject_responses)
        done = {"subject": subject_id, "status": rows[0]["status"], "rows": len(rows), "t_total_s": elapsed}
        try:
            outputs.write_bytes("done.json", json.dumps(done).encode())
        except Exception as exc:  # noqa: BLE001 - the rows still reach the table
            log.warning("subject %s: done record not written (%s)", subject_id, type(exc).__name__)
        return rows


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


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


def add_arguments(p: argparse.ArgumentParser, *, cohort_positional: bool = True) -> None:
    """The job's options, shared by ``python -m jobs.track_lesions`` and ``mdafuse track COHORT``."""
    if cohort_positional:
        p.add_argument("cohort", nargs="?", metavar="COHORT", help="manifest (.csv/.parquet) or DICOM tree; omit for the demo cohort")
        p.add_argument("--out", metavar="URI", help=f"output root (default {runtime.DEMO_OUT} for the demo)")
    p.add_argument("--cohort-name", metavar="NAME", help="cohort partition name")
    p.add_argument("--run-id", metavar="ID", help="run partition name (reuse to resume)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="tracking actors: a fixed pool of N (default: from the cluster's resources)")
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
    p.add_argument(
        "--psf-fwhm-mm", type=_positive_mm, default=None, metavar="MM",
        help="PET resolution of the scanner (FWHM, mm; e.g. 4-6 for brain PET) where the manifest has no pet_fwhm_mm column: lesion "
        "volumes then use the resolution-aware threshold and each row says whether its volume is reliable "
        "(benchmarks/results/lesion_accuracy.md); default: unknown (fixed 45 %% of peak, volumes not judged)",
    )
    p.add_argument("--s3-endpoint", metavar="URL", help="S3 endpoint (default: AWS_ENDPOINT_URL_S3)")
    p.add_argument("--shared-fs", action="store_true", help="a local --out is one shared filesystem on every node")
    p.add_argument("--address", metavar="ADDR", help="Ray address (default: RAY_ADDRESS or local)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray started here")
    p.add_argument("--wait-for-workers", type=float, default=600.0, metavar="S", help="seconds to wait for the first actors to be placed (default 600)")
    p.add_argument("--create-bucket", action="store_true", help="create the --out bucket when it does not exist (default: a missing bucket is an error)")
    p.add_argument("--wait-for-lease", type=float, default=0.0, metavar="S", help="when another attempt is running this run id, wait up to S seconds for it to end (default 0: stop at once)")
    p.add_argument("--lease-timeout", type=float, default=120.0, metavar="S", help="take over a run whose attempt has sent no heartbeat for S seconds (default 120)")
    p.add_argument("--smoke-test", action="store_true", help="demo cohort of 1 subject x 2 time points, no network fusion")
    p.add_argument("--demo-subjects", type=int, default=2, help="demo cohort subjects (default 2)")
    p.add_argument("--demo-timepoints", type=int, default=2, help="demo time points per subject (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the demo cohort (and of the phantom in `mdafuse track --phantom`)")
    p.add_argument("--torch-threads", type=int, default=None, help="torch/OpenMP threads per actor (default: its CPU share, at least 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only, no progress bar")


DESCRIPTION = (
    "Track lesions of every subject of a cohort on Ray: register follow-ups onto the baseline, segment "
    "and match lesions, report size and SUV over time (one Parquet row per subject, lesion and time point). "
    "Rerunning the same --run-id skips subjects already written. Without COHORT the demo cohort is used. "
    + runtime.EXIT_CODES_HELP + "."
)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=f"example: {prog} manifest.csv --out s3://bucket/tracking --run-id r1")
    add_arguments(p)
    return p


def run(args: argparse.Namespace) -> dict:
    """Run the tracking job for parsed ``args``; return the summary (errors as in the fusion job)."""
    from mdafuse.cohort import build_pair_table
    from mdafuse.jobs import preflight

    demo = args.cohort is None
    out = runtime.resolve_out(args.out, not demo)
    preflight.check_output(out, args.s3_endpoint, args.create_bucket)
    if not demo:
        preflight.check_cohort(args.cohort, args.s3_endpoint)
    store = Store(out, args.s3_endpoint)
    threads = max(1, int(args.torch_threads or args.cpus_per_worker))
    args.run_id = args.run_id or ("demo" if demo else runtime.default_run_id())
    cfg = TrackJobConfig(
        out=out,
        cohort=args.cohort_name or runtime.cohort_name(None if demo else args.cohort),
        run_id=args.run_id,
        endpoint=args.s3_endpoint,
        fuse=not (args.no_fuse or args.smoke_test),
        weights=args.weights,
        modality=args.modality,
        device="cuda" if args.num_gpus_per_worker > 0 else "cpu",
        torch_threads=threads,
        psf_fwhm_mm=args.psf_fwhm_mm,
    )
    layout = cfg.layout
    table_root = layout.under("lesions")
    response_root = layout.under("responses")
    with runtime.start_attempt(layout, args, lease_name="tracking-lease.json", outputs=(), tables=("lesions", "responses")) as att:
        attempt = att.attempt_id
        if demo:
            subjects_n, tps_n = (1, 2) if args.smoke_test else (args.demo_subjects, args.demo_timepoints)
            source = runtime.write_demo_input(store, "demo-input-tracking", subjects_n, tps_n, args.seed)
        else:
            source = args.cohort
        runtime.dedupe_rows(table_root, "subject", rows_per_unit="many")
        runtime.dedupe_rows(response_root, "subject", rows_per_unit="many")
        default_salt = runtime.salt_is_default(demo, log)
        subjects = subject_table(build_pair_table(source, cfg.cohort, endpoint=args.s3_endpoint).table)
        done = set(runtime.existing_status(table_root, key="subject"))
        todo = subjects.filter(pa.array([s not in done for s in subjects.column("subject_id").to_pylist()], pa.bool_()))
        t0 = time.perf_counter()
        plan = None
        if todo.num_rows:
            record = pa.table({"subject_id": todo.column("subject_id"), "n_timepoints": pa.array([len(json.loads(t)) for t in todo.column("timepoints").to_pylist()], pa.int64())})
            runtime.write_parquet(layout.run_dir, f"tracking-attempts/{attempt}.parquet", record)
            ray, plan = runtime.ray_and_pool(args, store, todo.num_rows)
            writer = runtime.TableWriter(table_root, row_schema(), attempt, key="subject", guard=att.guard)
            response_writer = runtime.TableWriter(response_root, response_schema(), attempt, key="subject", guard=att.guard)
            try:
                runtime.stream_into(writer, lambda pool_args: _stream_subjects(ray, todo, cfg, plan, args, writer, pool_args, response_writer), plan, args.wait_for_workers)
            finally:
                response_writer.flush()
        wall = time.perf_counter() - t0
        statuses: dict[str, str] = {}
        workers: set[str] = set()
        nodes: set[str] = set()
        t = runtime.read_rows(table_root, ["subject", "status", "worker", "node_id"])
        if t is not None:
            statuses.update(zip(t.column("subject").to_pylist(), t.column("status").to_pylist()))
            workers = {w for w in t.column("worker").to_pylist() if w}
            nodes = {n for n in t.column("node_id").to_pylist() if n}
        summary = {
            "cohort": cfg.cohort,
            "run_id": cfg.run_id,
            "attempt": attempt,
            "out": cfg.out,
            "subjects_total": subjects.num_rows,
            "subjects_written": len(statuses),
            "ok": sum(1 for s in statuses.values() if s == "ok"),
            "error": sum(1 for s in statuses.values() if s != "ok"),
            "skipped_already_done": subjects.num_rows - todo.num_rows,
            "processed_this_attempt": todo.num_rows,
            "wall_s": round(wall, 3),
            "pool_plan": plan.as_dict() if plan else None,
            "workers_used": sorted(workers),
            "nodes_used": sorted(nodes),
            "salt_is_default": default_salt,
            "layout": {"table": table_root.root, "responses": response_root.root, "outputs": layout.under("tracking").root},
        }
        runtime.write_json(layout.run_dir, "tracking-summary.json", summary)
        return summary


def _stream_subjects(
    ray, todo: pa.Table, cfg: TrackJobConfig, plan: runtime.PoolPlan, args: argparse.Namespace, writer: runtime.TableWriter, pool_args: dict,
    response_writer: runtime.TableWriter | None = None,
) -> None:
    from tqdm import tqdm

    ray.data.DataContext.get_current().wait_for_min_actors_s = max(1, int(args.wait_for_workers))
    env = {"env_vars": runtime.forward_env(cfg.endpoint, cfg.torch_threads)}
    ds = runtime.one_row_blocks(ray, todo)
    ds = ds.map_batches(
        TrackSubjects, fn_constructor_kwargs={"config": cfg}, batch_size=1, batch_format="numpy", compute=plan.strategy(),
        num_cpus=plan.cpus_per_worker, num_gpus=plan.gpus_per_worker, runtime_env=env, **pool_args,
    )
    bar = tqdm(total=todo.num_rows, unit="subject", desc=f"track {cfg.cohort}/{cfg.run_id}", disable=args.quiet, file=sys.stderr)
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for rec in batch.to_pylist():
            if response_writer is not None:
                response_writer.add(json.loads(rec.get("responses_json") or "[]"))
            if writer.add(json.loads(rec["rows_json"])):
                bar.update(1)
        if response_writer is not None:
            response_writer.maybe_flush()
        writer.maybe_flush()
    bar.close()


def print_result(summary: dict) -> None:
    print(
        f"cohort {summary['cohort']}, run {summary['run_id']}: {summary['subjects_total']} subjects, {summary['ok']} ok, "
        f"{summary['error']} error, {summary['skipped_already_done']} already done"
    )
    print(f"  lesion table: {summary['layout']['table']}/*.parquet")
    if summary["layout"].get("responses"):
        print(f"  responses   : {summary['layout']['responses']}/*.parquet")
    print(f"  figures     : {summary['layout']['outputs']}/<subject_id>/tracking.png")


def run_from_args(args: argparse.Namespace) -> int:
    """Run parsed arguments and print the result; the exit status (``runtime.EXIT_CODES_HELP``)."""
    return runtime.run_cli("track_lesions", run, print_result, args, total_units="subjects_total")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_from_args(args)
