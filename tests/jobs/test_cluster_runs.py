"""The job really shards: N workers in the rows, several nodes, a node lost mid-run, GPU scheduling, autoscaling.

The multi-node and GPU runs need their own Ray cluster, so they run in a child process
(``tests/jobs/ray_scenarios.py``) and report what the outputs say; the assertions are here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.jobs.cohorts import make_png_cohort

ROOT = Path(__file__).resolve().parents[2]


def _scenario(name: str, args: dict, env: dict | None = None, timeout: int = 600) -> dict:
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "tests.jobs.ray_scenarios", name, json.dumps(args)], cwd=str(ROOT), env=full_env, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"scenario {name} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    result = json.loads(lines[-1][len("RESULT ") :])
    result["stderr"] = proc.stderr
    return result


def test_two_workers_share_the_pairs(ray_local, tmp_path):
    """--workers 2 over 10 pairs: two model actors produced rows, each at least a quarter of them.

    256 x 256 pairs, so that the network (not decoding) is the bottleneck, as in a real cohort: an
    idle actor then always exists when work arrives only if the pool really has two.
    """
    from jobs.fuse_cohort import main
    from tests.jobs.test_fuse_cohort import _rows

    make_png_cohort(tmp_path / "cohort", n_good=10, size=256)
    for bad in ("nopet", "mismatch", "corrupt"):  # good pairs only: the work is the same for each
        (tmp_path / "cohort/MR" / f"{bad}.png").unlink()
        (tmp_path / "cohort/PET" / f"{bad}.png").unlink(missing_ok=True)
    out = tmp_path / "out"
    assert main([str(tmp_path / "cohort"), "--out", str(out), "--run-id", "w2", "--workers", "2", "-q"]) == 0
    rows = _rows(str(out), "cohort", "w2")
    assert len(rows) == 10 and all(r["status"] == "ok" for r in rows)
    per_worker = Counter(r["worker"] for r in rows)
    assert len(per_worker) == 2 and min(per_worker.values()) >= 10 / 4, per_worker
    summary = json.loads((out / "runs/cohort=cohort/run=w2/summary.json").read_text())
    assert summary["pool_plan"]["max_workers"] == 2 and sorted(summary["workers_used"]) == sorted(per_worker)
    assert len(summary["nodes_used"]) == 1 and {r["node_id"] for r in rows} == set(summary["nodes_used"])
    stages = summary["pipeline"]["stages"]
    assert set(stages) == {"decode", "model", "write"}
    assert sorted(stages["model"]["processes"]) == sorted(per_worker)  # the model stage is the two actors
    assert not set(stages["model"]["processes"]) & (set(stages["decode"]["processes"]) | set(stages["write"]["processes"]))


@pytest.mark.slow
def test_several_nodes_and_a_lost_node(s3_server, tmp_path):
    """Head + two worker nodes with S3 output: rows from both nodes; a node removed mid-run loses no pair and doubles none."""
    make_png_cohort(tmp_path / "cohort", n_good=16, size=192)
    n_pairs = 16 + 3
    out = f"s3://{s3_server.bucket}/nodes"
    result = _scenario("nodes", {"cohort": str(tmp_path / "cohort"), "out": out, "local_out": str(tmp_path / "local"), "remove_after": 3}, env=s3_server.env)
    # a local folder on a multi-node cluster: refused in one line, unless declared shared
    assert result["local_out_code"] == 2
    refusal = [ln for ln in result["stderr"].splitlines() if "is a local folder but the Ray cluster has 3 nodes" in ln]
    assert len(refusal) == 1 and "--shared-fs" in refusal[0]
    assert result["shared_fs_code"] in (0, 3)  # accepted and run (3: some of its 4 pairs are the planted bad ones)
    # spread over both worker nodes
    rows = result["spread_rows"]
    assert result["spread_code"] == 3 and len(rows) == n_pairs == len({r["pair_id"] for r in rows})
    ok_nodes = Counter(r["node_id"] for r in rows if r["status"] == "ok")
    assert len(ok_nodes) >= 2, ok_nodes
    assert len(result["spread_summary"]["nodes_used"]) >= 2
    # a node lost in the middle of the run
    removed = result["removed"]
    assert removed["job_running"] and removed["done_before"] >= 3 and removed["at"] < result["lost_finished_at"]
    rows = result["lost_rows"]
    assert result["lost_code"] == 3  # finished, with the 3 planted error pairs
    assert len(rows) == n_pairs and len({r["pair_id"] for r in rows}) == n_pairs  # every pair exactly once
    assert Counter(r["status"] for r in rows) == Counter({"ok": 16, "error": 3})
    assert result["lost_summary"]["rows"] == n_pairs == result["lost_summary"]["unique_pairs"]


@pytest.mark.slow
def test_gpu_stage_scheduling_and_autoscaling(tmp_path):
    """Logical GPUs: the model stage is placed by GPU resources, waits for a GPU group scaled to zero, and times out in one line."""
    make_png_cohort(tmp_path / "cohort", n_good=8, size=64)
    # the fixed pool needs pairs where the network is the bottleneck (as in test_two_workers_share_the_pairs):
    # on 64 x 64 pairs one actor finishes each slice before the next arrives and may take them all
    make_png_cohort(tmp_path / "fixed", n_good=10, size=256)
    out = str(tmp_path / "out")
    result = _scenario("gpus", {"cohort": str(tmp_path / "cohort"), "fixed_cohort": str(tmp_path / "fixed"), "out": out, "add_after_s": 4})
    # no GPU node ever comes: a bounded wait, then one line and exit 1
    assert result["timeout_code"] == 1 and result["timeout_s"] < 60
    lines = [ln for ln in result["stderr"].splitlines() if "no model actor could be placed within --wait-for-workers 3 s" in ln]
    assert len(lines) == 1, result["stderr"][-2000:]
    # the GPU group at zero grows while the job waits: the pool's upper size came from the autoscaler's maximum
    summary = result["scaled_summary"]
    assert result["added"]["waiting"]  # the job was still waiting when the GPU node came
    assert result["scaled_code"] == 3 and summary["pool_plan"]["source"] == "autoscaler" and summary["pool_plan"]["max_workers"] == 2
    rows = result["scaled_rows"]
    assert len(rows) == 11 and all(r["gpu_ids"] in ("0", "1") and r["device"] == "cpu" for r in rows if r["status"] == "ok")
    assert {r["node_id"] for r in rows if r["status"] == "ok"} == {result["added"]["node"]}  # the only node with GPUs
    # a fixed pool of two GPU actors: both logical GPUs used, CPU stages in other processes, at the same time
    rows = result["fixed_rows"]
    per_gpu = Counter(r["gpu_ids"] for r in rows if r["status"] == "ok")
    assert result["fixed_code"] == 3 and set(per_gpu) == {"0", "1"} and min(per_gpu.values()) >= 10 / 4, per_gpu
    pipeline = result["fixed_summary"]["pipeline"]
    model = set(pipeline["stages"]["model"]["processes"])
    assert len(model) == 2 and not model & set(pipeline["stages"]["decode"]["processes"]) and not model & set(pipeline["stages"]["write"]["processes"])
    assert pipeline["overlap_s"] > 0  # decode/write tasks ran while the model stage was busy
