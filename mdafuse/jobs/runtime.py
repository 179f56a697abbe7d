"""The runtime shared by the cohort jobs: output layout, resume, result tables, summaries, Ray.

Output layout under ``OUT`` (a local folder or ``s3://bucket/prefix``), one partition per cohort
and run, ``P = cohort=C/run=R``::

    OUT/<table>/P/*.parquet          result rows (``metrics`` for fusion, ``lesions`` for tracking)
    OUT/<outputs>/P/<unit_id>/...    per-unit files (``images`` for fusion, ``tracking`` for tracking)
    OUT/runs/P/pairs.parquet         the run's work units (pseudonymous columns only)
    OUT/runs/P/attempts/<a>.parquet  the units still to do at each (re)start
    OUT/runs/P/<job>-summary.json    counts, throughput, the worker pool, hashes, versions

Result rows are written by the driver only (:class:`TableWriter`), each file atomically, so a
reader never sees a torn file; resume reads the ``status`` of the rows already written
(:func:`existing_status`) and removes the error rows of units it retries (:func:`supersede_rows`).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import platform
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mdafuse import storage
from mdafuse.privacy import SALT_ENV, scrub_locations
from mdafuse.storage import Store
from mdafuse.threads import thread_env

log = logging.getLogger(__name__)

DEMO_OUT = "./mdafuse-demo"
#: Test-only: the model stage runs on this torch device whatever GPUs Ray scheduled it on, so that
#: GPU scheduling can be tested with logical GPUs on a machine without one.
DEVICE_OVERRIDE_ENV = "MDAFUSE_DEVICE_OVERRIDE"
CRASH_ENV = "MDAFUSE_INJECT_CRASH"
#: Variables the driver passes to every Ray worker (credentials stay in the environment, never in configs).
FORWARD_ENV = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    SALT_ENV,
    CRASH_ENV,
    DEVICE_OVERRIDE_ENV,
    "MDAFUSE_STORAGE_RETRIES",
)


class JobError(RuntimeError):
    """A job cannot go on; the message is one line a person can act on (exit status 1)."""


def explain_start_failure(exc: BaseException, plan: "PoolPlan", wait_s: float) -> JobError | None:
    """A :class:`JobError` for an actor pool that never started, or None for any other failure."""
    if "Timed out while starting actors" not in str(exc):
        return None
    unit = f"{plan.gpus_per_worker:g} GPU" if plan.gpus_per_worker > 0 else f"{plan.cpus_per_worker:g} CPU"
    return JobError(
        f"no model actor could be placed within --wait-for-workers {wait_s:g} s ({plan.min_workers} needed at {unit} each): "
        "add nodes, check that the autoscaler can grow the worker group, or lower --num-gpus-per-worker/--cpus-per-worker"
    )


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM reached the driver."""


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ERROR_ROWS = 0, 1, 2, 3
#: Exit statuses of both jobs (and documented in their --help, README and docs/cohort-job.md).
EXIT_CODES_HELP = (
    "exit status: 0 every unit ok; 3 the run finished with error rows (see mdafuse qa); "
    "2 bad usage or a failed preflight check (output not writable, S3 credentials, cohort unreadable, run in use); "
    "1 anything else (interrupted, no worker could start, internal error)"
)


