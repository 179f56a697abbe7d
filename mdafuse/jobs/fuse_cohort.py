"""Fuse a whole cohort of MR/PET pairs on a Ray cluster (or the local machine).

    python -m jobs.fuse_cohort [COHORT] --out URI [--cohort-name NAME] [--run-id ID] ...
    mdafuse run [COHORT] --out URI ...                  (the same job, same options)

COHORT is a manifest (CSV/Parquet: subject, session|timepoint, mr, pet[, label, modality]; local or
s3://), a DICOM tree (MR and PT/NM series paired by study and frame of reference) or a folder of
2-D pairs (MR/ beside PET/). Without COHORT a small synthetic demo cohort is generated and
processed into ./mdafuse-demo.

The driver builds the pair table, drops pairs an earlier attempt of the same run finished (their
error rows are retried), and streams the rest through a Ray Data pipeline
(:mod:`mdafuse.jobs.fusion_stages`): CPU tasks decode, an actor pool of models (GPU when asked)
fuses slices gathered across pairs and scores them on its device, CPU tasks enhance, encode and
write. The driver writes the metrics rows as they arrive. See docs/cohort-job.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import numpy as np
import pyarrow as pa

from mdafuse.jobs import runtime
from mdafuse.jobs.fusion_rows import PAIR_META, ROW_SCHEMA, empty_row, normalise_row
from mdafuse.jobs.fusion_stages import FusionJobConfig, finalize_pair, finish_chunks, load_chunks, FuseChunks, reused_row
from mdafuse.modality import FUNCTIONAL_MODALITIES
from mdafuse.storage import Store

log = logging.getLogger(__name__)

PROG = "python -m jobs.fuse_cohort"
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
#: Autocast dtype for CUDA with ``--precision auto``: fp16 is 6x closer to fp32 than bf16 on real
#: pairs (tests/jobs/test_precision.py; docs/cohort-job.md) and no slower on tensor cores.
CUDA_AUTO_PRECISION = "fp16"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The job's options, shared by ``python -m jobs.fuse_cohort`` and ``mdafuse run``."""
    p.add_argument("cohort", nargs="?", metavar="COHORT", help="manifest (.csv/.parquet, local or s3://), BIDS dataset (has dataset_description.json), DICOM folder, or folder with MR/ and PET/ 2-D pairs; omit for the demo cohort")
    p.add_argument("--out", metavar="URI", help=f"output root: a folder or s3://bucket/prefix (default {runtime.DEMO_OUT} for the demo; required otherwise)")
    p.add_argument("--cohort-name", metavar="NAME", help="cohort partition name (default: the COHORT file/folder name, or 'demo')")
    p.add_argument("--run-id", metavar="ID", default=None, help="run partition name; reuse it to resume an interrupted run (default: run-<UTC time>-<random>, 'demo' for the demo)")
    pool = p.add_argument_group("workers (see docs/cohort-job.md, 'The worker pool')")
    pool.add_argument("--workers", type=int, default=None, metavar="N", help="model actors: a fixed pool of N (default: up to what the autoscaler may grow the cluster to, else what it has now)")
    pool.add_argument("--cpus-per-worker", type=float, default=0.5, metavar="C", help="CPUs reserved per model actor; fractional is fine on small machines (default 0.5)")
    pool.add_argument("--num-gpus-per-worker", type=float, default=0.0, metavar="G", help="GPUs per model actor, e.g. 1 or 0.5 (default 0: CPU)")
    pool.add_argument("--cpus-per-task", type=float, default=0.5, metavar="C", help="CPUs reserved per decode/write task (default 0.5)")
    pool.add_argument("--wait-for-workers", type=float, default=600.0, metavar="S", help="seconds to wait for the cluster (autoscaler) to place the first model actors before giving up (default 600)")
    pool.add_argument("--torch-threads", type=int, default=None, metavar="T", help="torch/OpenMP threads per model actor (default: its CPU share, at least 1)")
    model = p.add_argument_group("model and scoring")
    model.add_argument("--weights", metavar="FILE|NAME", help="safetensors weights, or the name of shipped weights such as mdafuse_spect_v3 (the SPECT ensemble); default: the shipped model of each pair's modality")
    model.add_argument(
        "--modality",
        type=str.upper,
        choices=FUNCTIONAL_MODALITIES,
        default=None,
        help="one functional modality for the whole cohort, picking its shipped weights (SPECT: mdafuse_spect_v2; PET, CT: mdafuse_v3); default: each pair's own (DICOM PT/NM partner, folder name or manifest column)",
    )
    model.add_argument("--batch-size", type=int, default=16, metavar="B", help="slices per network call, gathered across pairs (default 16; 64-256 on a GPU)")
    model.add_argument("--chunk-slices", type=int, default=64, metavar="K", help="most slices per pipeline record: larger volumes travel in chunks, bounding memory (default 64)")
    model.add_argument("--precision", choices=PRECISION_CHOICES, default="auto", help=f"network precision on CUDA (auto: {CUDA_AUTO_PRECISION}); CPU always runs fp32")
    model.add_argument("--score-every", type=int, default=1, metavar="K", help="score every K-th brain slice of a volume (default 1: all)")
    model.add_argument("--slice-images", choices=("brain", "all", "none"), default="brain", help="which volume slices get fused/enhanced PNGs (default brain)")
    bids = p.add_argument_group("BIDS input and registration (see docs/cohort-job.md, 'BIDS cohorts')")
    for entity, example in (("trc", "FDG"), ("rec", "ACDYN"), ("run", "1"), ("task", "rest")):
        bids.add_argument(f"--bids-{entity}", metavar="LABEL", help=f"BIDS: only PET images whose {entity}- entity is LABEL, e.g. {example} (default: all)")
    bids.add_argument("--mr-session", choices=("same", "nearest"), default="same", help="BIDS: a PET session without a T1w takes the subject's T1w from the nearest session (gap recorded in mr_gap_days), or is an error row (same, default)")
    bids.add_argument("--pet-frames", metavar="WINDOW", default="last:20", help="dynamic (4-D) PET -> one static image: time-weighted mean of the frames in 'last:MIN' (the last MIN minutes, default last:20), 'START-END' minutes after injection, or 'all'")
    bids.add_argument("--register", choices=("auto", "always", "never"), default="auto", help="rigid PET-to-MR registration by mutual information: auto (default) when the frames of reference differ (BIDS, DICOM from different scanners), always, or never (trust the headers)")
    where = p.add_argument_group("cluster and storage")
    where.add_argument("--s3-endpoint", metavar="URL", help="S3 endpoint, e.g. http://127.0.0.1:8333 (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)")
    where.add_argument("--shared-fs", action="store_true", help="a local --out is one shared filesystem on every node (else a multi-node cluster needs s3://)")
    model.add_argument("--dicom", action="store_true", help="also write each fused volume as a derived DICOM series (<pair>/dicom/), de-identified, when its MR is a DICOM series")
    model.add_argument("--keep-identity", action="store_true", help="with --dicom: keep the source patient module (name, ID, birth date) in the derived series")
    where.add_argument("--create-bucket", action="store_true", help="create the --out bucket when it does not exist (default: a missing bucket is an error)")
    where.add_argument("--wait-for-lease", type=float, default=0.0, metavar="S", help="when another attempt is running this run id, wait up to S seconds for it to end (default 0: stop at once)")
    where.add_argument("--lease-timeout", type=float, default=120.0, metavar="S", help="take over a run whose attempt has sent no heartbeat for S seconds (default 120)")
    where.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    where.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray started by this job (default: all)")
    demo = p.add_argument_group("demo and testing")
    demo.add_argument("--limit", type=int, default=None, metavar="N", help="process only the first N pairs (by pair_id)")
    demo.add_argument("--smoke-test", action="store_true", help="tiny run: demo cohort of 2 subjects x 1 time point (or the first 2 pairs of COHORT), 1 worker")
    demo.add_argument("--demo-subjects", type=int, default=3, help="demo cohort subjects (default 3)")
    demo.add_argument("--demo-timepoints", type=int, default=2, help="demo cohort time points per subject (default 2)")
    demo.add_argument("--seed", type=int, default=0, help="demo cohort seed (default 0)")
    demo.add_argument("--inject-crash", metavar="PAIR_ID", help=argparse.SUPPRESS)
    demo.add_argument("--crash-marker", metavar="FILE", help=argparse.SUPPRESS)
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only, no progress bar")


