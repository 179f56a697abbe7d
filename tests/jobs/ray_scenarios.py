"""Cluster scenarios for the job tests, each run in its own process (one Ray per process).

    python -m tests.jobs.ray_scenarios NAME '{"json": "arguments"}'

prints one JSON line ``RESULT {...}`` at the end. Scenarios start their own Ray cluster with
``ray.cluster_utils.Cluster`` (several raylets on this machine), run the fusion job in this
process, change the cluster while it runs (remove a node, add a GPU node) and report what the
outputs say. The assertions live in ``tests/jobs/test_cluster_runs.py``.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time


def _rows(out: str, cohort: str, run: str) -> list[dict]:
    import pyarrow.parquet as pq

    from mdafuse.storage import Store

    root = Store(out).child("metrics", f"cohort={cohort}", f"run={run}")
    rows = []
    for uri in root.list_files(suffix=".parquet"):
        rows += pq.read_table(io.BytesIO(root.read_bytes(uri[len(root.root) + 1 :]))).to_pylist()
    return [{k: r[k] for k in ("pair_id", "status", "error", "worker", "node_id", "device", "gpu_ids")} for r in rows]


def _summary(out: str, cohort: str, run: str) -> dict:
    from mdafuse.storage import Store

    return json.loads(Store(out).read_bytes(f"runs/cohort={cohort}/run={run}/summary.json"))


def _job(argv: list[str]) -> int:
    from mdafuse.jobs.fuse_cohort import build_parser, run_from_args

    return run_from_args(build_parser().parse_args(argv))


def _job_in_thread(argv: list[str]) -> tuple[threading.Thread, dict]:
    """Start the job in a thread (the main thread keeps changing the cluster: Ray's node tools need it)."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["code"] = _job(argv)
        finally:
            outcome["finished_at"] = time.time()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def _count_done(out: str, cohort: str, run: str) -> int:
    from mdafuse.storage import Store

    try:
        return len([u for u in Store(out).list_files(f"images/cohort={cohort}/run={run}") if u.endswith("done.json")])
    except Exception:  # noqa: BLE001 - the prefix may not exist yet
        return 0


def nodes(args: dict) -> dict:
    """A head (no CPUs, as the manifests) and two worker nodes; rows from both; a node removed mid-run."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=2), cluster.add_node(num_cpus=2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    result: dict = {}
    base = [args["cohort"], "--cohort-name", "c", "--workers", "2", "-q"]
    try:
        # 1. a local --out on a multi-node cluster is refused (one line) unless declared shared
        result["local_out_code"] = _job(base + ["--out", args["local_out"], "--run-id", "local"])
        result["shared_fs_code"] = _job(base + ["--out", args["local_out"], "--run-id", "shared", "--shared-fs", "--limit", "4"])
        # 2. S3 output: rows from both nodes
        result["spread_code"] = _job(base + ["--out", args["out"], "--run-id", "spread"])
        result["spread_rows"] = _rows(args["out"], "c", "spread")
        result["spread_summary"] = _summary(args["out"], "c", "spread")
        # 3. a worker node removed once a few pairs are done: the job completes, every pair once
        thread, outcome = _job_in_thread(base + ["--out", args["out"], "--run-id", "lost"])
        deadline = time.time() + 300
        while thread.is_alive() and time.time() < deadline and _count_done(args["out"], "c", "lost") < args.get("remove_after", 3):
            time.sleep(0.2)
        removed = {"done_before": _count_done(args["out"], "c", "lost"), "node": workers[1].node_id, "job_running": thread.is_alive()}
        cluster.remove_node(workers[1], allow_graceful=False)
        removed["at"] = time.time()
        thread.join(timeout=600)
        result["lost_code"] = outcome.get("code")
        result["lost_finished_at"] = outcome.get("finished_at")
        result["removed"] = removed
        result["lost_rows"] = _rows(args["out"], "c", "lost")
        result["lost_summary"] = _summary(args["out"], "c", "lost")
    finally:
        ray.shutdown()
        cluster.shutdown()
    return result


def _advertise_gpu_group(max_count: int, gpus: int, cpus: int) -> None:
    """Publish an autoscaler configuration (a GPU group that may grow to ``max_count`` nodes), as KubeRay's autoscaler does."""
    import ray
    from ray.core.generated import autoscaler_pb2
    from ray.experimental.internal_kv import _internal_kv_put

    config = autoscaler_pb2.ClusterConfig()
    group = config.node_group_configs.add()
    group.name = "gpu-workers"
    group.max_count = max_count
    group.resources["GPU"] = gpus
    group.resources["CPU"] = cpus
    key = ray._raylet.GCS_AUTOSCALER_CLUSTER_CONFIG_KEY
    _internal_kv_put(key.encode() if isinstance(key, str) else key, config.SerializeToString(), namespace=ray._raylet.GCS_AUTOSCALER_STATE_NAMESPACE)


def gpus(args: dict) -> dict:
    """Logical GPUs (the model stage on CPU tensors): a GPU group at zero, then scaled up while the job waits."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ["MDAFUSE_DEVICE_OVERRIDE"] = "cpu"  # test only: GPU scheduling without a GPU
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    ray.init(address=cluster.address, log_to_driver=False)
    result: dict = {}
    base = [args["cohort"], "--out", args["out"], "--shared-fs", "--cohort-name", "g", "--num-gpus-per-worker", "1", "-q"]  # one machine: shared
    try:
        _advertise_gpu_group(max_count=2, gpus=1, cpus=2)
        # 1. no GPU comes: bounded wait, one line, exit 1
        t0 = time.time()
        result["timeout_code"] = _job(base + ["--run-id", "none", "--wait-for-workers", "3", "--limit", "2"])
        result["timeout_s"] = time.time() - t0
        # 2. the GPU group grows while the job waits: the job goes on (pool 1..2 from the autoscaler's maximum)
        t0 = time.time()
        thread, outcome = _job_in_thread(base + ["--run-id", "scaled", "--wait-for-workers", "120"])
        time.sleep(args.get("add_after_s", 4))
        added = {"waiting": thread.is_alive(), "at": time.time()}
        added["node"] = cluster.add_node(num_cpus=2, num_gpus=2).node_id
        thread.join(timeout=600)
        result["scaled_code"] = outcome.get("code")
        result["scaled_started"] = t0
        result["added"] = added
        result["scaled_rows"] = _rows(args["out"], "g", "scaled")
        result["scaled_summary"] = _summary(args["out"], "g", "scaled")
        # 3. a fixed pool of two GPU actors on the two logical GPUs, CPU stages beside them
        fixed = [args.get("fixed_cohort", args["cohort"])] + base[1:]
        result["fixed_code"] = _job(fixed + ["--run-id", "fixed", "--workers", "2"])
        result["fixed_rows"] = _rows(args["out"], "g", "fixed")
        result["fixed_summary"] = _summary(args["out"], "g", "fixed")
    finally:
        ray.shutdown()
        cluster.shutdown()
    return result


SCENARIOS = {"nodes": nodes, "gpus": gpus}

if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    outcome = SCENARIOS[sys.argv[1]](json.loads(sys.argv[2]))
    print("RESULT " + json.dumps(outcome, default=str))
