"""Fuse a whole cohort of MR/PET pairs on a Ray cluster (or the local machine).

    python -m jobs.fuse_cohort [COHORT] --out URI [--cohort-name NAME] [--run-id ID] ...

COHORT is a manifest (CSV/Parquet: subject, session|timepoint, mr, pet[, label]; local or s3://),
a DICOM tree (MR and PT series paired by study and frame of reference) or a folder of 2-D pairs
(MR/ beside PET/). Without COHORT a small synthetic demo cohort is generated and processed into
./mdafuse-demo.

Pipeline: the driver builds the pair table, drops pairs already written with status ok by an
earlier attempt of the same run (error rows are superseded and retried), and hands the rest to
Ray Data as an in-memory table (input locations never go under OUT); Ray repartitions it into
small blocks and streams the blocks through an actor pool (``FusePairs``: one loaded model per
actor, fractional CPUs, GPUs from --num-gpus-per-worker) that fuses, enhances, scores and writes
each pair's images and its done record; the result rows are written as Parquet to a hidden
staging folder and moved into OUT/metrics/cohort=C/run=R/ when complete. Nothing but the final
counts is collected on the driver.
See docs/cohort-job.md for the output layout and the reliability guarantees.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.common import CRASH_ENV, PUBLIC_PAIR_COLUMNS, ROW_SCHEMA, FusePairs, JobConfig
from mdafuse import storage
from mdafuse.cohort import build_pair_table
from mdafuse.modality import FUNCTIONAL_MODALITIES
from mdafuse.threads import thread_env

log = logging.getLogger("jobs.fuse_cohort")

DEMO_OUT = "./mdafuse-demo"
SALT_ENV = "MDAFUSE_PSEUDONYM_SALT"
STAGING = "_staging"
_FORWARD_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "MDAFUSE_PSEUDONYM_SALT", CRASH_ENV)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jobs.fuse_cohort",
        description=(
            "Fuse every MR/PET pair of a cohort with MdAFuse on Ray: fused and enhanced images, one metrics row per "
            "pair (Parquet, hive-partitioned by cohort and run) and a summary.json. Rerunning the same --run-id "
            "resumes: pairs already written are skipped. Without COHORT, a synthetic demo cohort is generated and "
            f"processed into {DEMO_OUT}."
        ),
        epilog=(
            "examples:\n"
            "  python -m jobs.fuse_cohort                                   # demo cohort -> ./mdafuse-demo\n"
            "  python -m jobs.fuse_cohort manifest.csv --out s3://bucket/fusion --cohort-name adni --run-id r1\n"
            "  python -m jobs.fuse_cohort /data/dicom --out out/ --workers 4 --num-gpus-per-worker 0.5\n"
            "  mdafuse qa out/ --run r1 --metric SSIM --worst 5                # inspect the results"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("cohort", nargs="?", metavar="COHORT", help="manifest (.csv/.parquet, local or s3://), DICOM folder, or folder with MR/ and PET/ 2-D pairs; omit for the demo cohort")
    p.add_argument("--out", metavar="URI", help=f"output root: a folder or s3://bucket/prefix (default {DEMO_OUT} for the demo; required otherwise)")
    p.add_argument("--cohort-name", metavar="NAME", help="cohort partition name (default: the COHORT file/folder name, or 'demo')")
    p.add_argument("--run-id", metavar="ID", default=None, help="run partition name; reuse it to resume an interrupted run (default: run-<UTC time>, 'demo' for the demo)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="fusion actors (default: as many as the cluster's CPUs or GPUs allow)")
    p.add_argument("--cpus-per-worker", type=float, default=0.5, metavar="C", help="CPUs reserved per fusion actor; keep it fractional on small machines (default 0.5)")
    p.add_argument("--num-gpus-per-worker", type=float, default=0.0, metavar="G", help="GPUs per fusion actor, e.g. 1 or 0.5 (default 0: CPU); needs a GPU in the cluster")
    p.add_argument("--batch-size", type=int, default=4, metavar="B", help="slices per network call for volumes (default 4)")
    p.add_argument("--pairs-per-block", type=int, default=None, metavar="K", help="pairs per Ray block (default: spread over ~4 blocks per worker)")
    p.add_argument("--weights", metavar="FILE", help="safetensors weights (default: the shipped model for --modality)")
    p.add_argument(
        "--modality",
        type=str.upper,
        choices=FUNCTIONAL_MODALITIES,
        default=None,
        help="one functional modality for the whole cohort, picking its shipped weights (SPECT: mdafuse_spect_v3; PET, CT: mdafuse_v3); default: each pair's own (DICOM PT/NM partner, folder name or manifest column)",
    )
    p.add_argument("--slice-images", choices=("brain", "all", "none"), default="brain", help="which volume slices get fused/enhanced PNGs (default brain)")
    p.add_argument("--torch-threads", type=int, default=None, metavar="T", help="torch/OpenMP threads per actor (default: its CPU share, at least 1)")
    p.add_argument("--s3-endpoint", metavar="URL", help="S3 endpoint, e.g. http://127.0.0.1:8333 (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray started by this job (default: all)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="process only the first N pairs (by pair_id)")
    p.add_argument("--smoke-test", action="store_true", help="tiny run: demo cohort of 2 subjects x 1 time point (or the first 2 pairs of COHORT), 1 worker")
    p.add_argument("--demo-subjects", type=int, default=3, help="demo cohort subjects (default 3)")
    p.add_argument("--demo-timepoints", type=int, default=2, help="demo cohort time points per subject (default 2)")
    p.add_argument("--seed", type=int, default=0, help="demo cohort seed (default 0)")
    p.add_argument("--inject-crash", metavar="PAIR_ID", help=argparse.SUPPRESS)
    p.add_argument("--crash-marker", metavar="FILE", help=argparse.SUPPRESS)
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return p


# --------------------------------------------------------------------------- driver helpers


def _default_run_id() -> str:
    return time.strftime("run-%Y%m%dT%H%M%SZ", time.gmtime())


def _cohort_name(source: str | None) -> str:
    if source is None:
        return "demo"
    stem = Path(str(source).rstrip("/")).name
    for suffix in (".csv", ".parquet", ".pq"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    clean = "".join(c if c.isalnum() or c in "-." else "-" for c in stem).strip("-.") or "cohort"
    return clean


def read_result_tables(root: str, columns: list[str], endpoint: str | None) -> Iterator[pa.Table]:
    """The given columns of every Parquet file under ``root``, one table per readable file.

    Unreadable local files (interrupted writes) are set aside as ``.corrupt-*`` so that their rows
    are redone by the run that reads them.
    """
    for uri in storage.list_files(root, ".parquet", endpoint):
        try:
            yield pq.read_table(io.BytesIO(storage.read_bytes(uri, endpoint)), columns=columns)
        except (OSError, pa.ArrowInvalid) as exc:
            log.warning("%s: unreadable results file (%s); its rows will be redone", uri, exc)
            if not storage.is_s3(uri):
                os.replace(uri, os.path.join(os.path.dirname(uri), f".corrupt-{os.path.basename(uri)}"))


def resolve_out(args: argparse.Namespace) -> str:
    """The output URI: ``--out``, or the demo folder when no cohort is given; local paths made absolute."""
    out = args.out or (DEMO_OUT if args.cohort is None else None)
    if out is None:
        raise ValueError("--out is required when COHORT is given (a folder or s3://bucket/prefix)")
    if not storage.is_s3(out):
        out = str(Path(out).resolve())
    storage.ensure_bucket(out, args.s3_endpoint)
    return out


def existing_pair_status(metrics_root: str, endpoint: str | None) -> dict[str, str]:
    """pair_id -> status of the rows already in the run's metrics files ("ok" wins over "error").

    Unreadable local files (interrupted writes) are set aside as ``.corrupt-*`` and their pairs redone.
    """
    status: dict[str, str] = {}
    for t in read_result_tables(metrics_root, ["pair_id", "status"], endpoint):
        for pid, st in zip(t.column("pair_id").to_pylist(), t.column("status").to_pylist()):
            if status.get(pid) != "ok":
                status[pid] = st
    return status


def existing_pair_ids(metrics_root: str, endpoint: str | None) -> set[str]:
    """pair_ids with any row in the run's metrics files (see :func:`existing_pair_status`)."""
    return set(existing_pair_status(metrics_root, endpoint))