DESCRIPTION = (
    "Fuse every MR/PET pair of a cohort with MdAFuse on Ray: fused and enhanced images, one metrics row per "
    "pair (Parquet, hive-partitioned by cohort and run) and a summary. Rerunning the same --run-id resumes: "
    f"pairs already written are skipped. Without COHORT, a synthetic demo cohort is generated and processed into {runtime.DEMO_OUT}. "
    + runtime.EXIT_CODES_HELP + "."
)
EPILOG = (
    "examples:\n"
    "  python -m jobs.fuse_cohort                                   # demo cohort -> ./mdafuse-demo\n"
    "  python -m jobs.fuse_cohort manifest.csv --out s3://bucket/fusion --cohort-name adni --run-id r1\n"
    "  python -m jobs.fuse_cohort /data/dicom --out out/ --workers 4 --num-gpus-per-worker 1 --batch-size 128\n"
    "  mdafuse qa out/ --run r1 --metric SSIM --worst 5                # inspect the results"
)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


# ----------------------------------------------------------------------------- planning


def _expected_sha(weights: str | None, modality: str | None) -> tuple[tuple[str, str], ...]:
    """(weights key, sha256) of every weights file the run may use (no model is loaded)."""
    from mdafuse.model.weights import MODALITY_WEIGHTS, default_weights_path, file_sha256, resolve_weights

    if weights is not None:
        return (("", file_sha256(resolve_weights(weights))),)
    keys = [""] + sorted(MODALITY_WEIGHTS)
    return tuple((k, file_sha256(default_weights_path(k or modality))) for k in keys)


