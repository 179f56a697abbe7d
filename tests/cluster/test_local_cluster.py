"""The RayJob's submission on a local two-process cluster started the way the manifests start one.

``ray start --head --block`` and ``ray start --address HEAD:PORT --block`` run as two process
trees with the settings the manifests give every pod: ``RAY_AUTH_MODE=token`` with a token
(generated here, as KubeRay generates one for ``authOptions``), the pseudonymisation salt, and
``PYTHONPATH`` at the repository like the image's ``ENV PYTHONPATH``, and S3 keys and endpoint
(a SeaweedFS server on loopback stands in for S3). The job goes in with ``ray job submit`` and the
RayJob's own entry point, as KubeRay's submitter runs it: the cohort is a local folder, the output
goes to the test bucket (the job refuses a local --out on a multi-node cluster), and the actors are
CPU actors (no GPU here). Each node gets one CPU, the head too (the manifests give the head none):
this machine has two.

Every Ray process carries a marker variable in its environment, so the test can tell that none
of them is left once the two ``ray start`` processes have been stopped.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.fuse_cohort import build_parser
from mdafuse.cohort import pair_id
from tests.cluster.manifests import load
from tests.conftest import _require
from tests.jobs.cohorts import make_png_cohort

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")
SALT = "local-cluster-test-salt"
SUBMISSION = "mdafuse-local-r1"


def _missing_ray_default() -> list[str]:
    """Requirements of ray[default] (the dashboard, which `ray job submit` talks to) that are not installed."""
    from importlib.metadata import PackageNotFoundError, requires, version

    from packaging.requirements import Requirement

    missing = []
    for line in requires("ray") or []:
        req = Requirement(line)
        if req.marker is None or not req.marker.evaluate({"extra": "default"}):
            continue
        try:
            if not req.specifier.contains(version(req.name), prereleases=True):
                missing.append(str(req))
        except PackageNotFoundError:
            missing.append(str(req))
    return missing


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _marked_pids(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker`` (zombies have an empty environ and do not count)."""
    needle = f"MDAFUSE_TEST_CLUSTER={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def _tail(path: Path, n: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else f"({path} missing)"