def run_cli(name: str, run, print_result, args, *, ok_units: str = "ok", total_units: str = "pairs_total") -> int:
    """Run a job's ``run(args)`` for the command line: one-line errors, interrupts and exit statuses.

    Ctrl-C and SIGTERM print one line saying how to resume; Ray started by the job is shut down on
    every path, so no process is left behind.
    """
    import signal
    import threading

    from mdafuse.jobs.lease import LeaseHeld
    from mdafuse.jobs.preflight import PreflightError

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        _SIGTERM_OWNED.append(True)
    try:
        summary = run(args)
    except KeyboardInterrupt:
        print(f"{name}: interrupted; rerun with --run-id {getattr(args, 'run_id', None) or '<the same id>'} to resume", file=sys.stderr)
        return EXIT_FAILED
    except (PreflightError, LeaseHeld, ValueError, FileNotFoundError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except JobError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - anything else: one line, details in the logs
        message = scrub_locations(str(exc).splitlines()[0] if str(exc) else "", {})[:300]
        print(f"{name}: error: internal error ({type(exc).__name__}: {message}); rerun with --run-id {getattr(args, 'run_id', None) or '<the same id>'} to resume", file=sys.stderr)
        log.debug("internal error", exc_info=True)
        return EXIT_FAILED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
            _SIGTERM_OWNED.clear()
        shutdown_ray()
    print_result(summary)
    if summary.get("error", 0):
        return EXIT_ERROR_ROWS
    return EXIT_OK if summary.get(ok_units, 0) == summary.get(total_units, 0) else EXIT_FAILED


_SIGTERM_OWNED: list[bool] = []


def _on_sigterm(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise Interrupted()


def shutdown_ray() -> None:
    """Shut down the Ray this process started or connected to in :func:`init_ray` (nothing else)."""
    if not _STARTED_RAY:
        return
    _STARTED_RAY.clear()
    try:
        import ray

        ray.shutdown()
    except Exception as exc:  # noqa: BLE001 - shutting down is best effort
        log.debug("ray.shutdown failed: %s", exc)


# ----------------------------------------------------------------------------- names and layout


def check_name(value: str, what: str) -> str:
    """A cohort or run name usable as a hive partition value; raises ValueError otherwise."""
    if not value or any(c in value for c in "/=\\ ") or value.startswith((".", "_")):
        raise ValueError(f"{what} must be a non-empty name without '/', '=', spaces or a leading '.'/'_'; got {value!r}")
    return value


def default_run_id() -> str:
    """``run-<UTC time>-<6 random hex digits>``: two runs started in the same second get different ids."""
    return time.strftime("run-%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def new_attempt_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(4)}"


def cohort_name(source: str | None) -> str:
    """The default cohort name: the manifest's or folder's name without suffix, made partition-safe."""
    if source is None:
        return "demo"
    stem = Path(str(source).rstrip("/")).name
    for suffix in (".csv", ".parquet", ".pq"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return "".join(c if c.isalnum() or c in "-." else "-" for c in stem).strip("-.") or "cohort"


@dataclass(frozen=True)
class RunLayout:
    """Where one run of one cohort writes (see the module docstring).

    Attributes:
        out: the output root.
        cohort: cohort name.
        run_id: run name.
    """

    out: Store
    cohort: str
    run_id: str

    def __post_init__(self) -> None:
        check_name(self.cohort, "cohort")
        check_name(self.run_id, "run_id")

    @property
    def partition(self) -> str:
        return f"cohort={self.cohort}/run={self.run_id}"

    def under(self, top: str) -> Store:
        """``OUT/<top>/cohort=C/run=R`` as a store."""
        return self.out.child(top, self.partition)

    @property
    def run_dir(self) -> Store:
        return self.under("runs")


def resolve_out(out: str | None, cohort_given: bool) -> str:
    """The output root: ``out``, or :data:`DEMO_OUT` for the demo; local paths made absolute.

    Raises:
        ValueError: a cohort is given without ``out``.
    """
    if out is None:
        if cohort_given:
            raise ValueError("--out is required when COHORT is given (a folder or s3://bucket/prefix)")
        out = DEMO_OUT
    return out if storage.is_s3(out) else str(Path(out).resolve())


def salt_is_default(demo: bool, logger: logging.Logger = log) -> bool:
    """True when no secret pseudonymisation salt is set; warns unless the input is the built-in demo."""
    default = not os.environ.get(SALT_ENV)
    if default and not demo:
        logger.warning(
            "%s is not set: pair and subject pseudonyms use the public default salt and can be recomputed "
            "from patient identifiers; set a secret salt for real patients",
            SALT_ENV,
        )
    return default


# ----------------------------------------------------------------------------- privacy of messages


# ----------------------------------------------------------------------------- result tables


def write_parquet(store: Store, path: str, table: pa.Table) -> str:
    """Write ``table`` as one Parquet file, atomically."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return store.write_bytes(path, buf.getvalue())


def write_json(store: Store, path: str, obj: dict) -> str:
    return store.write_bytes(path, json.dumps(obj, indent=2).encode())


def read_result_tables(root: Store, columns: list[str]) -> Iterator[pa.Table]:
    """The given columns of every Parquet file under ``root``, one table per readable file.

    Unreadable local files (interrupted writes of an older version) are set aside as
    ``.corrupt-*`` so that their rows are redone by the run that reads them.
    """
    for _, table in _result_files(root, columns):
        yield table


def _result_files(root: Store, columns: list[str] | None) -> Iterator[tuple[str, pa.Table]]:
    """``(uri, table)`` of every readable Parquet file under ``root`` (see :func:`read_result_tables`)."""
    for uri in root.list_files(suffix=".parquet"):
        try:
            yield uri, pq.read_table(io.BytesIO(storage.read_bytes(uri, root.endpoint)), columns=columns)
        except (OSError, pa.ArrowInvalid) as exc:
            log.warning("%s: unreadable results file (%s); its rows will be redone", uri, exc)
            if not storage.is_s3(uri):
                os.replace(uri, os.path.join(os.path.dirname(uri), f".corrupt-{os.path.basename(uri)}"))


def existing_status(root: Store, key: str = "pair_id") -> dict[str, str]:
    """unit id -> status of the rows already under ``root`` ("ok" wins over "error")."""
    status: dict[str, str] = {}
    for t in read_result_tables(root, [key, "status"]):
        for uid, st in zip(t.column(key).to_pylist(), t.column("status").to_pylist()):
            if status.get(uid) != "ok":
                status[uid] = st
    return status


def _replace_rows(root: Store, uri: str, kept: pa.Table) -> None:
    """Rewrite one results file with the rows kept (one atomic write), or delete it when none are."""
    if kept.num_rows:
        buf = io.BytesIO()
        pq.write_table(kept, buf)
        storage.write_bytes(uri, buf.getvalue(), root.endpoint)
    else:
        storage.delete(uri, root.endpoint)


def supersede_rows(root: Store, unit_ids: set[str], key: str = "pair_id") -> int:
    """Remove the non-ok rows of ``unit_ids`` from the files under ``root`` before they are retried.

    Each file is rewritten in place (local: temporary file + rename; S3: one PUT of the same key),
    or deleted when nothing is left, so a reader sees either the old or the new file and a retried
    unit has at most one row at any time.

    Returns:
        The number of rows removed.
    """
    import pyarrow.compute as pc

    if not unit_ids:
        return 0
    removed = 0
    wanted = pa.array(sorted(unit_ids), pa.string())
    for uri in root.list_files(suffix=".parquet"):
        table = pq.read_table(io.BytesIO(storage.read_bytes(uri, root.endpoint)))
        drop = pc.and_(pc.is_in(table.column(key), value_set=wanted), pc.not_equal(table.column("status"), "ok"))
        n = int(pc.sum(drop).as_py() or 0)
        if not n:
            continue
        _replace_rows(root, uri, table.filter(pc.invert(drop)))
        removed += n
    return removed


def dedupe_rows(root: Store, key: str = "pair_id", rows_per_unit: str = "one") -> int:
    """Keep each unit's rows from one place only; returns the rows removed.

    Runs of older versions, or two attempts that once ran at the same time, could leave a unit
    twice. With ``rows_per_unit="one"`` (fusion: a row per pair) one row is kept per unit id, an
    ok row before an error row, then the latest; with ``"many"`` (tracking: a row per lesion and
    time point) the unit's rows are kept from one file only (one whose rows are ok, else the first).
    Each file that loses rows is rewritten atomically, or deleted when emptied.
    """
    if rows_per_unit not in ("one", "many"):
        raise ValueError(f"rows_per_unit must be 'one' or 'many'; got {rows_per_unit!r}")
    tables = dict(_result_files(root, None))  # an unreadable file is set aside, not fatal
    best: dict[str, tuple[tuple, str, int]] = {}
    for uri, t in tables.items():
        finished = t.column("finished_at").to_pylist() if "finished_at" in t.column_names else [""] * t.num_rows
        for i, (uid, st, fin) in enumerate(zip(t.column(key).to_pylist(), t.column("status").to_pylist(), finished)):
            rank = (st == "ok", fin or "") if rows_per_unit == "one" else (st == "ok",)
            if uid not in best or rank > best[uid][0]:
                best[uid] = (rank, uri, i)
    removed = 0
    for uri, t in tables.items():
        ids = t.column(key).to_pylist()
        if rows_per_unit == "one":
            keep = [best[uid][1] == uri and best[uid][2] == i for i, uid in enumerate(ids)]
        else:
            keep = [best[uid][1] == uri for uid in ids]
        if all(keep):
            continue
        removed += keep.count(False)
        _replace_rows(root, uri, t.filter(pa.array(keep, pa.bool_())))
    if removed:
        log.warning("removed %d duplicate rows left by earlier attempts (each unit is kept once)", removed)
    return removed


class TableWriter:
    """Collects result rows on the driver and writes them as Parquet files under ``root``.

    Rows are flushed every ``flush_rows`` rows or ``flush_s`` seconds, each flush one atomic file
    ``part-<attempt>-<nnnnn>.parquet``, so a run that dies loses at most the rows of its last
    unflushed interval (the per-unit records let the next attempt reuse that work). A unit id is
    written at most once per writer.

    Args:
        root: the table's partition folder.
        schema: the rows' schema.
        attempt: attempt id, part of every file name.
        key: the unit id column.
        guard: called before each file is written (raises to stop, e.g. when the run's lease was lost).
    """

    def __init__(self, root: Store, schema: pa.Schema, attempt: str, key: str = "pair_id", flush_rows: int = 256, flush_s: float = 30.0, guard=None) -> None:
        self.root = root
        self.guard = guard
        self.schema = schema
        self.attempt = attempt
        self.key = key
        self.flush_rows = flush_rows
        self.flush_s = flush_s
        self._rows: list[dict] = []
        self._written: set[str] = set()
        self._seq = 0
        self._last = time.monotonic()
        self.files: list[str] = []
        self.duplicates = 0

    def add(self, rows: list[dict]) -> int:
        """Queue the rows of one unit (several rows for a tracked subject); returns how many were kept."""
        if not rows:
            return 0
        uid = rows[0][self.key]
        if uid in self._written:
            self.duplicates += 1
            log.warning("unit %s delivered twice; the second result is dropped", uid)
            return 0
        self._written.add(uid)
        self._rows.extend(rows)
        return len(rows)

    @property
    def written_ids(self) -> set[str]:
        return set(self._written)

    def maybe_flush(self) -> None:
        if len(self._rows) >= self.flush_rows or (self._rows and time.monotonic() - self._last >= self.flush_s):
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        if self.guard is not None:
            self.guard()  # e.g. the run's lease is still this attempt's, else it raises
        table = pa.Table.from_pylist(self._rows, schema=self.schema)
        self.files.append(write_parquet(self.root, f"part-{self.attempt}-{self._seq:05d}.parquet", table))
        self._seq += 1
        self._rows = []
        self._last = time.monotonic()


def read_rows(root: Store, columns: list[str] | None = None) -> pa.Table | None:
    """All rows under ``root`` (the given columns), or None when there are none."""
    tables = [pq.read_table(io.BytesIO(storage.read_bytes(u, root.endpoint)), columns=columns) for u in root.list_files(suffix=".parquet")]
    return pa.concat_tables(tables, promote_options="default") if tables else None


@dataclass
class Attempt:
    """One attempt at a run, holding the run's lease (see :func:`start_attempt`)."""

    attempt_id: str
    lease: object
    cleaned_dead_attempts: int

    def guard(self) -> None:
        check_lease(self.lease)


@contextmanager
def start_attempt(layout: RunLayout, args, *, lease_name: str, outputs: tuple[str, ...], tables: tuple[str, ...]) -> Iterator[Attempt]:
    """Take the run's lease (waiting ``args.wait_for_lease``, taking over after ``args.lease_timeout``),
    heartbeat it, delete what dead attempts left; release it on the way out, whatever happens."""
    from mdafuse.jobs.lease import RunLease

    attempt_id = new_attempt_id()
    lease = RunLease(layout.run_dir, attempt_id, heartbeat_s=args.lease_timeout / 6, stale_s=args.lease_timeout, name=lease_name)
    lease.acquire(wait_s=args.wait_for_lease)
    lease.start_heartbeat()
    try:
        yield Attempt(attempt_id, lease, clean_dead_attempts(layout, outputs, tables))
    finally:
        lease.release()


def check_lease(lease) -> None:
    """Raise :class:`JobError` when the run's lease is no longer this attempt's (refreshing it once)."""
    if lease.lost or not lease.beat():
        raise JobError("the run's lease was taken over by another attempt; this attempt stopped writing rows (rerun the same --run-id to go on)")


STAGING = ("_staging", "_parts")


def clean_dead_attempts(layout: RunLayout, outputs: tuple[str, ...], tables: tuple[str, ...]) -> int:
    """Delete what dead attempts of the run left half-done (the caller holds the run's lease).

    Chunk parts under ``OUT/<outputs>/P/_parts/`` and the staging folders older versions wrote
    under ``OUT/<tables>/P/_staging/``. Returns how many such folders were found.
    """
    found = 0
    for top in (*outputs, *tables):
        for hidden in STAGING:
            folder = layout.under(top).child(hidden)
            if folder.exists():
                folder.delete_tree()
                found += 1
    if found:
        log.info("removed %d staging folder(s) left by earlier attempts", found)
    return found


def clean_attempt(layout: RunLayout, outputs: tuple[str, ...], attempt: str) -> None:
    """Delete this attempt's staging, and the staging folder itself when nothing else is in it."""
    for top in outputs:
        parts = layout.under(top).child("_parts")
        try:
            parts.delete_tree(attempt)
            if parts.exists() and not _has_any(parts):
                parts.delete_tree()
        except Exception as exc:  # noqa: BLE001 - the next attempt cleans what is left
            log.warning("could not remove this attempt's staging (%s); the next attempt will", type(exc).__name__)


def _has_any(store: Store) -> bool:
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(store.root, store.endpoint)
    return any(True for _ in fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True)))


# ----------------------------------------------------------------------------- Ray


_STARTED_RAY: list[bool] = []


def init_ray(address: str | None, num_cpus: int | None, quiet: bool):
    """Connect to ``address`` (or ``RAY_ADDRESS``), else start a local Ray; returns the ``ray`` module.

    A Ray this function starts or connects to is shut down by :func:`run_cli` when the job ends; one
    that was already initialised in this process (a test's, a notebook's) is left as it was.
    """
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the jobs show one bar of finished units instead
    if quiet:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        return ray
    _STARTED_RAY.append(True)
    address = address or os.environ.get("RAY_ADDRESS")
    level = logging.WARNING if quiet else logging.INFO
    if address:
        ray.init(address=address, log_to_driver=not quiet, logging_level=level)
        _reclaim_sigterm()
    else:
        # "local": a new Ray of this process, never a cluster some other command left running here
        ray.init(address="local", num_cpus=num_cpus, log_to_driver=not quiet, include_dashboard=False, logging_level=level)
        _reclaim_sigterm()
    return ray


def _reclaim_sigterm() -> None:
    """ray.init installs its own SIGTERM handler (exit 15, no clean-up): the job's comes back."""
    import signal
    import threading

    if _SIGTERM_OWNED and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def one_row_blocks(ray, table: pa.Table):
    """A dataset with one block per row of ``table`` (one work unit per task).

    Made from one-row tables rather than with ``repartition``, whose tasks ask for a whole CPU:
    on a one-CPU node with a model actor holding half of it they could never run.
    """
    return ray.data.from_arrow([table.slice(i, 1) for i in range(table.num_rows)])


def forward_env(endpoint: str | None, threads: int) -> dict[str, str]:
    """The environment every worker gets: S3 settings, salt, test hooks, thread-pool sizes."""
    env = {k: os.environ[k] for k in FORWARD_ENV if os.environ.get(k)}
    if endpoint:
        env["AWS_ENDPOINT_URL_S3"] = endpoint
    env.update(thread_env(threads))
    return env


def limit_threads(threads: int) -> int:
    """Size this process's torch (and OpenMP) pools to ``threads`` CPUs; returns the count used.

    Called in each actor's ``__init__`` so that fractional-CPU actors on a small node do not
    each start one thread per core (oversubscription).
    """
    import torch

    from mdafuse.threads import THREAD_ENV_VARS

    n = max(1, int(threads))
    for k in THREAD_ENV_VARS:
        os.environ.setdefault(k, str(n))
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work has started in this process
        pass
    return n


def where_am_i() -> tuple[str, str]:
    """``(worker, node_id)``: ``host:pid`` of this process and the Ray node it runs on ("" outside Ray)."""
    import socket

    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        import ray

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - outside a Ray worker there is no node
        node = ""
    return worker, node or ""


@dataclass(frozen=True)
class PoolPlan:
    """How many model actors the job asks for, and why.

    Attributes:
        min_workers: actors started at once (what the cluster can place now, at least 1).
        max_workers: the pool's upper size.
        source: where ``max_workers`` came from: "--workers", "autoscaler" (the autoscaler's
            configured maximum), "resources" (the cluster's current resources) or "smoke-test".
        cpus_per_worker: CPUs reserved per actor.
        gpus_per_worker: GPUs per actor (0: CPU).
        units: work units (rows) the pool will see, when known (None: volumes, whose chunk count
            is known only once read); the pool never exceeds it.
    """

    min_workers: int
    max_workers: int
    source: str
    cpus_per_worker: float
    gpus_per_worker: float
    units: int | None

    @property
    def fixed(self) -> bool:
        return self.min_workers == self.max_workers

    def strategy(self):
        """The Ray Data actor pool: fixed when min == max, else autoscaling from min to max."""
        import ray.data

        # two tasks in flight per actor: the next block arrives while one computes, and no actor
        # hoards the queue while another is idle
        if self.fixed:
            return ray.data.ActorPoolStrategy(size=self.max_workers, max_tasks_in_flight_per_actor=2)
        return ray.data.ActorPoolStrategy(min_size=self.min_workers, max_size=self.max_workers, initial_size=self.min_workers, max_tasks_in_flight_per_actor=2)

    def as_dict(self) -> dict:
        return {
            "min_workers": self.min_workers,
            "max_workers": self.max_workers,
            "source": self.source,
            "cpus_per_worker": self.cpus_per_worker,
            "gpus_per_worker": self.gpus_per_worker,
            "autoscaling": not self.fixed,
        }


def ray_and_pool(args, store: Store, units: int | None) -> tuple:
    """Start or join Ray (``args.address``), refuse a local OUT on several nodes, plan the model pool.

    Returns:
        ``(ray, PoolPlan)``.
    """
    ray = init_ray(args.address, args.num_cpus, args.quiet)
    multi_node_local_out(store, args.shared_fs, len([n for n in ray.nodes() if n.get("Alive")]))
    plan = plan_pool(
        ray.cluster_resources(), autoscaler_max_resources(), units,
        workers=args.workers, cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.num_gpus_per_worker, smoke_test=args.smoke_test,
    )
    return ray, plan


@contextmanager
def spread_pool(ray, plan: "PoolPlan", wait_s: float) -> Iterator[dict]:
    """Extra remote args for the model actors: a fixed pool on several nodes gets one slot per node.

    Ray Data's default SPREAD is a round robin shared with every decode and write task, so two
    actors created around one task can land on the same node (seen: every row of a two-node run
    from one node). A placement group with one bundle per actor, spread over the nodes, gives each
    actor its own slot. Autoscaling pools and single nodes keep Ray's placement: a group reserves
    all its bundles at once, which would hold an autoscaling pool at its maximum.
    """
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    bundle = {k: v for k, v in (("CPU", plan.cpus_per_worker), ("GPU", plan.gpus_per_worker)) if v > 0}
    if not plan.fixed or plan.max_workers < 2 or len(nodes) < 2 or not bundle:
        yield {}
        return
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = placement_group([dict(bundle) for _ in range(plan.max_workers)], strategy="SPREAD")
    try:
        if group.wait(timeout_seconds=max(1.0, float(wait_s))):
            log.info("model actors: %d slots reserved over %d nodes", plan.max_workers, len(nodes))
            yield {"scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_capture_child_tasks=False)}
        else:
            log.warning("model actors: no room for %d slots of %s within %.0f s; Ray places them", plan.max_workers, bundle, wait_s)
            yield {}
    finally:
        remove_placement_group(group)


def stream_into(writer: "TableWriter", stream, plan: "PoolPlan", wait_s: float):
    """Run ``stream(pool_args)`` (which hands rows to ``writer``; ``pool_args`` are extra remote args
    of the model actors, see :func:`spread_pool`), flush the writer whatever happens, and turn an
    actor pool that never started into a one-line :class:`JobError`."""
    import ray

    try:
        with spread_pool(ray, plan, wait_s) as pool_args:
            return stream(pool_args)
    except Exception as exc:
        explained = explain_start_failure(exc, plan, wait_s)
        if explained is None:
            raise
        raise explained from None
    finally:
        writer.flush()


def autoscaler_max_resources() -> dict[str, float] | None:
    """The resources the autoscaler may grow the cluster to (its node groups' max counts), if Ray says.

    KubeRay's and the cluster launcher's autoscaler publish their node-group configuration in the
    GCS; a local Ray has none (None).
    """
    try:
        from ray._private.state import state

        found = state.get_max_resources_from_cluster_config()
    except Exception as exc:  # noqa: BLE001 - a private API: an older/newer Ray without it means "unknown"
        log.debug("autoscaler configuration unavailable: %s", exc)
        return None
    return {k: float(v) for k, v in found.items()} if found else None


def plan_pool(
    resources: dict[str, float],
    max_resources: dict[str, float] | None,
    units: int | None,
    *,
    workers: int | None = None,
    cpus_per_worker: float = 0.5,
    gpus_per_worker: float = 0.0,
    smoke_test: bool = False,
    cpu_reserve: float = 1.0,
) -> PoolPlan:
    """Size the model actor pool.

    The upper size is ``workers`` when given, else what the autoscaler may grow the cluster to
    (``max_resources``), else the current ``resources``; GPU actors count GPUs, CPU actors count
    CPUs minus ``cpu_reserve`` (a CPU left for the decode and write tasks: an actor pool holding
    every CPU starves them). The pool starts with what fits now (at least one actor, so a GPU group
    scaled to zero is asked to grow) and is fixed when that is already the upper size.

    Raises:
        ValueError: ``workers < 1``, negative or zero resources per worker.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be >= 1; got {workers}")
    if gpus_per_worker < 0 or cpus_per_worker <= 0:
        raise ValueError(f"CPUs per worker must be > 0 and GPUs per worker >= 0; got {cpus_per_worker} and {gpus_per_worker}")
    def fit(res: dict[str, float]) -> int:
        if gpus_per_worker > 0:
            return int(math.floor(res.get("GPU", 0.0) / gpus_per_worker + 1e-9))
        return int(math.floor(max(0.0, res.get("CPU", 1.0) - cpu_reserve) / cpus_per_worker + 1e-9))

    now = max(1, fit(resources))
    if smoke_test:
        top, source = 1, "smoke-test"
    elif workers is not None:
        top, source = workers, "--workers"
    elif max_resources and fit(max_resources) > 0:
        top, source = max(fit(max_resources), now), "autoscaler"
    else:
        top, source = now, "resources"
    top = max(1, top if units is None else min(top, max(1, int(units))))
    start = top if source == "--workers" else max(1, min(now, top))
    return PoolPlan(start, top, source, float(cpus_per_worker), float(gpus_per_worker), units)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("mdafuse", "ray", "torch", "pyarrow", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ----------------------------------------------------------------------------- stage traces


def parse_trace(trace: str) -> list[tuple[str, str, float, float]]:
    """``stage|worker|start|end;...`` (as the pipeline stages record them) -> spans."""
    spans = []
    for part in str(trace or "").split(";"):
        if part:
            stage, worker, start, end = part.rsplit("|", 3)
            spans.append((stage, worker, float(start), float(end)))
    return spans


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def _length(intervals: list[tuple[float, float]]) -> float:
    return float(sum(b - a for a, b in intervals))


def _intersection(x: list[tuple[float, float]], y: list[tuple[float, float]]) -> float:
    total, i, j = 0.0, 0, 0
    while i < len(x) and j < len(y):
        lo, hi = max(x[i][0], y[j][0]), min(x[i][1], y[j][1])
        total += max(0.0, hi - lo)
        if x[i][1] < y[j][1]:
            i += 1
        else:
            j += 1
    return total


def stage_report(spans: list[tuple[str, str, float, float]], model_stage: str = "model") -> dict:
    """Per stage: processes, calls, busy seconds (union of its spans); and how the model stage was kept busy.

    ``model_busy_fraction`` is the model stage's busy time over the span from the first to the last
    recorded activity; ``overlap_s`` the time the model stage and any other stage ran at once (the
    CPU stages working beside the model).
    """
    if not spans:
        return {}
    out: dict = {"stages": {}}
    by_stage: dict[str, list[tuple[str, float, float]]] = {}
    for stage, worker, a, b in spans:
        by_stage.setdefault(stage, []).append((worker, a, b))
    unions = {}
    for stage, items in by_stage.items():
        calls = {(w, a, b) for w, a, b in items}
        unions[stage] = _union([(a, b) for _, a, b in calls])
        out["stages"][stage] = {"processes": sorted({w for w, _, _ in calls}), "calls": len(calls), "busy_s": round(_length(unions[stage]), 3)}
    start = min(a for _, _, a, _ in spans)
    end = max(b for _, _, _, b in spans)
    if model_stage in unions and end > start:
        others = _union([iv for st, u in unions.items() if st != model_stage for iv in u])
        out["model_busy_fraction"] = round(_length(unions[model_stage]) / (end - start), 4)
        out["overlap_s"] = round(_intersection(unions[model_stage], others), 3)
    out["span_s"] = round(end - start, 3)
    return out


# ----------------------------------------------------------------------------- demo input


def write_demo_input(out: Store, folder_name: str, subjects: int, timepoints: int, seed: int) -> str:
    """Write the synthetic demo cohort beside the outputs and return its manifest's location.

    Local outputs get ``OUT/<folder_name>/``; S3 outputs get the same prefix on S3 (written from a
    temporary folder), so that workers on other machines can read it.
    """
    import shutil
    import tempfile

    from mdafuse.synthetic.demo_cohort import write_demo_cohort

    if not out.is_s3:
        folder = Path(out.uri(folder_name))
        write_demo_cohort(folder, subjects, timepoints, seed)
        return str(folder / "manifest.csv")
    folder = Path(tempfile.mkdtemp(prefix="mdafuse-demo-input-"))
    try:
        write_demo_cohort(folder, subjects, timepoints, seed)
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            out.write_bytes("/".join((folder_name, *f.relative_to(folder).parts)), f.read_bytes())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out.uri(folder_name, "manifest.csv")


def multi_node_local_out(out: Store, shared_fs: bool, nodes: int) -> None:
    """Refuse a local output folder on a cluster of several nodes unless it is declared shared.

    Raises:
        ValueError: one line saying why and what to do.
    """
    if out.is_s3 or shared_fs or nodes <= 1:
        return
    raise ValueError(
        f"--out {out.root} is a local folder but the Ray cluster has {nodes} nodes: workers on other nodes would write "
        "to their own disks. Use s3://bucket/prefix, or pass --shared-fs if this path is the same shared filesystem on every node"
    )