def _precision(requested: str, gpus: float) -> str:
    if gpus <= 0:
        return "fp32"
    return CUDA_AUTO_PRECISION if requested == "auto" else requested


def make_config(args: argparse.Namespace, out: str, cohort: str, run_id: str, attempt: str = "") -> FusionJobConfig:
    gpus = float(args.num_gpus_per_worker or 0.0)
    return FusionJobConfig(
        out=out,
        cohort=cohort,
        run_id=run_id,
        endpoint=args.s3_endpoint,
        weights=args.weights,
        modality=args.modality,
        device="cuda" if gpus > 0 else "cpu",
        precision=_precision(args.precision, gpus),
        channels_last=gpus > 0,
        batch_size=args.batch_size,
        chunk_slices=args.chunk_slices,
        slice_images=args.slice_images,
        score_every=args.score_every,
        torch_threads=worker_threads(args),
        expected_sha=_expected_sha(args.weights, args.modality),
        crash_on=args.inject_crash,
        crash_marker=args.crash_marker,
        attempt=attempt,
        dicom=args.dicom,
        keep_identity=args.keep_identity,
        pet_frames=args.pet_frames,
        register=args.register,
    )


def bids_selection(args: argparse.Namespace):
    """The BIDS entity filters and T1w rule of the options."""
    from mdafuse.io.bids import BidsSelection

    return BidsSelection(trc=args.bids_trc, rec=args.bids_rec, run=args.bids_run, task=args.bids_task, mr_session=args.mr_session)


def worker_threads(args: argparse.Namespace) -> int:
    """Threads per actor: --torch-threads, else its CPU share (at least 1)."""
    if getattr(args, "torch_threads", None):
        return max(1, int(args.torch_threads))
    return max(1, int(args.cpus_per_worker))


