"""Token auth never enabled without a token source; the salt and the S3 keys from secrets in every pod.

Each rule (tests/cluster/manifests.py) is run on the real manifests and on a broken one, such as
the manifests the issue reported (``RAY_AUTH_MODE=token`` and no token anywhere). The launcher's
host-side setup commands are run for real, with a stand-in ``aws`` command.
"""

from __future__ import annotations

import copy
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.manifests import (
    SECRET_VARS,
    cluster_spec,
    kuberay_secret_problems,
    kuberay_token_problems,
    launcher_node_env,
    launcher_secret_problems,
    launcher_token_problems,
    load,
    pod_specs,
)

KUBERAY = ["raycluster.yaml", "rayjob.yaml"]


def _secret_env() -> list[dict]:
    return [{"name": n, "valueFrom": {"secretKeyRef": {"name": "s", "key": n}}} for n in SECRET_VARS]


def _cluster(env: list[dict], auth: dict | None = None) -> dict:
    """A minimal RayCluster whose head and one worker group have ``env``."""
    spec = {
        "headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray-head", "env": env}]}}},
        "workerGroupSpecs": [{"groupName": "w", "template": {"spec": {"containers": [{"name": "ray-worker", "env": env}]}}}],
    }
    if auth is not None:
        spec["authOptions"] = auth
    return {"kind": "RayCluster", "spec": spec}


@pytest.mark.parametrize("name", KUBERAY)
def test_kuberay_token_auth_comes_from_auth_options(name):
    doc = load(name)
    assert cluster_spec(doc)["authOptions"] == {"mode": "token"}
    assert kuberay_token_problems(doc) == []


