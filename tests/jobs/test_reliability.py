"""Every fault ends clean: one writer per run, preflight in one line, exit statuses, no leaked locations, tidy storage.

Runs that need their own process (two attempts at once, Ctrl-C, S3 credentials) start
``python -m jobs.fuse_cohort`` as a user would and read its exit status, stderr and outputs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mdafuse.jobs.lease import LeaseHeld, RunLease
from mdafuse.storage import PreconditionFailed, Store, is_transient, with_retries
from tests.jobs.cohorts import make_png_cohort

ROOT = Path(__file__).resolve().parents[2]


def _job(argv: list[str], env: dict | None = None, timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "jobs.fuse_cohort", *argv], cwd=str(ROOT), env=full_env, capture_output=True, text=True, timeout=timeout, **kw)


def _rows(out: Path, cohort: str, run: str) -> list[dict]:
    files = sorted((out / f"metrics/cohort={cohort}/run={run}").glob("*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def _good_cohort(folder: Path, n: int, size: int = 48) -> Path:
    """``n`` good 2-D pairs (copies of up to 10 distinct ones: the planted blob leaves the image beyond that)."""
    import shutil

    distinct = min(n, 10)
    make_png_cohort(folder, n_good=distinct, size=size)
    for bad in ("nopet", "mismatch", "corrupt"):
        (folder / "MR" / f"{bad}.png").unlink()
        (folder / "PET" / f"{bad}.png").unlink(missing_ok=True)
    for i in range(distinct, n):
        for mod in ("MR", "PET"):
            shutil.copy(folder / mod / f"good{i % distinct}.png", folder / mod / f"copy{i}.png")
    return folder


# ----------------------------------------------------------------------------- storage primitives


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return Store(str(tmp_path / "store"))
    server = request.getfixturevalue("s3_server")
    for k, v in server.env.items():
        request.getfixturevalue("monkeypatch").setenv(k, v)
    return Store(f"s3://{server.bucket}/cond-{time.time_ns()}")


def test_conditional_writes(store):
    token = store.put_if_absent("lease.json", b"one")
    with pytest.raises(FileExistsError):
        store.put_if_absent("lease.json", b"two")
    data, token2 = store.read_with_token("lease.json")
    assert data == b"one" and token2 == token
    token3 = store.put_if_match("lease.json", b"three", token)
    with pytest.raises(PreconditionFailed):
        store.put_if_match("lease.json", b"four", token)  # stale token: someone else wrote since
    assert store.read_bytes("lease.json") == b"three" and store.read_with_token("lease.json")[1] == token3


def test_transient_errors_are_retried_others_are_not():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("When writing to 'x': AWS Error NETWORK_CONNECTION during PutObject operation: curl error: Couldn't connect to server")
        return "done"

    assert with_retries(flaky, base_s=0.01) == "done" and len(calls) == 3
    assert not is_transient(FileNotFoundError("gone")) and not is_transient(PermissionError("no"))
    with pytest.raises(FileNotFoundError):
        with_retries(lambda: (_ for _ in ()).throw(FileNotFoundError("gone")), base_s=0.01)


# ----------------------------------------------------------------------------- the run lease


def test_lease_excludes_a_second_attempt_and_a_stale_one_is_taken_over(store):
    run_dir = store.child("runs/cohort=c/run=r")
    first = RunLease(run_dir, "attempt-A", heartbeat_s=0.2, stale_s=1.0)
    first.acquire()
    with pytest.raises(LeaseHeld, match=r"run is in use by attempt attempt-A on .* last heartbeat \d+ s ago"):
        RunLease(run_dir, "attempt-B", heartbeat_s=0.2, stale_s=1.0).acquire()
    # a live attempt (heartbeating) is never taken over
    first.start_heartbeat()
    time.sleep(1.5)
    with pytest.raises(LeaseHeld):
        RunLease(run_dir, "attempt-B", heartbeat_s=0.2, stale_s=1.0).acquire()
    # the first attempt dies without releasing: after stale_s the next one takes over
    first._stop.set()
    first._thread.join()
    time.sleep(1.3)
    second = RunLease(run_dir, "attempt-C", heartbeat_s=0.2, stale_s=1.0)
    second.acquire()
    assert second.taken_over_from == "attempt-A"
    assert first.beat() is False and first.lost  # the old holder learns it lost the run
    second.release()
    assert not run_dir.exists("lease.json")
    third = RunLease(run_dir, "attempt-D", heartbeat_s=0.2, stale_s=1.0)
    third.acquire()  # free again
    third.release()


def test_waiting_for_a_lease(tmp_path):
    run_dir = Store(str(tmp_path / "run"))
    holder = RunLease(run_dir, "A", heartbeat_s=0.2, stale_s=5.0)
    holder.acquire()
    holder.start_heartbeat()
    threading.Timer(0.8, holder.release).start()
    t0 = time.monotonic()
    waiter = RunLease(run_dir, "B", heartbeat_s=0.2, stale_s=5.0)
    waiter.acquire(wait_s=10)
    assert 0.5 < time.monotonic() - t0 < 5 and waiter.taken_over_from is None
    waiter.release()


def test_two_concurrent_runs_on_one_run_id(tmp_path):
    """Two `jobs.fuse_cohort` on the same --run-id at once: one writes, the other stops in one line; rows == pairs."""
    cohort = _good_cohort(tmp_path / "cohort", 10, size=128)
    out = tmp_path / "out"
    argv = [str(cohort), "--out", str(out), "--run-id", "c1", "--workers", "1", "--num-cpus", "1", "-q"]
    procs = [subprocess.Popen([sys.executable, "-m", "jobs.fuse_cohort", *argv], cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[0] == 2)
    lines = [ln for ln in loser[2].splitlines() if ln.strip()]
    assert lines[-1].startswith("fuse_cohort: error: run is in use by attempt ") and "Traceback" not in loser[2]
    rows = _rows(out, "cohort", "c1")
    assert len(rows) == 10 == len({r["pair_id"] for r in rows})
    # a third run resumes: nothing to do, nothing doubled
    assert _job(argv).returncode == 0 and len(_rows(out, "cohort", "c1")) == 10


def test_default_run_ids_are_unique():
    from mdafuse.jobs.runtime import default_run_id

    ids = {default_run_id() for _ in range(200)}
    assert len(ids) == 200 and all(i.startswith("run-") for i in ids)


def test_stale_lease_and_dead_attempt_staging_are_taken_over(ray_local, tmp_path):
    """A dead attempt left its lease, chunk parts and (older version) a staging folder and duplicate rows: the next attempt cleans all."""
    from jobs.fuse_cohort import main

    cohort = _good_cohort(tmp_path / "cohort", 4)
    out = tmp_path / "out"
    run_dir = out / "runs/cohort=cohort/run=r"
    run_dir.mkdir(parents=True)
    (run_dir / "lease.json").write_text(json.dumps({"attempt": "dead-attempt", "host": "gone", "pid": 1, "started_at": "2026-01-01T00:00:00Z", "heartbeat_at": time.time() - 3600}))
    parts = out / "images/cohort=cohort/run=r/_parts/dead-attempt/abc"
    parts.mkdir(parents=True)
    (parts / "00000.npz").write_bytes(b"half")
    staging = out / "metrics/cohort=cohort/run=r/_staging/dead-attempt"
    staging.mkdir(parents=True)
    (staging / "x.parquet").write_bytes(b"PAR1")
    from mdafuse.jobs.fusion_rows import empty_row, rows_to_table

    dup = rows_to_table([{**empty_row({"pair_id": "p1"}), "error": "old", "finished_at": day} for day in ("2026-01-01", "2026-01-02")])
    pq.write_table(dup, out / "metrics/cohort=cohort/run=r/old-a.parquet")
    pq.write_table(dup.slice(0, 1), out / "metrics/cohort=cohort/run=r/old-b.parquet")
    assert main([str(cohort), "--out", str(out), "--run-id", "r", "--lease-timeout", "30", "-q"]) == 3  # the stray p1 row is an error row
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["lease"]["taken_over_from"] == "dead-attempt"
    assert summary["lease"]["cleaned_dead_attempts"] == 2 and summary["lease"]["duplicate_rows_removed"] == 2
    assert not (out / "images/cohort=cohort/run=r/_parts").exists() and not (out / "metrics/cohort=cohort/run=r/_staging").exists()
    assert not (run_dir / "lease.json").exists()  # released at the end
    rows = _rows(out, "cohort", "r")
    counts = Counter(r["pair_id"] for r in rows)
    assert max(counts.values()) == 1 and len(rows) == 5  # 4 pairs and the stray p1, once


# ----------------------------------------------------------------------------- preflight and exit statuses


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "WARNING" not in ln and "MDAFUSE_PSEUDONYM_SALT" not in ln]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def test_local_out_that_cannot_be_written(tmp_path):
    cohort = _good_cohort(tmp_path / "cohort", 1)
    (tmp_path / "afile").write_text("x")
    proc = _job([str(cohort), "--out", str(tmp_path / "afile" / "out")])
    assert proc.returncode == 2 and "is a file, not a folder" in _one_error_line(proc)
    if os.geteuid() == 0:
        # root writes through file permissions; sysfs refuses new folders even to root (EPERM)
        unwritable = Path("/sys/mdafuse-out")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        unwritable = ro / "out"
    proc = _job([str(cohort), "--out", str(unwritable)])
    assert proc.returncode == 2 and "folder not writable (permission denied)" in _one_error_line(proc)


def test_s3_preflight_names_the_cause(s3_server, tmp_path):
    cohort = _good_cohort(tmp_path / "cohort", 1)
    env = dict(s3_server.env)
    out = f"s3://{s3_server.bucket}/pre"
    cases = {
        "wrong secret": ({**env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}, out, "secret key (AWS_SECRET_ACCESS_KEY) does not match"),
        "wrong key": ({**env, "AWS_ACCESS_KEY_ID": "nobody-knows-me"}, out, "access key (AWS_ACCESS_KEY_ID) is not known"),
        "no credentials": ({k: v for k, v in env.items() if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")} | {"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"}, out, "no S3 credentials"),
        "bad endpoint": ({**env, "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}, out, "is unreachable"),
        "missing bucket": (env, "s3://no-such-bucket-here/x", "bucket 'no-such-bucket-here' does not exist; create it, or pass --create-bucket"),
    }
    for name, (case_env, where, expected) in cases.items():
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        proc = subprocess.run([sys.executable, "-m", "jobs.fuse_cohort", str(cohort), "--out", where], cwd=str(ROOT), env={**clean, "PYTHONPATH": str(ROOT), **case_env}, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (name, proc.stderr[-2000:])
        assert expected in _one_error_line(proc), name
    # --create-bucket creates the missing bucket and runs
    proc = _job([str(cohort), "--out", f"s3://created-{os.getpid()}/x", "--create-bucket", "-q", "--workers", "1"], env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_exit_status_3_with_error_rows_and_qa(ray_local, tmp_path, capsys):
    from jobs.fuse_cohort import main
    from mdafuse.cli import main as cli

    make_png_cohort(tmp_path / "cohort", n_good=1)
    out = tmp_path / "out"
    assert main([str(tmp_path / "cohort"), "--out", str(out), "--run-id", "e", "-q"]) == 3  # 1 ok, 3 error pairs
    assert cli(["qa", str(out), "--run", "e"]) == 3
    good = _good_cohort(tmp_path / "good", 1)
    assert main([str(good), "--out", str(out), "--run-id", "g", "-q"]) == 0
    assert cli(["qa", str(out), "--run", "g"]) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_prints_one_line_and_leaves_no_process(tmp_path, sig):
    import psutil

    # one pair per network call (--batch-size 1): done records appear one by one, so the signal comes
    # mid-run (with the default batch all 12 pairs could finish together, before the signal: CI saw exit 0)
    cohort = _good_cohort(tmp_path / "cohort", 24, size=256)
    proc = subprocess.Popen([sys.executable, "-m", "jobs.fuse_cohort", str(cohort), "--out", str(tmp_path / "out"), "--run-id", "i", "--workers", "1", "--batch-size", "1", "-q"],
                            cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a test session started in the background (`cmd &`) ignores SIGINT, and children inherit that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "out/images/cohort=cohort/run=i").rglob("done.json")):
        time.sleep(0.3)
    children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    assert children, "the job started no Ray processes"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "fuse_cohort: interrupted; rerun with --run-id i to resume" in err and "Traceback" not in err, err[-3000:]
    time.sleep(3)
    alive = [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive, [psutil.Process(p).cmdline()[:3] for p in alive]
    assert not (tmp_path / "out/runs/cohort=cohort/run=i/lease.json").exists()  # released on the way out


# ----------------------------------------------------------------------------- privacy, counts, surprises


def test_salt_set_but_empty_is_treated_as_unset(monkeypatch, caplog):
    from mdafuse.privacy import default_salt
    from mdafuse.jobs.runtime import salt_is_default

    monkeypatch.setenv("MDAFUSE_PSEUDONYM_SALT", "")
    assert default_salt() == "mdafuse-default-salt"
    with caplog.at_level("WARNING"):
        assert salt_is_default(demo=False) is True
    assert any("not set" in r.getMessage() for r in caplog.records)


def test_unpaired_png_is_an_error_row(tmp_path):
    from mdafuse.cohort import build_pair_table

    make_png_cohort(tmp_path / "c", n_good=1)
    (tmp_path / "c/PET/lonely.png").write_bytes((tmp_path / "c/PET/good0.png").read_bytes())
    rows = {Path(r["pet"] or r["mr"]).stem: r for r in build_pair_table(tmp_path / "c", "png").table.to_pylist()}
    assert rows["lonely"]["mr"] == "" and rows["lonely"]["pet"].endswith("lonely.png")
    from mdafuse.jobs.fusion_stages import FusionJobConfig, load_chunks

    rec = load_chunks(rows["lonely"], FusionJobConfig(out=str(tmp_path / "o"), cohort="png", run_id="u"))[0]
    assert rec["status"] == "error" and "no MR partner" in rec["error"] and "lonely" not in rec["error"]


# ----------------------------------------------------------------------------- soak


def _s3_keys(server, prefix: str) -> list[str]:
    client = server.client()
    keys, token = [], None
    while True:
        kw = {"Bucket": server.bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
        page = client.list_objects_v2(**kw)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return keys
        token = page["NextContinuationToken"]


@pytest.mark.slow
def test_soak_200_pairs_three_worker_kills_and_an_s3_restart(tmp_path):
    """200 pairs to S3 while three model actors are killed and the S3 server restarts once: exactly 200 rows, no staging left."""
    import psutil

    from tests.s3_server import start_s3_server

    server = start_s3_server(tmp_path / "s3")
    try:
        cohort = _good_cohort(tmp_path / "cohort", 200, size=128)
        out = f"s3://{server.bucket}/soak"
        proc = subprocess.Popen([sys.executable, "-m", "jobs.fuse_cohort", str(cohort), "--out", out, "--run-id", "soak", "--workers", "2", "-q"],
                                cwd=str(ROOT), env={**os.environ, **server.env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        events = []
        plan = [(20, "kill"), (60, "kill"), (85, "restart s3"), (110, "kill")]
        deadline = time.time() + 900
        while proc.poll() is None and plan and time.time() < deadline:
            try:
                done = sum(k.endswith("done.json") for k in _s3_keys(server, "soak/images/"))
            except Exception:  # noqa: BLE001 - the server is restarting
                done = -1
            if done >= plan[0][0]:
                _, what = plan.pop(0)
                if what == "kill":
                    actors = [p for p in psutil.Process(proc.pid).children(recursive=True) if "FuseChunks" in " ".join(p.cmdline())]
                    if actors:
                        actors[0].kill()
                        events.append(("kill", done))
                    else:
                        plan.insert(0, (done + 5, "kill"))  # between actor restarts: try again a little later
                else:
                    server.restart(down_s=2.0)
                    events.append(("restart", done))
            time.sleep(0.2)
        _, err = proc.communicate(timeout=900)
        assert [e[0] for e in events] == ["kill", "kill", "restart", "kill"], (events, err[-3000:])
        import io as _io

        client = server.client()
        rows = []
        for key in _s3_keys(server, "soak/metrics/cohort=cohort/run=soak/"):
            rows += pq.read_table(_io.BytesIO(client.get_object(Bucket=server.bucket, Key=key)["Body"].read())).to_pylist()
        errors = Counter(r["error"][:200] for r in rows if r["status"] != "ok")
        assert proc.returncode == 0, (errors, err[-3000:])
        assert len(rows) == 200 and len({r["pair_id"] for r in rows}) == 200
        assert not errors
        leftovers = [k for k in _s3_keys(server, "soak/") if "/_staging/" in k or "/_parts/" in k or k.endswith("lease.json")]
        assert leftovers == []
    finally:
        server.stop()