class LocalCluster:
    """Two `ray start --block` process trees (head and one worker node) on loopback."""

    def __init__(self, root: Path, secrets_env: dict[str, str]):
        self.root = root
        self.token = secrets.token_hex(16)
        self.marker = secrets.token_hex(8)
        self.procs: list[subprocess.Popen] = []
        (root / "home").mkdir()
        ports = _free_ports(15)
        self.gcs_port, self.dashboard_port = ports[0], ports[1]
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self._head_ports, self._worker_ports = ports[2:9], ports[9:15]
        # No inherited Ray, AWS or salt settings; HOME is empty, so no ~/.ray/auth_token is found either.
        base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_", "MDAFUSE_"))}
        base.update(HOME=str(root / "home"), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0")
        self.client_env_without_auth = dict(base)
        self.client_env = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        # what every pod gets from the manifests' secrets: the salt and the S3 settings
        self.node_env = {**self.client_env, **secrets_env, "MDAFUSE_PSEUDONYM_SALT": SALT}
        self.node_env.update(PYTHONPATH=str(ROOT), MDAFUSE_TEST_CLUSTER=self.marker)
        # On SIGTERM, `ray start --block` drains its node until it is idle, for up to 30 s; Ray Data's
        # detached actors (stats, autoscaling coordinator) keep it busy for all 30, and there is no
        # traffic here to drain: stop at once.
        self.node_env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.log", "wb")
        cmd = [str(RAY), "start", "--block", "--temp-dir", str(self.root / name), "--num-cpus", "1", "--object-store-memory", str(100 * 1024 * 1024), "--disable-usage-stats", *args]
        self.procs.append(subprocess.Popen(cmd, env=self.node_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        log.close()

    def start(self) -> None:
        names = ["--ray-client-server-port", "--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"]
        head_ports = [a for pair in zip(names, map(str, self._head_ports)) for a in pair]
        self._start("head", ["--head", "--port", str(self.gcs_port), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port), *head_ports])
        self._wait(lambda: self.get("/api/version") is not None, 60, "head dashboard", "head")
        worker_ports = [a for pair in zip(names[1:], map(str, self._worker_ports)) for a in pair]
        self._start("worker", ["--address", f"127.0.0.1:{self.gcs_port}", *worker_ports])
        self._wait(lambda: len(self.alive_nodes()) == 2, 60, "two alive nodes", "worker")

    def _wait(self, ready, timeout: float, what: str, log: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                break
            try:
                if ready():
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"no {what} after {timeout} s; {log} log:\n{_tail(self.root / f'{log}.log')}")

    def get(self, path: str, token: str | None = "default"):
        """GET from the dashboard with the cluster's token (or ``token``; None: no header); parsed JSON, or None when refused."""
        token = self.token if token == "default" else token
        req = urllib.request.Request(self.dashboard + path, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                return None
            raise

    def alive_nodes(self) -> list[dict]:
        summary = self.get("/nodes?view=summary")["data"]["summary"]
        return [n for n in summary if n["raylet"]["state"] == "ALIVE"]

    def ray(self, *args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(RAY), *args], env=env or self.client_env, capture_output=True, text=True, timeout=timeout)

    def stop(self) -> tuple[list[int], float]:
        """Stop both nodes; the pids of marked processes still alive 10 s later (killed) and the time it took.

        Only the ``ray start --block`` processes get SIGTERM, the worker's first: each stops its own
        children. A SIGTERM to a whole process group would also hit the GCS and the raylets
        directly, racing the orderly shutdown (with draining on, the head then waits 30 s for a
        GCS that is gone).
        """
        t0 = time.monotonic()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=45)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        deadline = time.monotonic() + 10
        while _marked_pids(self.marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = _marked_pids(self.marker)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left, time.monotonic() - t0


@pytest.fixture(scope="module")
def cluster(s3_server):
    missing = _missing_ray_default()
    if missing:
        msg = f"ray[default] is incomplete (missing {missing}); `ray job submit` needs the dashboard: pip install -e .[test]"
        if _require():
            pytest.fail(msg)
        pytest.skip(msg)
    # A short root: Ray's unix sockets live under --temp-dir and paths over 107 bytes fail.
    root = Path(tempfile.mkdtemp(prefix="mdafuse-rc-", dir="/tmp"))
    c = LocalCluster(root, s3_server.env)
    try:
        c.start()
        yield c
    finally:
        left, _ = c.stop()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"Ray processes left after the cluster was stopped (killed now): {left}"


def _entrypoint(cohort: Path, out: str) -> list[str]:
    """The RayJob's entry point with the local cohort, the test bucket as output, and CPU actors.

    argparse keeps the last of repeated options, so the overrides go at the end. An actor takes a
    whole CPU: the job then sizes its pool to one actor, which fills one node and leaves the other
    node's CPU to the 1-CPU decode and write tasks. With half-CPU actors it starts two, Ray places
    one on each node, no node has a whole CPU left, and the tasks never run.
    """
    argv = shlex.split(load("rayjob.yaml")["spec"]["entrypoint"])
    source = build_parser().parse_args(argv[3:]).cohort
    assert argv.count(source) == 1, f"the RayJob's COHORT {source!r} must appear once in its entry point"
    argv[argv.index(source)] = str(cohort)
    return argv + ["--out", out, "--num-gpus-per-worker", "0", "--cpus-per-worker", "1", "--torch-threads", "1", "-q"]


@pytest.fixture(scope="module")
def submitted(cluster, s3_server):
    expected = make_png_cohort(cluster.root / "cohort")
    out = f"s3://{s3_server.bucket}/local-cluster-{cluster.marker}/fusion"
    entry = _entrypoint(cluster.root / "cohort", out)
    try:
        result = cluster.ray("job", "submit", "--address", cluster.dashboard, "--submission-id", SUBMISSION, "--", *entry, timeout=120)
    except subprocess.TimeoutExpired:
        logs = cluster.ray("job", "logs", "--address", cluster.dashboard, SUBMISSION).stdout[-4000:]
        status = cluster.ray("status", "--address", f"127.0.0.1:{cluster.gcs_port}").stdout[-2000:]
        pytest.fail(f"the job did not finish in 120 s; its log:\n{logs}\n{status}")
    return {"result": result, "expected": expected, "out": out, "args": build_parser().parse_args(entry[3:])}


def _metrics_rows(s3_server, out: str, cohort: str, run: str) -> list[dict]:
    """The rows of the visible Parquet files of the run (staging and hidden files left out)."""
    client = s3_server.client()
    prefix = out.removeprefix(f"s3://{s3_server.bucket}/") + f"/metrics/cohort={cohort}/run={run}/"
    rows = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3_server.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) :]
            if rel.endswith(".parquet") and not any(part.startswith((".", "_")) for part in rel.split("/")):
                body = client.get_object(Bucket=s3_server.bucket, Key=obj["Key"])["Body"].read()
                rows += pq.read_table(io.BytesIO(body), columns=["pair_id", "status", "error"]).to_pylist()
    return rows