def test_kuberay_token_rule_catches_a_token_without_source():
    reported = _cluster([{"name": "RAY_AUTH_MODE", "value": "token"}])  # the issue's manifests
    assert kuberay_token_problems(reported) == [
        "head container ray-head sets RAY_AUTH_MODE=token but no RAY_AUTH_TOKEN from a secret (and spec.authOptions is not mode: token)",
        "worker group w container ray-worker sets RAY_AUTH_MODE=token but no RAY_AUTH_TOKEN from a secret (and spec.authOptions is not mode: token)",
    ]
    plain = _cluster([{"name": "RAY_AUTH_MODE", "value": "token"}, {"name": "RAY_AUTH_TOKEN", "value": "abc"}])
    assert any("RAY_AUTH_TOKEN in plain text" in p for p in kuberay_token_problems(plain))
    overriding = _cluster([{"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "auth_token"}}}], auth={"mode": "token"})
    assert kuberay_token_problems(overriding)[0] == "head container ray-head sets RAY_AUTH_TOKEN, overriding the token KubeRay manages with authOptions"
    by_hand = _cluster([{"name": "RAY_AUTH_MODE", "value": "token"}, {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "auth_token"}}}])
    assert kuberay_token_problems(by_hand) == []  # the manual KubeRay recipe is a real source
    mixed = copy.deepcopy(by_hand)
    mixed["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["env"] = []
    assert kuberay_token_problems(mixed) == ["pods disagree on RAY_AUTH_MODE: [('head', 'token'), ('worker group w', 'disabled')]"]


@pytest.mark.parametrize("name", KUBERAY)
def test_kuberay_secrets_in_every_pod(name):
    doc = load(name)
    labels = [label for label, _ in pod_specs(doc)]
    expected = ["head", "worker group gpu-workers"] + {"raycluster.yaml": ["worker group cpu-workers"], "rayjob.yaml": ["submitter"]}[name]
    assert labels == expected
    assert kuberay_secret_problems(doc) == []


def test_kuberay_secret_rule_catches_missing_secrets():
    doc = _cluster(_secret_env())
    assert kuberay_secret_problems(doc) == []
    env_from = _cluster([], auth={"mode": "token"})
    env_from["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["envFrom"] = [{"secretRef": {"name": "mdafuse-s3"}}]
    assert len(kuberay_secret_problems(env_from)) == 2 * len(SECRET_VARS)  # envFrom hides which keys a pod gets
    literal = _cluster([e if e["name"] != "MDAFUSE_PSEUDONYM_SALT" else {"name": e["name"], "value": "public"} for e in _secret_env()])
    assert [p.split(":")[0] for p in kuberay_secret_problems(literal)] == ["head container ray-head", "worker group w container ray-worker"]
    optional = copy.deepcopy(doc)
    optional["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": n, "valueFrom": {"secretKeyRef": {"name": "s", "key": n, "optional": True}}} for n in SECRET_VARS
    ]
    assert len(kuberay_secret_problems(optional)) == len(SECRET_VARS)  # optional: the pod would start without them
    job = {"kind": "RayJob", "spec": {"rayClusterSpec": doc["spec"]}}
    assert kuberay_secret_problems(job) == ["submitter: no pod template, so KubeRay's default pod runs without the secrets"]


def test_launcher_passes_token_and_secrets_by_name():
    doc = load("cluster-launcher.yaml")
    env = launcher_node_env(doc)
    assert sorted(env) == ["gpu_worker", "head"]
    for node in env.values():
        assert node["RAY_AUTH_MODE"] == "token" and node["RAY_AUTH_TOKEN"] is None
        assert all(node[name] is None for name in SECRET_VARS)
    assert launcher_token_problems(doc) == []
    assert launcher_secret_problems(doc) == []


def test_launcher_rules_catch_a_token_without_source():
    doc = load("cluster-launcher.yaml")
    reported = copy.deepcopy(doc)
    reported["docker"]["run_options"] = ["--ulimit nofile=65536:65536", "--env RAY_AUTH_MODE=token"]  # the issue's config
    assert launcher_token_problems(reported) == [
        "node type head: RAY_AUTH_MODE=token without --env RAY_AUTH_TOKEN",
        "node type gpu_worker: RAY_AUTH_MODE=token without --env RAY_AUTH_TOKEN",
    ]
    assert "node type gpu_worker: no --env AWS_ACCESS_KEY_ID" in launcher_secret_problems(reported)
    plain = copy.deepcopy(doc)
    plain["docker"]["run_options"] = [o if o != "--env RAY_AUTH_TOKEN" else "-e RAY_AUTH_TOKEN=abc" for o in doc["docker"]["run_options"]]
    assert launcher_token_problems(plain)[0].endswith("RAY_AUTH_TOKEN in plain text in run_options; pass it through with --env RAY_AUTH_TOKEN")
    head_only = copy.deepcopy(doc)
    head_only["docker"]["head_run_options"] = head_only["docker"].pop("run_options")
    assert "node types disagree on RAY_AUTH_MODE: {'head': 'token', 'gpu_worker': 'disabled'}" in launcher_token_problems(head_only)
    no_host_source = copy.deepcopy(doc)
    no_host_source["initialization_commands"] = []
    assert launcher_token_problems(no_host_source) == ["RAY_AUTH_TOKEN is passed through from the host, but no initialization command provides it"]


def _run_init_commands(home: Path, fake_bin: Path, secret: str | None) -> list[subprocess.CompletedProcess]:
    """Each initialization command in its own bash, as the launcher runs them, with ``aws`` printing ``secret``."""
    aws = fake_bin / "aws"
    if secret is None:
        aws.write_text("#!/bin/sh\necho 'An error occurred (AccessDeniedException)' >&2\nexit 254\n")
    else:
        (fake_bin / "secret.json").write_text(secret)
        aws.write_text(f"#!/bin/sh\ncat '{fake_bin / 'secret.json'}'\n")
    aws.chmod(0o755)
    env = {"HOME": str(home), "PATH": f"{fake_bin}:/usr/bin:/bin"}
    results = []
    for cmd in load("cluster-launcher.yaml")["initialization_commands"]:
        results.append(subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, timeout=30))
        if results[-1].returncode:
            break
    return results


def _login_shell_env(home: Path, names: list[str]) -> dict[str, str]:
    """The variables a launcher shell (it sources ~/.bashrc before each command) has, e.g. for `docker run`."""
    script = "source ~/.bashrc; " + "; ".join(f'printf "%s\\0" "${{{n}-UNSET}}"' for n in names)
    out = subprocess.run(["bash", "-c", script], env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30, check=True)
    return dict(zip(names, out.stdout.split("\0")[:-1]))


def test_launcher_host_setup_fetches_the_secret(tmp_path):
    home, fake_bin = tmp_path / "home", tmp_path / "bin"
    home.mkdir()
    fake_bin.mkdir()
    (fake_bin / "python3").symlink_to(sys.executable)
    salt = "s3cr't \"salt\" $HOME `id`"  # quotes and shell syntax must arrive verbatim
    secret = json.dumps({"RAY_AUTH_TOKEN": "tok123", "MDAFUSE_PSEUDONYM_SALT": salt, "AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"})
    for _ in range(2):  # `ray up` reruns them on every update: the second run must change nothing
        results = _run_init_commands(home, fake_bin, secret)
        assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    env_file = home / ".mdafuse" / "cluster.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600 and stat.S_IMODE(env_file.parent.stat().st_mode) == 0o700
    assert (home / ".bashrc").read_text().count("cluster.env") == 1
    names = ["RAY_AUTH_TOKEN", "MDAFUSE_PSEUDONYM_SALT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3"]
    assert _login_shell_env(home, names) == {"RAY_AUTH_TOKEN": "tok123", "MDAFUSE_PSEUDONYM_SALT": salt, "AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_ENDPOINT_URL_S3": "UNSET"}


@pytest.mark.parametrize(
    "secret, message",
    [
        ('{"MDAFUSE_PSEUDONYM_SALT": "x", "AWS_ACCESS_KEY_ID": "AK"}', "secret mdafuse/cluster lacks ['RAY_AUTH_TOKEN']"),
        ('{"RAY_AUTH_TOKEN": "", "MDAFUSE_PSEUDONYM_SALT": ""}', "secret mdafuse/cluster lacks ['RAY_AUTH_TOKEN', 'MDAFUSE_PSEUDONYM_SALT']"),
        (None, "JSONDecodeError"),  # aws failed (no permission): nothing to parse
    ],
)
def test_launcher_host_setup_refuses_a_secret_without_token(tmp_path, secret, message):
    home, fake_bin = tmp_path / "home", tmp_path / "bin"
    home.mkdir()
    fake_bin.mkdir()
    (fake_bin / "python3").symlink_to(sys.executable)
    results = _run_init_commands(home, fake_bin, secret)
    assert len(results) == 1 and results[0].returncode != 0  # the node's setup stops here
    assert message in results[0].stderr
    assert not (home / ".mdafuse" / "cluster.env").exists()
    assert not os.path.exists(home / ".bashrc")
