"""Saving, loading and verifying weights; the shipped weights and their golden output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mdafuse.model.network import MdAFuseNet
from mdafuse.model.weights import (
    DEFAULT_WEIGHTS,
    MODALITY_WEIGHTS,
    default_weights_path,
    file_sha256,
    load_model,
    save_weights,
)
from mdafuse.modality import functional_modality

GOLDEN = Path(__file__).parent / "golden_output.json"


def _tiny_input() -> tuple[torch.Tensor, torch.Tensor]:
    y, x = torch.meshgrid(torch.linspace(0, 1, 24), torch.linspace(0, 1, 20), indexing="ij")
    mr = (0.5 + 0.4 * torch.sin(6 * x) * torch.cos(4 * y)).view(1, 1, 24, 20)
    fn = torch.exp(-((x - 0.6) ** 2 + (y - 0.4) ** 2) / 0.02).view(1, 1, 24, 20)
    return mr, fn


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    net = MdAFuseNet().eval()
    sha = save_weights(net, tmp_path / "w.safetensors", "test")
    model, info = load_model(tmp_path / "w.safetensors", expected_sha256=sha)
    mr, fn = _tiny_input()
    with torch.no_grad():
        torch.testing.assert_close(model(mr, fn), net(mr, fn))
    assert info.sha256 == sha == file_sha256(tmp_path / "w.safetensors") and info.version == "test"


def test_equal_weights_give_equal_files(tmp_path):
    """safetensors orders string metadata differently from run to run; the header is written in key order."""
    torch.manual_seed(0)
    net = MdAFuseNet()
    extra = {"train_config": "{}", "note": "a", "zeta": "z"}
    shas = {save_weights(net, tmp_path / f"w{i}.safetensors", "v", extra=extra) for i in range(6)}
    assert len(shas) == 1
    model, info = load_model(tmp_path / "w0.safetensors")
    raw = (tmp_path / "w0.safetensors").read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert list(header["__metadata__"]) == sorted(header["__metadata__"]) and info.metadata["note"] == "a"
    mr, fn = _tiny_input()
    with torch.no_grad():
        torch.testing.assert_close(model(mr, fn), net.eval()(mr, fn), rtol=0, atol=0)


def test_checksum_mismatch_and_bad_files(tmp_path):
    net = MdAFuseNet()
    path = tmp_path / "w.safetensors"
    save_weights(net, path, "x")
    with pytest.raises(ValueError, match="does not match the expected"):
        load_model(path, expected_sha256="0" * 64)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_model(tmp_path / "none.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(ValueError, match="junk.safetensors"):
        load_model(tmp_path / "junk.safetensors")


@pytest.mark.parametrize("modality", [None, *MODALITY_WEIGHTS])
def test_shipped_weights_verify_and_are_small(modality):
    path = default_weights_path(modality)
    assert path.is_file(), f"shipped weights missing: see the command in {path.with_suffix('.md')}"
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["sha256"] == file_sha256(path)
    assert path.stat().st_size < 5_000_000
    assert card["validation_test_series"]["MR-PET"]["pairs"] > 0
    model, info = load_model(modality=modality)  # checks the card's sha256 too
    assert info.path == path and not model.training


def test_shipped_ensembles_rebuild_from_shipped_members(tmp_path):
    """Every shipped ensemble is its card's members, byte for byte: rebuilding it gives the same sha256."""
    from mdafuse.model.ensemble import MdAFuseEnsemble
    from mdafuse.model.weights import save_ensemble

    shipped = default_weights_path().parent
    ensembles = [p for p in sorted(shipped.glob("*.safetensors")) if isinstance(load_model(p)[0], MdAFuseEnsemble)]
    assert [p.stem for p in ensembles] == ["mdafuse_spect_v3"]  # kept by name; the defaults are single networks
    assert default_weights_path("SPECT") not in ensembles
    for path in ensembles:
        card = json.loads(path.with_suffix(".json").read_text())
        members = [load_model(shipped / row["weights"], expected_sha256=row["sha256"])[0] for row in card["members"]]
        model, info = load_model(path)
        rebuilt = save_ensemble(members, tmp_path / path.name, info.version, flip_average=card["flip_average"])
        assert rebuilt == card["sha256"] == info.sha256, f"{path.name}: rebuild with {card['command']}"


@pytest.mark.parametrize(
    ("modality", "expected"),
    [(None, None), ("PET", "PET"), ("pt", "PET"), ("SPECT", "SPECT"), ("NM", "SPECT"), (" spect ", "SPECT"), ("CT", "CT")],
)
def test_functional_modality_names(modality, expected):
    assert functional_modality(modality) == expected


def test_shipped_weights_by_name(tmp_path):
    from mdafuse.model.weights import resolve_weights, shipped_weights

    assert "mdafuse_spect_v3" in shipped_weights() and "mdafuse_v3" in shipped_weights()
    assert resolve_weights("mdafuse_spect_v3") == default_weights_path().parent / "mdafuse_spect_v3.safetensors"
    assert resolve_weights("mdafuse_spect_v3.safetensors").name == "mdafuse_spect_v3.safetensors"
    model, info = load_model("mdafuse_spect_v3")
    assert info.version == "mdafuse_spect_v3"
    local = tmp_path / "mdafuse_v3.safetensors"
    local.write_bytes(default_weights_path().read_bytes())
    assert resolve_weights(local) == local  # an existing file wins over a shipped name
    with pytest.raises(FileNotFoundError, match="not a shipped name .*mdafuse_v3"):
        resolve_weights("nope")
    with pytest.raises(FileNotFoundError, match="not a shipped name"):
        resolve_weights(tmp_path / "sub" / "mdafuse_v3")  # a path is never taken for a name


def test_modality_picks_shipped_weights():
    assert default_weights_path().name == DEFAULT_WEIGHTS
    assert default_weights_path("PET").name == default_weights_path("CT").name == DEFAULT_WEIGHTS
    assert default_weights_path("SPECT").name == default_weights_path("NM").name == MODALITY_WEIGHTS["SPECT"] != DEFAULT_WEIGHTS
    with pytest.raises(ValueError, match="unknown functional modality 'MRI'"):
        default_weights_path("MRI")


def test_shipped_weights_deterministic_and_golden():
    """Golden output of the shipped weights on a fixed tiny input.

    Regenerate after retraining with: MDAFUSE_REGENERATE_GOLDEN=1 python -m pytest tests/model/test_weights.py
    """
    model, info = load_model()
    mr, fn = _tiny_input()
    with torch.no_grad():
        a = model(mr, fn)
        b = model(mr, fn)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    summary = {"sha256": info.sha256, "values": [round(float(v), 5) for v in a.flatten()[::37]], "mean": round(float(a.mean()), 6)}
    if os.environ.get("MDAFUSE_REGENERATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(summary, indent=1))
    if not GOLDEN.is_file():
        pytest.fail("golden output missing; regenerate with MDAFUSE_REGENERATE_GOLDEN=1 python -m pytest tests/model/test_weights.py")
    golden = json.loads(GOLDEN.read_text())
    assert golden["sha256"] == info.sha256, "weights changed: regenerate with MDAFUSE_REGENERATE_GOLDEN=1 python -m pytest tests/model/test_weights.py"
    np.testing.assert_allclose(summary["values"], golden["values"], atol=2e-4)
    assert abs(summary["mean"] - golden["mean"]) < 1e-4
