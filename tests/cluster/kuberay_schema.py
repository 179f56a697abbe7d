"""Validate manifests against KubeRay's CRD schemas the way a Kubernetes API server would.

A CRD's ``openAPIV3Schema`` is OpenAPI v3 plus ``x-kubernetes-*`` extensions. They are translated
to JSON Schema (draft 7) for the ``jsonschema`` package:

* ``x-kubernetes-int-or-string``: an integer or a string.
* ``x-kubernetes-preserve-unknown-fields``: unknown fields allowed in that object; every other
  object schema with ``properties`` gets ``additionalProperties: false``, which is what
  ``kubectl apply --validate=strict`` (server-side strict field validation) reports as
  "unknown field".
* ``x-kubernetes-embedded-resource``: an object that must carry ``apiVersion`` and ``kind``.
* ``x-kubernetes-list-type: set``: unique items; ``map`` with ``x-kubernetes-list-map-keys``: no two
  items with the same key (key fields missing from an item take their schema default, as the API
  server defaults them before it checks).
* ``x-kubernetes-map-type``: only decides how server-side apply merges; nothing to check.
* ``x-kubernetes-validations`` (CEL): rules with ``oldSelf`` are transition rules, which the API
  server does not evaluate on create; any other rule cannot be evaluated here, so a manifest that
  sets such a field fails with a message saying so rather than passing unchecked.
* ``nullable: true``: null allowed.

An extension not listed above raises, so a newer CRD cannot be half-understood silently. The
object's ``metadata`` (only ``type: object`` in a CRD; the API server checks it as ObjectMeta) is
checked against the ObjectMeta fields a manifest may set.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_ENV = "MDAFUSE_SCHEMAS"

_LIST_MAP = "x-mdafuse-list-map-keys"
_CEL = "x-mdafuse-cel-rules"
_DROPPED = {"description", "x-kubernetes-map-type", "x-kubernetes-list-map-keys", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource"}

# The API server's checks of an object's metadata, restricted to what a manifest may set.
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": _DNS_SUBDOMAIN, "maxLength": 253},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "pattern": _DNS_SUBDOMAIN, "maxLength": 63},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
    },
}


def schemas_dir() -> Path | None:
    """The shared schema folder: ``$MDAFUSE_SCHEMAS``, else ``../shared/schemas`` beside the repository."""
    env = os.environ.get(SCHEMAS_ENV)
    candidates = [Path(env)] if env else [ROOT.parent / "shared" / "schemas"]
    for c in candidates:
        if (c / "kuberay").is_dir():
            return c
    return None


def _load_yaml(path: Path) -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 1-1.4 MB: the C loader is 20x faster
    with open(path) as f:
        return yaml.load(f, Loader=loader)


def crd_version_schema(crd_path: Path) -> tuple[dict, str, str]:
    """The ``openAPIV3Schema`` of the served, stored version of a CRD, its ``apiVersion`` and kind."""
    crd = _load_yaml(crd_path)
    if crd.get("kind") != "CustomResourceDefinition":
        raise ValueError(f"{crd_path}: expected a CustomResourceDefinition; got kind {crd.get('kind')!r}")
    versions = [v for v in crd["spec"]["versions"] if v.get("served") and v.get("storage")]
    if len(versions) != 1:
        raise ValueError(f"{crd_path}: expected one served and stored version; got {[v['name'] for v in versions]}")
    version = versions[0]
    return version["schema"]["openAPIV3Schema"], f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"]


def translate(node: dict, path: str = "") -> dict:
    """JSON Schema (draft 7) for one OpenAPI v3 node of a structural CRD schema (see the module doc)."""
    if not isinstance(node, dict):
        raise TypeError(f"schema node at {path or '<root>'} must be a mapping; got {type(node).__name__}")
    out: dict = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: translate(sub, f"{path}.{name}") for name, sub in value.items()}
        elif key == "items":
            out[key] = translate(value, f"{path}[]")
        elif key == "additionalProperties":
            out[key] = translate(value, f"{path}.*") if isinstance(value, dict) else value
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [translate(sub, path) for sub in value]
        elif key == "not":
            out[key] = translate(value, path)
        elif key == "x-kubernetes-int-or-string":
            if value and "anyOf" not in node:
                out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        elif key == "x-kubernetes-list-type":
            if value == "set":
                out["uniqueItems"] = True
            elif value == "map":
                keys = node.get("x-kubernetes-list-map-keys")
                if not keys:
                    raise ValueError(f"{path}: x-kubernetes-list-type map without x-kubernetes-list-map-keys")
                props = node.get("items", {}).get("properties", {})
                out[_LIST_MAP] = {"keys": list(keys), "defaults": {k: props[k]["default"] for k in keys if "default" in props.get(k, {})}}
            elif value != "atomic":
                raise ValueError(f"{path}: x-kubernetes-list-type must be atomic, set or map; got {value!r}")
        elif key == "x-kubernetes-validations":
            rules = [r["rule"] for r in value if "oldSelf" not in r["rule"]]
            if rules:
                out[_CEL] = rules
        elif key == "nullable":
            pass  # handled below, once "type" is known
        elif key in _DROPPED:
            pass
        elif key.startswith("x-kubernetes-"):
            raise ValueError(f"{path}: extension {key} is not translated; extend tests/cluster/kuberay_schema.py")
        else:
            out[key] = value
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
        out["required"] = sorted(set(out.get("required", [])) | {"apiVersion", "kind"})
    preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
    if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node and not preserve:
        out["additionalProperties"] = False
    return out


def _list_map_keys(validator, spec, instance, schema):
    if not validator.is_type(instance, "array"):
        return
    seen: dict[tuple, int] = {}
    for i, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        key = tuple(item.get(k, spec["defaults"].get(k)) for k in spec["keys"])
        if key in seen:
            named = ", ".join(f"{k}={v!r}" for k, v in zip(spec["keys"], key))
            yield jsonschema.ValidationError(f"items {seen[key]} and {i} have the same key {named}; the list is a map keyed by {spec['keys']}")
        seen.setdefault(key, i)


def _cel_rules(validator, rules, instance, schema):
    yield jsonschema.ValidationError(f"this field has CEL rules this validator cannot evaluate: {rules}; check them by hand or teach tests/cluster/kuberay_schema.py")


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("int32")
def _int32(value) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@_FORMATS.checks("int64")
def _int64(value) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


_Validator = jsonschema.validators.extend(jsonschema.Draft7Validator, {_LIST_MAP: _list_map_keys, _CEL: _cel_rules})


@lru_cache(maxsize=None)
def crd_validator(crd_path: Path):
    """A strict validator of whole objects (apiVersion, kind, metadata, spec) of one CRD."""
    raw, api_version, kind = crd_version_schema(crd_path)
    schema = translate(raw)
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": kind}
    schema["properties"]["metadata"] = OBJECT_META
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    _Validator.check_schema(schema)
    return _Validator(schema, format_checker=_FORMATS)


def errors(doc: dict, crd_path: Path) -> list[str]:
    """Every schema error of ``doc`` as ``path: message`` lines (empty when the cluster accepts it)."""
    found = crd_validator(crd_path).iter_errors(doc)
    return sorted(f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in found)