def supersede_rows(metrics_root: str, pair_ids: set[str], endpoint: str | None) -> int:
    """Remove the non-ok rows of ``pair_ids`` from the run's metrics files before those pairs are retried.

    Each file is rewritten in place (local: temporary file + rename; S3: one PUT of the same
    key), or deleted when nothing is left, so a reader sees either the old or the new file and a
    retried pair has at most one row at any time. A pair whose retry does not finish has no row
    and is done again by the next attempt.

    Returns:
        The number of rows removed.
    """
    import pyarrow.compute as pc

    removed = 0
    if not pair_ids:
        return 0
    wanted = pa.array(sorted(pair_ids), pa.string())
    for uri in storage.list_files(metrics_root, ".parquet", endpoint):
        table = pq.read_table(io.BytesIO(storage.read_bytes(uri, endpoint)))
        drop = pc.and_(pc.is_in(table.column("pair_id"), value_set=wanted), pc.not_equal(table.column("status"), "ok"))
        n = int(pc.sum(drop).as_py() or 0)
        if not n:
            continue
        keep = table.filter(pc.invert(drop))
        if keep.num_rows:
            _write_parquet(keep, uri, endpoint)
        else:
            storage.delete(uri, endpoint)
        removed += n
    return removed


def publish_staged(staging: str, final: str, endpoint: str | None) -> list[str]:
    """Move every Parquet file of a hidden staging folder into ``final`` and remove the folder.

    Readers (``pyarrow.dataset``, :func:`mdafuse.storage.list_files`) skip names starting with
    ``_``, so a file becomes visible only once it is complete: locally a rename, on S3 a
    server-side copy (each object appears whole) then a delete of the staged object.

    Returns:
        The final locations.
    """
    moved = []
    for uri in storage.list_files(staging, ".parquet", endpoint):
        dest = storage.join(final, uri.rsplit("/", 1)[-1])
        storage.move(uri, dest, endpoint)
        moved.append(dest)
    storage.delete_tree(staging, endpoint)
    return moved


