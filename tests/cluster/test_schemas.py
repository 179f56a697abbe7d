"""The manifests against the schemas a cluster applies: KubeRay's v1 CRDs and Ray's launcher schema.

The KubeRay CRDs come from ../shared/schemas/kuberay (or $MDAFUSE_SCHEMAS/kuberay); see
tests/cluster/kuberay_schema.py for how their OpenAPI extensions are translated. Each strictness
test breaks a valid manifest in one way and expects the validator to name that break, so a
validator that accepted everything would fail them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from tests.cluster import kuberay_schema
from tests.cluster.manifests import cluster_spec, load
from tests.conftest import _require

CRDS = {"raycluster.yaml": "ray.io_rayclusters.yaml", "rayjob.yaml": "ray.io_rayjobs.yaml"}


@pytest.fixture(scope="module")
def kuberay_dir() -> Path:
    root = kuberay_schema.schemas_dir()
    if root is None:
        msg = f"KubeRay CRD schemas not found at ../shared/schemas/kuberay; set {kuberay_schema.SCHEMAS_ENV} to the folder holding kuberay/"
        if _require():
            pytest.fail(msg + " (MDAFUSE_REQUIRE_DATA is set, so this is an error)")
        pytest.skip(msg)
    return root / "kuberay"


def _errors(doc: dict, name: str, kuberay_dir: Path) -> list[str]:
    return kuberay_schema.errors(doc, kuberay_dir / CRDS[name])


@pytest.mark.parametrize("name", sorted(CRDS))
def test_kuberay_manifest_is_schema_valid(name, kuberay_dir):
    assert _errors(load(name), name, kuberay_dir) == []


def _head_container(doc: dict) -> dict:
    return cluster_spec(doc)["headGroupSpec"]["template"]["spec"]["containers"][0]


def _set_unknown_field(doc):
    cluster_spec(doc)["authOptions"]["tokenSecret"] = "mine"


def _set_wrong_type(doc):
    cluster_spec(doc)["workerGroupSpecs"][0]["maxReplicas"] = "8"


def _set_unknown_auth_mode(doc):
    cluster_spec(doc)["authOptions"]["mode"] = "tokens"


def _set_unknown_metadata(doc):
    doc["metadata"]["nmae"] = "mdafuse"


def _drop_required_group_name(doc):
    del cluster_spec(doc)["workerGroupSpecs"][0]["groupName"]


def _duplicate_env_name(doc):
    head = _head_container(doc)
    head["env"] = [*head["env"], {"name": "AWS_ACCESS_KEY_ID", "value": "other"}]


def _set_wrong_api_version(doc):
    doc["apiVersion"] = "ray.io/v1alpha1"


def _set_int32_overflow(doc):
    cluster_spec(doc)["workerGroupSpecs"][0]["maxReplicas"] = 2**31


BREAKS = [
    (_set_unknown_field, "authOptions: Additional properties are not allowed ('tokenSecret' was unexpected)"),
    (_set_wrong_type, "workerGroupSpecs.0.maxReplicas: '8' is not of type 'integer'"),
    (_set_unknown_auth_mode, "authOptions.mode: 'tokens' is not one of ['disabled', 'token']"),
    (_set_unknown_metadata, "metadata: Additional properties are not allowed ('nmae' was unexpected)"),
    (_drop_required_group_name, "workerGroupSpecs.0: 'groupName' is a required property"),
    (_duplicate_env_name, "containers.0.env: items 1 and 4 have the same key name='AWS_ACCESS_KEY_ID'"),
    (_set_wrong_api_version, "apiVersion: 'ray.io/v1' was expected"),
    (_set_int32_overflow, "workerGroupSpecs.0.maxReplicas: 2147483648 is not a 'int32'"),
]


@pytest.mark.parametrize("name", sorted(CRDS))
@pytest.mark.parametrize("brk, expected", BREAKS, ids=[b.__name__.lstrip("_") for b, _ in BREAKS])
def test_validator_rejects_a_broken_manifest(name, brk, expected, kuberay_dir):
    doc = copy.deepcopy(load(name))
    brk(doc)
    errs = _errors(doc, name, kuberay_dir)
    assert len(errs) == 1 and expected in errs[0], errs


@pytest.mark.parametrize("value, ok", [("2", True), (2, True), ("1500m", True), ("two", False), (True, False), ([2], False)])
def test_int_or_string_quantities(value, ok, kuberay_dir):
    """Resource quantities are int-or-string with a quantity pattern: both spellings pass, nonsense does not."""
    doc = copy.deepcopy(load("raycluster.yaml"))
    _head_container(doc)["resources"]["limits"]["cpu"] = value
    errs = _errors(doc, "raycluster.yaml", kuberay_dir)
    assert (errs == []) is ok, errs


def test_cel_rules_are_not_passed_unchecked(kuberay_dir):
    """deletionStrategy carries CEL rules the validator cannot evaluate: it says so instead of passing."""
    doc = copy.deepcopy(load("rayjob.yaml"))
    doc["spec"]["deletionStrategy"] = {"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteNone"}}
    errs = _errors(doc, "rayjob.yaml", kuberay_dir)
    assert len(errs) == 1 and errs[0].startswith("spec.deletionStrategy: this field has CEL rules this validator cannot evaluate"), errs


def test_translation_refuses_unknown_extensions():
    with pytest.raises(ValueError, match=r"\.spec\.x: extension x-kubernetes-new-thing is not translated"):
        kuberay_schema.translate({"type": "object", "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string", "x-kubernetes-new-thing": True}}}}})


def test_preserve_unknown_fields_allows_unknown_keys():
    schema = kuberay_schema.translate(
        {"type": "object", "properties": {"open": {"type": "object", "properties": {"a": {"type": "string"}}, "x-kubernetes-preserve-unknown-fields": True}, "closed": {"type": "object", "properties": {"a": {"type": "string"}}}}}
    )
    assert list(jsonschema.Draft7Validator(schema).iter_errors({"open": {"a": "x", "b": 1}})) == []
    errs = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors({"closed": {"a": "x", "b": 1}})]
    assert errs == ["Additional properties are not allowed ('b' was unexpected)"]


# --------------------------------------------------------------------------- cluster launcher


def _ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def test_cluster_launcher_is_schema_valid():
    """The raw file against the schema in the installed ray wheel, then as `ray up` checks it (defaults filled in)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    doc = load("cluster-launcher.yaml")
    assert sorted(e.message for e in jsonschema.Draft7Validator(_ray_schema()).iter_errors(doc)) == []
    validate_config(prepare_config(copy.deepcopy(doc)))


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (("docker", "run_option"), ["--env X"], "Additional properties are not allowed ('run_option' was unexpected)"),
        (("available_node_types", "gpu_worker", "max_workers"), "8", "'8' is not of type 'integer'"),
        (("available_node_types", "gpu_worker", "resources", "GPU"), 0.5, "0.5 is not of type 'integer'"),
        (("idle_timeout_mins",), 10, "Additional properties are not allowed ('idle_timeout_mins' was unexpected)"),
    ],
)
def test_launcher_schema_rejects_a_broken_config(path, value, expected):
    doc = copy.deepcopy(load("cluster-launcher.yaml"))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errs = [e.message for e in jsonschema.Draft7Validator(_ray_schema()).iter_errors(doc)]
    assert errs == [expected]
