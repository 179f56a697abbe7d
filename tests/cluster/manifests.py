"""Reading the deployment files of cluster/ and the rules they must keep (token auth, secrets).

The rules return a list of problems (empty when the manifest is fine), so that a test can show both
that the real manifests pass and that a broken manifest is caught.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"

#: What every pod of the job gets from a secret: the pseudonymisation salt and the S3 keys.
SECRET_VARS = ("MDAFUSE_PSEUDONYM_SALT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
TOKEN_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def load(name: str) -> dict:
    docs = list(yaml.safe_load_all((CLUSTER / name).read_text()))
    if len(docs) != 1:
        raise ValueError(f"{name}: expected one YAML document; got {len(docs)}")
    return docs[0]


# --------------------------------------------------------------------------- KubeRay


def cluster_spec(doc: dict) -> dict:
    """The RayClusterSpec of a RayCluster or a RayJob."""
    if doc.get("kind") == "RayCluster":
        return doc["spec"]
    if doc.get("kind") == "RayJob":
        return doc["spec"]["rayClusterSpec"]
    raise ValueError(f"kind must be RayCluster or RayJob; got {doc.get('kind')!r}")


def ray_pod_specs(doc: dict) -> list[tuple[str, dict]]:
    """(label, pod spec) of the head and of every worker group."""
    spec = cluster_spec(doc)
    pods = [("head", spec["headGroupSpec"]["template"]["spec"])]
    pods += [(f"worker group {g['groupName']}", g["template"]["spec"]) for g in spec.get("workerGroupSpecs", [])]
    return pods


def pod_specs(doc: dict) -> list[tuple[str, dict]]:
    """Every pod spec of the object: the Ray pods and, for a RayJob, the submitter (None when KubeRay's default is used)."""
    pods = ray_pod_specs(doc)
    if doc["kind"] == "RayJob" and doc["spec"].get("submissionMode", "K8sJobMode") == "K8sJobMode":
        template = doc["spec"].get("submitterPodTemplate")
        pods.append(("submitter", template["spec"] if template else None))
    return pods


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env") or []}


def _from_secret(entry: dict | None) -> bool:
    ref = ((entry or {}).get("valueFrom") or {}).get("secretKeyRef")
    return bool(ref and ref.get("name") and ref.get("key") and not ref.get("optional", False))


def kuberay_token_problems(doc: dict) -> list[str]:
    """Token auth enabled anywhere without a token source, a token in plain text, or pods that disagree.

    ``spec.authOptions.mode: token`` is a source for every pod: KubeRay creates the token Secret
    and injects ``RAY_AUTH_MODE``/``RAY_AUTH_TOKEN`` into the Ray containers, the autoscaler and
    the submitter, unless a container sets them itself, which would override it. Without
    authOptions, a container with ``RAY_AUTH_MODE=token`` needs ``RAY_AUTH_TOKEN`` from a secret.
    """
    problems = []
    spec = cluster_spec(doc)
    managed = (spec.get("authOptions") or {}).get("mode") == "token"
    modes = set()
    for label, pod in pod_specs(doc):
        for c in (pod or {}).get("containers", []):
            env = _env(c)
            where = f"{label} container {c['name']}"
            if managed:
                for name in TOKEN_VARS:
                    if name in env:
                        problems.append(f"{where} sets {name}, overriding the token KubeRay manages with authOptions")
                continue
            mode = (env.get("RAY_AUTH_MODE") or {}).get("value", "disabled")
            modes.add((label, mode))
            token = env.get("RAY_AUTH_TOKEN")
            if token is not None and "value" in token:
                problems.append(f"{where} has RAY_AUTH_TOKEN in plain text; take it from a secret")
            if mode == "token" and not _from_secret(token):
                problems.append(f"{where} sets RAY_AUTH_MODE=token but no RAY_AUTH_TOKEN from a secret (and spec.authOptions is not mode: token)")
    if len({m for _, m in modes}) > 1:
        problems.append(f"pods disagree on RAY_AUTH_MODE: {sorted(modes)}")
    return problems


def kuberay_secret_problems(doc: dict) -> list[str]:
    """Pods (containers) that do not take the salt and the S3 keys from a secret."""
    problems = []
    for label, pod in pod_specs(doc):
        if pod is None:
            problems.append(f"{label}: no pod template, so KubeRay's default pod runs without the secrets")
            continue
        for c in pod.get("containers", []):
            env = _env(c)
            for name in SECRET_VARS:
                if not _from_secret(env.get(name)):
                    problems.append(f"{label} container {c['name']}: {name} must come from a secretKeyRef (not optional); got {env.get(name)}")
    return problems


# --------------------------------------------------------------------------- cluster launcher


def _docker_env(options: list[str]) -> dict[str, str | None]:
    """Variables set by ``docker run`` options: name -> value, or None when passed through from the host."""
    out: dict[str, str | None] = {}
    tokens = [t for opt in options for t in shlex.split(opt)]
    for i, tok in enumerate(tokens):
        arg = None
        if tok in ("-e", "--env") and i + 1 < len(tokens):
            arg = tokens[i + 1]
        elif tok.startswith("--env="):
            arg = tok.split("=", 1)[1]
        elif tok == "--env-file" or tok.startswith("--env-file="):
            raise ValueError("--env-file hides which variables a node gets; pass them with --env NAME")
        if arg is not None:
            name, sep, value = arg.partition("=")
            out[name] = value if sep else None
    return out


def launcher_node_env(doc: dict) -> dict[str, dict[str, str | None]]:
    """node type -> the variables its container gets from ``docker run`` (see :func:`_docker_env`)."""
    docker = doc.get("docker") or {}
    out = {}
    for name, node in doc["available_node_types"].items():
        if name == doc["head_node_type"]:
            options = docker.get("run_options", []) + docker.get("head_run_options", [])
        else:
            own = (node.get("docker") or {}).get("worker_run_options", [])
            options = docker.get("run_options", []) + docker.get("worker_run_options", []) + own
        out[name] = _docker_env(options)
    return out


def launcher_token_problems(doc: dict) -> list[str]:
    """Token auth enabled on a node without the token passed in by name, a token in plain text, or nodes that disagree.

    The host-side source is checked too: an initialization command must handle ``RAY_AUTH_TOKEN``
    (tests/cluster/test_policy.py runs those commands).
    """
    problems = []
    commands = [c for key in ("head_start_ray_commands", "worker_start_ray_commands", "setup_commands") for c in doc.get(key) or []]
    for c in commands:
        if "RAY_AUTH_MODE" in c or "RAY_AUTH_TOKEN" in c:
            problems.append(f"command {c!r} sets token variables; pass them to the container with docker --env so every process sees them")
    modes = {}
    for node, env in launcher_node_env(doc).items():
        modes[node] = env.get("RAY_AUTH_MODE") or "disabled"
        if "RAY_AUTH_TOKEN" in env and env["RAY_AUTH_TOKEN"] is not None:
            problems.append(f"node type {node}: RAY_AUTH_TOKEN in plain text in run_options; pass it through with --env RAY_AUTH_TOKEN")
        if modes[node] == "token" and "RAY_AUTH_TOKEN" not in env:
            problems.append(f"node type {node}: RAY_AUTH_MODE=token without --env RAY_AUTH_TOKEN")
    if len(set(modes.values())) > 1:
        problems.append(f"node types disagree on RAY_AUTH_MODE: {modes}")
    if "token" in modes.values() and not any("RAY_AUTH_TOKEN" in c for c in doc.get("initialization_commands") or []):
        problems.append("RAY_AUTH_TOKEN is passed through from the host, but no initialization command provides it")
    return problems


def launcher_secret_problems(doc: dict) -> list[str]:
    """Node types whose container does not get the salt and the S3 keys passed through by name."""
    problems = []
    for node, env in launcher_node_env(doc).items():
        for name in SECRET_VARS:
            if name not in env:
                problems.append(f"node type {node}: no --env {name}")
            elif env[name] is not None:
                problems.append(f"node type {node}: {name} in plain text in run_options; pass it through with --env {name}")
    return problems