def test_job_writes_one_row_per_pair(cluster, submitted, s3_server):
    result, args = submitted["result"], submitted["args"]
    # the cohort holds bad pairs on purpose: the job finishes with error rows, exit status 3, which
    # Ray reports as a failed job (`ray job submit` exits non-zero) with the driver's own exit code
    details = cluster.get(f"/api/jobs/{SUBMISSION}")
    assert result.returncode != 0 and "exit code 3" in result.stdout + result.stderr, result.stdout[-3000:] + result.stderr[-3000:]
    assert details["status"] == "FAILED" and details["driver_exit_code"] == 3
    assert details["driver_info"] is not None  # the entry point connected to this cluster, not to a Ray of its own
    rows = _metrics_rows(s3_server, submitted["out"], args.cohort_name, args.run_id)  # written with the nodes' S3 keys
    # pair ids are salted: they match only if the salt of the nodes' environment reached the driver
    want = {pair_id(args.cohort_name, stem, "", SALT): status for stem, status in submitted["expected"].items()}
    assert sorted(r["pair_id"] for r in rows) == sorted(want)
    for r in rows:
        if want[r["pair_id"]] == "ok":
            assert (r["status"], r["error"]) == ("ok", "")
        else:
            assert r["status"] == "error" and want[r["pair_id"]] in r["error"], r


def test_submission_needs_the_token(cluster, submitted):
    assert cluster.get("/api/version", token=None) is None and cluster.get("/api/version", token="wrong") is None
    no_auth = cluster.ray("job", "submit", "--address", cluster.dashboard, "--submission-id", "no-token", "--", "echo", "hi", env=cluster.client_env_without_auth)
    assert no_auth.returncode != 0 and "Unauthorized: Missing authentication token" in no_auth.stderr, no_auth.stderr[-2000:]
    wrong = cluster.ray("job", "submit", "--address", cluster.dashboard, "--submission-id", "wrong-token", "--", "echo", "hi", env={**cluster.client_env, "RAY_AUTH_TOKEN": "0" * 32})
    assert wrong.returncode != 0 and "Invalid authentication token" in wrong.stderr, wrong.stderr[-2000:]
    assert sorted(j["submission_id"] for j in cluster.get("/api/jobs/")) == [SUBMISSION]


def test_reused_submission_id_is_refused(cluster, submitted):
    """KubeRay's guard against double submission: the RayJob's submission id can be used once."""
    again = cluster.ray("job", "submit", "--address", cluster.dashboard, "--submission-id", SUBMISSION, "--", "echo", "hi")
    assert again.returncode != 0 and f"Job with submission_id {SUBMISSION} already exists" in again.stderr, again.stderr[-2000:]


def test_stopping_leaves_no_ray_process(cluster, submitted):
    assert len(_marked_pids(cluster.marker)) >= 8  # gcs, raylets, dashboard, agents...: the marker does reach them
    left, seconds = cluster.stop()
    assert left == [] and seconds < 30, (left, seconds)
    assert all(p.returncode is not None for p in cluster.procs)