def salt_is_default(demo: bool) -> bool:
    """True when no secret pseudonymisation salt is set; warns unless the input is the built-in demo."""
    default = not os.environ.get(SALT_ENV)
    if default and not demo:
        log.warning(
            "%s is not set: pair and subject pseudonyms use the public default salt and can be recomputed "
            "from patient identifiers; set a secret salt for real patients",
            SALT_ENV,
        )
    return default


def _write_parquet(table: pa.Table, uri: str, endpoint: str | None) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes(uri, buf.getvalue(), endpoint)


def _init_ray(args: argparse.Namespace):
    import ray
    import ray.data

    if args.quiet:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ray.data.DataContext.get_current().enable_progress_bars = False
    if ray.is_initialized():
        return ray
    address = args.address or os.environ.get("RAY_ADDRESS")
    level = logging.WARNING if args.quiet else logging.INFO
    if address:
        ray.init(address=address, log_to_driver=not args.quiet, logging_level=level)
    else:
        ray.init(num_cpus=args.num_cpus, log_to_driver=not args.quiet, include_dashboard=False, logging_level=level)
    return ray


def _plan_workers(ray, n_pairs: int, args: argparse.Namespace) -> int:
    if args.workers is not None:
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1; got {args.workers}")
        return min(args.workers, max(1, n_pairs))
    if args.smoke_test:
        return 1
    res = ray.cluster_resources()
    if args.num_gpus_per_worker > 0:
        n = int(res.get("GPU", 0) // args.num_gpus_per_worker)
        if n < 1:
            raise ValueError(f"--num-gpus-per-worker {args.num_gpus_per_worker} but the cluster has {res.get('GPU', 0)} GPUs")
    else:
        # leave one CPU for the read/write tasks, or the pool can starve them
        n = int(max(0.0, res.get("CPU", 1) - 1) // args.cpus_per_worker)
    return max(1, min(n, n_pairs))


def worker_threads(args: argparse.Namespace) -> int:
    """Threads per actor: --torch-threads, else its CPU share (at least 1)."""
    if getattr(args, "torch_threads", None):
        return max(1, int(args.torch_threads))
    return max(1, int(args.cpus_per_worker))


def _forward_env(args: argparse.Namespace) -> dict[str, str]:
    env = {k: os.environ[k] for k in _FORWARD_ENV if os.environ.get(k)}
    if args.s3_endpoint:
        env["AWS_ENDPOINT_URL_S3"] = args.s3_endpoint
    env.update(thread_env(worker_threads(args)))
    return env


def stream_through_actors(ray, todo: pa.Table, udf: type, cfg, args: argparse.Namespace, workers: int, per_block: int, root: str, attempt: str) -> None:
    """Stream ``todo`` through an actor pool of ``udf`` and publish its rows under ``root``.

    The work table holds input locations, so it goes to Ray's object store, never to OUT. Rows are
    written to a hidden staging prefix first and moved into place once the write has finished.
    """
    staging = storage.join(root, STAGING, attempt)
    fs, staging_path = storage.filesystem(staging, cfg.endpoint)
    ds = ray.data.from_arrow(todo).repartition(target_num_rows_per_block=per_block)
    ds = ds.map_batches(
        udf,
        fn_constructor_kwargs={"config": cfg},
        batch_size=1,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
        num_cpus=args.cpus_per_worker,
        num_gpus=args.num_gpus_per_worker,
        runtime_env={"env_vars": _forward_env(args)},
    )
    ds.write_parquet(staging_path, filesystem=fs)
    publish_staged(staging, root, cfg.endpoint)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("mdafuse", "ray", "torch", "pyarrow", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def run_summary(cfg: JobConfig, n_pairs: int, n_skipped: int, n_submitted: int, wall_s: float, workers: int, default_salt: bool = True, n_retried: int = 0) -> dict:
    """Summarise the run's rows (read back column by column; no images touch the driver)."""
    import pyarrow.compute as pc

    tables = []
    for uri in storage.list_files(cfg.metrics_root, ".parquet", cfg.endpoint):
        cols = ["pair_id", "status", "t_total_s", "weights_sha256", "model_version"]
        tables.append(pq.read_table(io.BytesIO(storage.read_bytes(uri, cfg.endpoint)), columns=cols))
    t = pa.concat_tables(tables) if tables else pa.table({c: pa.array([], ROW_SCHEMA.field(c).type) for c in ["pair_id", "status", "t_total_s", "weights_sha256", "model_version"]})
    statuses = t.column("status").to_pylist()
    ok = t.filter(pc.equal(t.column("status"), "ok"))
    hashes = sorted({h for h in ok.column("weights_sha256").to_pylist() if h})
    versions = sorted({v for v in ok.column("model_version").to_pylist() if v})
    return {
        "cohort": cfg.cohort,
        "run_id": cfg.run_id,
        "out": cfg.out,
        "pairs_total": n_pairs,
        "rows": t.num_rows,
        "unique_pairs": len(set(t.column("pair_id").to_pylist())),
        "ok": statuses.count("ok"),
        "error": statuses.count("error"),
        "skipped_already_done": n_skipped,
        "retried_errors": n_retried,
        "processed_this_attempt": n_submitted,
        "wall_s": round(wall_s, 3),
        "pairs_per_s": round(n_submitted / wall_s, 4) if wall_s > 0 and n_submitted else 0.0,
        "mean_pair_s": round(float(pc.mean(ok.column("t_total_s")).as_py() or 0.0), 4) if ok.num_rows else 0.0,
        "workers": workers,
        "weights_sha256": hashes,
        "model_version": versions,
        "config_sha256": cfg.hash(),
        "salt_is_default": default_salt,
        "config": {"batch_size": cfg.batch_size, "slice_images": cfg.slice_images, "device": cfg.device, "weights": cfg.weights or "shipped", "modality": cfg.modality},
        "versions": _versions(),
        "layout": {"images": cfg.images_root, "metrics": cfg.metrics_root, "run": cfg.run_root},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _make_demo(args: argparse.Namespace, out: str) -> str:
    from mdafuse.io.demo_cohort import write_demo_cohort

    subjects, timepoints = (2, 1) if args.smoke_test else (args.demo_subjects, args.demo_timepoints)
    if not storage.is_s3(out):
        folder = Path(out) / "demo-input"
        write_demo_cohort(folder, subjects, timepoints, args.seed)
        return str(folder / "manifest.csv")
    # S3 output: the demo input goes to S3 too, so that workers on other machines can read it
    folder = Path(tempfile.mkdtemp(prefix="mdafuse-demo-input-"))
    try:
        write_demo_cohort(folder, subjects, timepoints, args.seed)
        remote = storage.join(out, "demo-input")
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            storage.write_bytes(storage.join(remote, *f.relative_to(folder).parts), f.read_bytes(), args.s3_endpoint)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return storage.join(remote, "manifest.csv")


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict:
    """Run the job for parsed ``args``; return the summary dictionary."""
    demo = args.cohort is None
    out = resolve_out(args)
    source = _make_demo(args, out) if demo else args.cohort
    cohort = args.cohort_name or _cohort_name(None if demo else source)
    run_id = args.run_id or ("demo" if demo else _default_run_id())
    cfg = JobConfig(
        out=out,
        cohort=cohort,
        run_id=run_id,
        endpoint=args.s3_endpoint,
        weights=args.weights,
        modality=args.modality,
        device="cuda" if args.num_gpus_per_worker > 0 else "cpu",
        batch_size=args.batch_size,
        slice_images=args.slice_images,
        torch_threads=worker_threads(args),
        crash_on=args.inject_crash,
        crash_marker=args.crash_marker,
    )
    default_salt = salt_is_default(demo)
    pairs = build_pair_table(source, cohort, endpoint=args.s3_endpoint).table
    limit = 2 if args.smoke_test and args.limit is None else args.limit
    if limit is not None:
        pairs = pairs.slice(0, limit)
    _write_parquet(pairs.select(list(PUBLIC_PAIR_COLUMNS)), storage.join(cfg.run_root, "pairs.parquet"), cfg.endpoint)
    previous = existing_pair_status(cfg.metrics_root, cfg.endpoint)
    todo = pairs.filter(pa.array([previous.get(p) != "ok" for p in pairs.column("pair_id").to_pylist()], type=pa.bool_()))
    n_skipped = pairs.num_rows - todo.num_rows
    retry = {p for p in todo.column("pair_id").to_pylist() if p in previous}
    n_retried = supersede_rows(cfg.metrics_root, retry, cfg.endpoint) if retry else 0
    log.info("cohort %s run %s: %d pairs, %d already ok, %d to do (%d earlier errors retried)", cohort, run_id, pairs.num_rows, n_skipped, todo.num_rows, len(retry))
    t0 = time.perf_counter()
    workers = 0
    if todo.num_rows:
        attempt = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        _write_parquet(todo.select(list(PUBLIC_PAIR_COLUMNS)), storage.join(cfg.run_root, "attempts", f"{attempt}.parquet"), cfg.endpoint)
        ray = _init_ray(args)
        workers = _plan_workers(ray, todo.num_rows, args)
        per_block = args.pairs_per_block or max(1, min(64, math.ceil(todo.num_rows / (4 * workers))))
        stream_through_actors(ray, todo, FusePairs, cfg, args, workers, per_block, cfg.metrics_root, attempt)
    wall = time.perf_counter() - t0
    summary = run_summary(cfg, pairs.num_rows, n_skipped, todo.num_rows, wall, workers, default_salt, n_retried)
    storage.write_bytes(storage.join(cfg.run_root, "summary.json"), json.dumps(summary, indent=2).encode(), cfg.endpoint)
    return summary


def _print_result(summary: dict, out: str) -> None:
    lay = summary["layout"]
    print(f"cohort {summary['cohort']}, run {summary['run_id']}: {summary['pairs_total']} pairs, {summary['ok']} ok, {summary['error']} error, {summary['skipped_already_done']} already done (resumed)")
    print(f"  images : {lay['images']}/<pair_id>/")
    print(f"  metrics: {lay['metrics']}/*.parquet")
    print(f"  summary: {lay['run']}/summary.json")
    if summary["processed_this_attempt"]:
        print(f"  {summary['processed_this_attempt']} pairs in {summary['wall_s']:.1f} s ({summary['pairs_per_s']:.3f} pairs/s, {summary['workers']} workers)")
    try:
        from mdafuse.qa import format_report, qa_report

        report = qa_report(out, run=summary["run_id"], cohort=summary["cohort"], metric="SSIM", worst=3)
        print()
        print(format_report(report, "table"))
    except Exception as exc:  # noqa: BLE001 - the QA print is a convenience
        print(f"  (QA summary unavailable: {exc})")
    print(f"\nnext: mdafuse qa {out} --run {summary['run_id']}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"fuse_cohort: error: {exc}", file=sys.stderr)
        return 2
    _print_result(summary, summary["out"])
    return 0 if summary["rows"] == summary["pairs_total"] else 1


if __name__ == "__main__":
    sys.exit(main())
