"""Saving and loading network weights as safetensors, with the sha256 recorded and verified."""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from safetensors import safe_open
from safetensors.torch import load_file, save

from mdafuse.modality import functional_modality
from mdafuse.model.config import MdAFuseConfig
from mdafuse.model.ensemble import EnsembleConfig, MdAFuseEnsemble
from mdafuse.model.network import MdAFuseNet

__all__ = [
    "WeightsInfo",
    "DEFAULT_WEIGHTS",
    "MODALITY_WEIGHTS",
    "default_weights_path",
    "shipped_weights",
    "resolve_weights",
    "save_weights",
    "save_ensemble",
    "save_state",
    "read_metadata",
    "load_model",
    "file_sha256",
]

DEFAULT_WEIGHTS = "mdafuse_v3.safetensors"
#: Shipped weights trained for one functional modality; any other modality (PET, CT, unknown) gets
#: DEFAULT_WEIGHTS, trained on MR-PET and MR-SPECT together. SPECT has its own single network
#: (fourth loss study); the ensemble ``mdafuse_spect_v3`` (eight network evaluations per slice, its
#: gains within noise) stays available by name: ``--weights mdafuse_spect_v3``.
MODALITY_WEIGHTS = {"SPECT": "mdafuse_spect_v2.safetensors"}
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class WeightsInfo:
    """What a weights file is: where it came from and its checksum (recorded in every output row)."""

    path: Path
    sha256: str
    version: str
    config: MdAFuseConfig | EnsembleConfig
    metadata: dict[str, str] = field(default_factory=dict)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sort_header_metadata(data: bytes) -> bytes:
    """The same safetensors bytes with the header's string metadata in key order.

    safetensors writes the metadata from a hash map, in an order that changes from run to run, and the
    sha256 recorded for every output row would change with it. Only that order changes: the header keeps
    its length, the tensors and their offsets are untouched.
    """
    (size,) = struct.unpack("<Q", data[:8])
    raw = data[8 : 8 + size]
    header = json.loads(raw)

    def dump(obj: dict) -> str:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)

    if "__metadata__" not in header or dump(header) != raw.decode("utf-8").rstrip(" "):
        return data  # not an encoding this function reproduces exactly: keep the bytes as written
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    return data[:8] + dump(header).encode("utf-8").ljust(size, b" ") + data[8 + size :]


def default_weights_path(modality: str | None = None) -> Path:
    """Path of the weights shipped inside the package for ``modality`` (PET, SPECT, CT, or None)."""
    name = MODALITY_WEIGHTS.get(functional_modality(modality) or "", DEFAULT_WEIGHTS)
    return WEIGHTS_DIR / name


def shipped_weights() -> list[str]:
    """Names of the weights shipped in the package (usable wherever a weights file is asked for)."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def resolve_weights(weights: str | Path) -> Path:
    """A weights file: ``weights`` itself when it exists, else the shipped weights of that name.

    Raises:
        FileNotFoundError: neither a file nor a shipped name (the message lists the names).
    """
    path = Path(weights)
    if path.is_file():
        return path
    shipped = WEIGHTS_DIR / f"{Path(str(weights)).name.removesuffix('.safetensors')}.safetensors"
    if shipped.is_file() and path.parent == Path("."):
        return shipped
    raise FileNotFoundError(f"weights {weights}: no such file, and not a shipped name ({', '.join(shipped_weights())})")


def save_state(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> str:
    """Write tensors and string metadata as safetensors (metadata in key order: equal inputs, equal bytes); return the sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _sort_header_metadata(save({k: v.detach().contiguous().cpu() for k, v in state.items()}, metadata=metadata))
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def save_weights(model: MdAFuseNet, path: str | Path, version: str, extra: dict[str, str] | None = None) -> str:
    """Write the model's state dict (eval-ready, BN statistics included) and return its sha256."""
    meta = {"format": "mdafuse", "version": version, "config": model.config.to_json()}
    return save_state(model.state_dict(), path, {**meta, **(extra or {})})


def save_ensemble(
    members: Sequence[MdAFuseNet], path: str | Path, version: str, flip_average: bool = False, extra: dict[str, str] | None = None
) -> str:
    """Write one weights file holding every member network (see :class:`MdAFuseEnsemble`); return its sha256."""
    if not all(isinstance(m, MdAFuseNet) for m in members):
        raise TypeError("ensemble members must be single MdAFuseNet networks")
    ensemble = MdAFuseEnsemble(EnsembleConfig(tuple(m.config for m in members), flip_average))
    for target, source in zip(ensemble.members, members):
        target.load_state_dict(source.state_dict(), strict=True)
    meta = {"format": "mdafuse", "version": version, "ensemble": ensemble.config.to_json()}
    return save_state(ensemble.state_dict(), path, {**meta, **(extra or {})})


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata stored in a safetensors file's header (empty when it has none)."""
    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


def load_model(
    path: str | Path | None = None,
    device: str | torch.device = "cpu",
    expected_sha256: str | None = None,
    modality: str | None = None,
) -> tuple[MdAFuseNet | MdAFuseEnsemble, WeightsInfo]:
    """Load an eval-mode network or ensemble from a safetensors file (the shipped weights by default).

    Without ``path`` the shipped weights for ``modality`` are loaded (:func:`default_weights_path`);
    ``path`` may also name shipped weights (``"mdafuse_spect_v3"``, see :func:`resolve_weights`).
    The shipped file is checked against the sha256 recorded in its model card; any file is
    checked against ``expected_sha256`` when given. Loading is strict: missing or unexpected
    tensors raise.
    """
    shipped = path is None
    if shipped:
        path = default_weights_path(modality)
    else:
        try:
            path = resolve_weights(path)
        except FileNotFoundError:
            path = Path(path)
        shipped = path.parent == WEIGHTS_DIR
    if not path.is_file():
        hint = " (the package is missing its weights; reinstall mdafuse)" if shipped else ""
        raise FileNotFoundError(f"{path}: weights file not found{hint}")
    sha = file_sha256(path)
    if shipped and expected_sha256 is None:
        card = path.with_suffix(".json")
        if card.is_file():
            expected_sha256 = json.loads(card.read_text()).get("sha256")
    if expected_sha256 is not None and sha != expected_sha256:
        raise ValueError(f"{path}: sha256 {sha} does not match the expected {expected_sha256}; the file is corrupt or not these weights")
    try:
        meta = read_metadata(path)
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != "mdafuse" or not ("config" in meta or "ensemble" in meta):
        raise ValueError(f"{path}: safetensors file carries no MdAFuse metadata (format/config); was it written by mdafuse?")
    model: nn.Module
    if "ensemble" in meta:
        cfg: MdAFuseConfig | EnsembleConfig = EnsembleConfig.from_json(meta["ensemble"])
        model = MdAFuseEnsemble(cfg)
    else:
        cfg = MdAFuseConfig.from_json(meta["config"])
        model = MdAFuseNet(cfg)
    model.load_state_dict(state, strict=True)
    model.eval().to(device)
    return model, WeightsInfo(path=path, sha256=sha, version=meta.get("version", "unknown"), config=cfg, metadata=meta)