def rows_per_model_call(batch_size: int, chunk_slices: int, all_2d: bool, n_pairs: int, workers: int) -> int:
    """Pipeline records per model-actor call: about ``batch_size`` slices, yet work for every actor.

    A 2-D pair is one slice, so a call gathers up to ``batch_size`` pairs; a volume record holds up
    to ``chunk_slices`` slices, so a call takes ``batch_size // chunk_slices`` of them (at least
    one). On a small cohort the calls shrink so that each actor gets at least two of them.
    """
    per_call = batch_size if all_2d else max(1, batch_size // chunk_slices)
    return max(1, min(per_call, -(-n_pairs // (2 * max(1, workers)))))


# ----------------------------------------------------------------------------- the pipeline


def stream_pairs(ray, todo: pa.Table, cfg: FusionJobConfig, plan: runtime.PoolPlan, args: argparse.Namespace, writer: runtime.TableWriter, pool_args: dict | None = None) -> dict:
    """Run the pipeline over ``todo`` and hand every pair's row to ``writer``; returns counts.

    ``pool_args`` are extra remote args of the model actors (placement, :func:`runtime.spread_pool`).
    The work table holds input locations, so it goes to Ray's object store, never to OUT.
    """
    from tqdm import tqdm

    env = {"env_vars": runtime.forward_env(cfg.endpoint, cfg.torch_threads)}
    ctx = ray.data.DataContext.get_current()
    ctx.wait_for_min_actors_s = max(1, int(args.wait_for_workers))
    all_2d = set(todo.column("kind").to_pylist()) == {"image2d"}
    ds = runtime.one_row_blocks(ray, todo)
    ds = ds.flat_map(load_chunks, fn_kwargs={"config": cfg}, num_cpus=args.cpus_per_task, runtime_env=env)
    ds = ds.map_batches(
        FuseChunks,
        fn_constructor_kwargs={"config": cfg},
        batch_size=rows_per_model_call(cfg.batch_size, cfg.chunk_slices, all_2d, todo.num_rows, plan.max_workers),
        batch_format="numpy",
        compute=plan.strategy(),
        num_cpus=plan.cpus_per_worker,
        num_gpus=plan.gpus_per_worker,
        runtime_env=env,
        **(pool_args or {}),
    )
    ds = ds.map_batches(finish_chunks, fn_kwargs={"config": cfg}, batch_size=1, batch_format="numpy", num_cpus=args.cpus_per_task, runtime_env=env)
    finalize = ray.remote(num_cpus=args.cpus_per_task, max_retries=3, runtime_env=env)(finalize_pair)
    pending_chunks: dict[str, list[dict]] = {}
    joining: list = []
    counts = {"reused": 0, "computed": 0, "first_row_at": None, "last_row_at": None, "spans": []}
    bar = tqdm(total=todo.num_rows, unit="pair", desc=f"fuse {cfg.cohort}/{cfg.run_id}", disable=args.quiet, file=sys.stderr)

    def deliver(row: dict, reused: bool) -> None:
        if writer.add([row]):
            counts["reused" if reused else "computed"] += 1
            now = time.perf_counter()
            counts["first_row_at"] = counts["first_row_at"] or now
            counts["last_row_at"] = now
            bar.update(1)

    def collect(block: bool) -> None:
        if not joining:
            return
        ready, rest = ray.wait(joining, num_returns=len(joining) if block else 1, timeout=None if block else 0)
        joining[:] = rest
        for ref in ready:
            deliver(ray.get(ref), False)

    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for i in range(len(batch["pair_id"])):
            rec = {k: _plain(v[i]) for k, v in batch.items()}
            counts["spans"].extend(runtime.parse_trace(rec.get("trace", "")))
            if rec["status"] == "reused":
                deliver(reused_row(rec), True)
            elif rec["row"]:
                deliver(normalise_row(json.loads(rec["row"])), False)
            else:
                chunks = pending_chunks.setdefault(rec["pair_id"], [])
                chunks.append(rec)
                if len(chunks) == int(rec["n_chunks"]):
                    joining.append(finalize.remote(pending_chunks.pop(rec["pair_id"]), cfg))
        collect(block=False)
        writer.maybe_flush()
    collect(block=True)
    bar.close()
    missing = [p for p in todo.to_pylist() if p["pair_id"] not in writer.written_ids]
    for pair in missing:  # Ray Data delivers every row once; this only guards the table's promise
        row = empty_row(pair)
        row.update(error="no result came back from the pipeline (internal error); rerun the same --run-id to retry", finished_at=runtime.utc_now())
        writer.add([row])
    writer.flush()
    counts["lost"] = len(missing)
    return counts


def _plain(value):
    """A numpy scalar of a batch as the Python value (strings decoded)."""
    if isinstance(value, np.generic):
        value = value.item()
    return value.decode() if isinstance(value, bytes) else value


def run(args: argparse.Namespace) -> dict:
    """Run the job for parsed ``args``; return the summary dictionary.

    Raises:
        PreflightError: OUT not writable or the cohort unreadable (before Ray starts).
        LeaseHeld: another live attempt holds the run.
        JobError: no model actor could start, or the run's lease was lost.
    """
    from mdafuse.cohort import build_pair_table
    from mdafuse.jobs import preflight

    demo = args.cohort is None
    out = runtime.resolve_out(args.out, not demo)
    preflight.check_output(out, args.s3_endpoint, args.create_bucket)
    if not demo:
        preflight.check_cohort(args.cohort, args.s3_endpoint)
    store = Store(out, args.s3_endpoint)
    cohort = args.cohort_name or runtime.cohort_name(None if demo else args.cohort)
    args.run_id = args.run_id or ("demo" if demo else runtime.default_run_id())
    layout = runtime.RunLayout(store, cohort, args.run_id)
    with runtime.start_attempt(layout, args, lease_name="lease.json", outputs=("images",), tables=("metrics",)) as att:
        attempt = att.attempt_id
        cfg = make_config(args, out, cohort, args.run_id, attempt)
        metrics = layout.under("metrics")
        if demo:
            subjects, timepoints = (2, 1) if args.smoke_test else (args.demo_subjects, args.demo_timepoints)
            source = runtime.write_demo_input(store, "demo-input", subjects, timepoints, args.seed)
        else:
            source = args.cohort
        deduped = runtime.dedupe_rows(metrics)
        default_salt = runtime.salt_is_default(demo, log)
        pairs = build_pair_table(source, cohort, endpoint=args.s3_endpoint, bids=bids_selection(args)).table
        limit = 2 if args.smoke_test and args.limit is None else args.limit
        if limit is not None:
            pairs = pairs.slice(0, limit)
        runtime.write_parquet(layout.run_dir, "pairs.parquet", pairs.select(list(PAIR_META)))
        previous = runtime.existing_status(metrics)
        todo = pairs.filter(pa.array([previous.get(p) != "ok" for p in pairs.column("pair_id").to_pylist()], type=pa.bool_()))
        n_skipped = pairs.num_rows - todo.num_rows
        retry = {p for p in todo.column("pair_id").to_pylist() if p in previous}
        n_retried = runtime.supersede_rows(metrics, retry) if retry else 0
        log.info("cohort %s run %s: %d pairs, %d already ok, %d to do (%d earlier errors retried)", cohort, args.run_id, pairs.num_rows, n_skipped, todo.num_rows, len(retry))
        t0 = time.perf_counter()
        plan, counts = None, {"reused": 0, "computed": 0, "lost": 0, "first_row_at": None, "last_row_at": None, "spans": []}
        if todo.num_rows:
            runtime.write_parquet(layout.run_dir, f"attempts/{attempt}.parquet", todo.select(list(PAIR_META)))
            all_2d = set(todo.column("kind").to_pylist()) == {"image2d"}
            ray, plan = runtime.ray_and_pool(args, store, todo.num_rows if all_2d else None)
            _announce(plan, ray.cluster_resources(), args)
            writer = runtime.TableWriter(metrics, ROW_SCHEMA, attempt, guard=att.guard)
            try:
                counts = runtime.stream_into(writer, lambda pool_args: stream_pairs(ray, todo, cfg, plan, args, writer, pool_args), plan, args.wait_for_workers)
            finally:
                runtime.clean_attempt(layout, ("images",), attempt)
        wall = time.perf_counter() - t0
        summary = run_summary(cfg, pairs.num_rows, n_skipped, todo.num_rows, wall, plan, counts, default_salt, n_retried, attempt)
        summary["lease"] = {"taken_over_from": att.lease.taken_over_from, "cleaned_dead_attempts": att.cleaned_dead_attempts, "duplicate_rows_removed": deduped}
        runtime.write_json(layout.run_dir, "summary.json", summary)
        return summary


def _announce(plan: runtime.PoolPlan, resources: dict, args: argparse.Namespace) -> None:
    what = f"{plan.gpus_per_worker:g} GPU" if plan.gpus_per_worker > 0 else f"{plan.cpus_per_worker:g} CPU"
    pool = f"{plan.max_workers}" if plan.fixed else f"{plan.min_workers}..{plan.max_workers}"
    log.info("model actors: %s (%s each; upper size from %s)", pool, what, plan.source)
    need = plan.min_workers * (plan.gpus_per_worker or plan.cpus_per_worker)
    have = resources.get("GPU" if plan.gpus_per_worker > 0 else "CPU", 0.0)
    if need > have:
        log.warning(
            "the cluster has %g %s now and the pool needs %g to start: waiting up to %g s for the autoscaler to add nodes (--wait-for-workers)",
            have, "GPUs" if plan.gpus_per_worker > 0 else "CPUs", need, args.wait_for_workers,
        )


def run_summary(cfg, n_pairs, n_skipped, n_submitted, wall_s, plan, counts, default_salt, n_retried, attempt) -> dict:
    """Summarise the run's rows (read back column by column; no images touch the driver)."""
    import pyarrow.compute as pc

    layout = cfg.layout
    cols = ["pair_id", "status", "t_total_s", "weights_sha256", "model_version", "worker", "node_id", "finished_at"]
    t = runtime.read_rows(layout.under("metrics"), cols)
    if t is None:
        t = pa.table({c: pa.array([], ROW_SCHEMA.field(c).type) for c in cols})
    statuses = t.column("status").to_pylist()
    ok = t.filter(pc.equal(t.column("status"), "ok"))
    computed = counts.get("computed", 0)
    span = (counts["last_row_at"] - counts["first_row_at"]) if counts.get("first_row_at") and counts.get("last_row_at") else 0.0

    def distinct(column: str) -> list[str]:
        return sorted({v for cell in ok.column(column).to_pylist() if cell for v in cell.split(",")})

    return {
        "cohort": cfg.cohort,
        "run_id": cfg.run_id,
        "attempt": attempt,
        "out": cfg.out,
        "pairs_total": n_pairs,
        "rows": t.num_rows,
        "unique_pairs": len(set(t.column("pair_id").to_pylist())),
        "ok": statuses.count("ok"),
        "error": statuses.count("error"),
        "skipped_already_done": n_skipped,
        "resumed_from_records": counts.get("reused", 0),
        "retried_errors": n_retried,
        "processed_this_attempt": n_submitted,
        "computed_this_attempt": computed,
        "wall_s": round(wall_s, 3),
        "pairs_per_s": round(n_submitted / wall_s, 4) if wall_s > 0 and n_submitted else 0.0,
        "first_to_last_row_s": round(span, 3),
        "pairs_per_s_first_to_last": round((computed - 1) / span, 4) if span > 0 and computed > 1 else 0.0,
        "mean_pair_s": round(float(pc.mean(ok.column("t_total_s")).as_py() or 0.0), 4) if ok.num_rows else 0.0,
        "pool_plan": plan.as_dict() if plan else None,
        "pipeline": runtime.stage_report(counts.get("spans", [])),
        "workers": plan.max_workers if plan else 0,
        "workers_used": distinct("worker"),
        "nodes_used": distinct("node_id"),
        "weights_sha256": sorted({h for h in ok.column("weights_sha256").to_pylist() if h}),
        "model_version": sorted({v for v in ok.column("model_version").to_pylist() if v}),
        "config_sha256": cfg.hash(),
        "salt_is_default": default_salt,
        "config": {
            "batch_size": cfg.batch_size, "chunk_slices": cfg.chunk_slices, "slice_images": cfg.slice_images, "score_every": cfg.score_every,
            "device": cfg.device, "precision": cfg.precision, "weights": cfg.weights or "shipped", "modality": cfg.modality,
            "dicom": ("derived series, source identity kept" if cfg.keep_identity else "derived series, de-identified") if cfg.dicom else "off",
        },
        "versions": runtime.versions(),
        "layout": {"images": layout.under("images").root, "metrics": layout.under("metrics").root, "run": layout.run_dir.root},
        "finished_at": runtime.utc_now(),
    }


def print_result(summary: dict) -> None:
    lay = summary["layout"]
    print(
        f"cohort {summary['cohort']}, run {summary['run_id']}: {summary['pairs_total']} pairs, {summary['ok']} ok, {summary['error']} error, "
        f"{summary['skipped_already_done'] + summary['resumed_from_records']} already done (resumed)"
    )
    print(f"  images : {lay['images']}/<pair_id>/")
    print(f"  metrics: {lay['metrics']}/*.parquet")
    print(f"  summary: {lay['run']}/summary.json")
    if summary["processed_this_attempt"]:
        plan = summary["pool_plan"] or {}
        print(
            f"  {summary['processed_this_attempt']} pairs in {summary['wall_s']:.1f} s ({summary['pairs_per_s']:.3f} pairs/s); "
            f"workers planned {plan.get('max_workers', 0)}, used {len(summary['workers_used'])} on {len(summary['nodes_used'])} node(s)"
        )
    try:
        from mdafuse.qa import format_report, qa_report

        report = qa_report(summary["out"], run=summary["run_id"], cohort=summary["cohort"], metric="SSIM", worst=3)
        print()
        print(format_report(report, "table"))
    except Exception as exc:  # noqa: BLE001 - the QA print is a convenience
        print(f"  (QA summary unavailable: {exc})")
    print(f"\nnext: mdafuse qa {summary['out']} --run {summary['run_id']}")


def run_from_args(args: argparse.Namespace) -> int:
    """Run parsed arguments and print the result; the exit status (``runtime.EXIT_CODES_HELP``)."""
    return runtime.run_cli("fuse_cohort", run, print_result, args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_from_args(args)
