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
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mdafuse import storage
from mdafuse.storage import Store
from mdafuse.threads import thread_env

log = logging.getLogger(__name__)

DEMO_OUT = "./mdafuse-demo"
SALT_ENV = "MDAFUSE_PSEUDONYM_SALT"
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
)
_UID_RE = re.compile(r"(?<![\w.])[0-2](?:\.\d+){4,}(?![\w.])")


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


def scrub_locations(message: str, locations: dict[str, str], work: str = "", uids: tuple[str, ...] = ()) -> str:
    """Remove identifying text from a message: input locations, a work folder and DICOM UIDs.

    Args:
        message: the text (an error or warning).
        locations: role -> input location (e.g. ``{"mr": ..., "pet": ...}``); each becomes ``<role>``.
        work: a local work folder, replaced by ``<tmp>``.
        uids: UIDs known to the caller; these and every other dotted UID of 5+ components become
            ``<uid:XXXXXXXX>``, a short salted pseudonym that stays the same for the same UID.
    """
    from mdafuse.io.volume import pseudonym

    subs = [(work, "<tmp>")] if work else []
    subs += [(uid, f"<uid:{pseudonym('uid|' + uid, length=8)}>") for uid in uids if uid]
    for role, loc in locations.items():
        loc = str(loc or "")
        if loc:
            subs.append((loc, f"<{role}>"))
            if not storage.is_s3(loc):
                subs.append((os.path.realpath(loc), f"<{role}>"))
    for old, new in sorted(subs, key=lambda s: -len(s[0])):
        message = message.replace(old, new)
    return _UID_RE.sub(lambda m: f"<uid:{pseudonym('uid|' + m.group(0), length=8)}>", message)


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
    for uri in root.list_files(suffix=".parquet"):
        try:
            yield pq.read_table(io.BytesIO(storage.read_bytes(uri, root.endpoint)), columns=columns)
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
        keep = table.filter(pc.invert(drop))
        if keep.num_rows:
            buf = io.BytesIO()
            pq.write_table(keep, buf)
            storage.write_bytes(uri, buf.getvalue(), root.endpoint)
        else:
            storage.delete(uri, root.endpoint)
        removed += n
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
    """

    def __init__(self, root: Store, schema: pa.Schema, attempt: str, key: str = "pair_id", flush_rows: int = 256, flush_s: float = 30.0) -> None:
        self.root = root
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
        table = pa.Table.from_pylist(self._rows, schema=self.schema)
        self.files.append(write_parquet(self.root, f"part-{self.attempt}-{self._seq:05d}.parquet", table))
        self._seq += 1
        self._rows = []
        self._last = time.monotonic()


def read_rows(root: Store, columns: list[str] | None = None) -> pa.Table | None:
    """All rows under ``root`` (the given columns), or None when there are none."""
    tables = [pq.read_table(io.BytesIO(storage.read_bytes(u, root.endpoint)), columns=columns) for u in root.list_files(suffix=".parquet")]
    return pa.concat_tables(tables, promote_options="default") if tables else None


# ----------------------------------------------------------------------------- Ray


def init_ray(address: str | None, num_cpus: int | None, quiet: bool):
    """Connect to ``address`` (or ``RAY_ADDRESS``), else start a local Ray; returns the ``ray`` module."""
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the jobs show one bar of finished units instead
    if quiet:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    level = logging.WARNING if quiet else logging.INFO
    if address:
        ray.init(address=address, log_to_driver=not quiet, logging_level=level)
    else:
        # "local": a new Ray of this process, never a cluster some other command left running here
        ray.init(address="local", num_cpus=num_cpus, log_to_driver=not quiet, include_dashboard=False, logging_level=level)
    return ray


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
        units: work units (rows) the pool will see; the pool never exceeds it.
    """

    min_workers: int
    max_workers: int
    source: str
    cpus_per_worker: float
    gpus_per_worker: float
    units: int

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
    units: int,
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
    units = max(1, int(units))

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
    top = max(1, min(top, units))
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

    from mdafuse.io.demo_cohort import write_demo_cohort

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
