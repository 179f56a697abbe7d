"""Ensembles of networks: the mean of the members' outputs, over flips when asked; saving and loading."""

from __future__ import annotations

import json

import pytest
import torch

from mdafuse.cli import main
from mdafuse.model.config import MdAFuseConfig
from mdafuse.model.ensemble import EnsembleConfig, MdAFuseEnsemble
from mdafuse.model.network import MdAFuseNet
from mdafuse.model.weights import file_sha256, load_model, save_ensemble, save_weights


def _members(n: int = 2) -> list[MdAFuseNet]:
    nets = []
    for seed in range(n):
        torch.manual_seed(seed)
        cfg = MdAFuseConfig(salient_skip=0.3, skip_rule="mean") if seed % 2 else MdAFuseConfig(salient_skip=0.5)
        nets.append(MdAFuseNet(cfg).eval())
    return nets


def _pair(h: int = 20, w: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.rand(2, 1, h, w, generator=g), torch.rand(2, 1, h, w, generator=g)


def _ensemble(members: list[MdAFuseNet], flip_average: bool) -> MdAFuseEnsemble:
    ens = MdAFuseEnsemble(EnsembleConfig(tuple(m.config for m in members), flip_average)).eval()
    for target, source in zip(ens.members, members):
        target.load_state_dict(source.state_dict())
    return ens


@torch.no_grad()
def test_mean_of_members():
    members = _members(3)
    mr, fn = _pair()
    expected = sum(m(mr, fn) for m in members) / 3
    torch.testing.assert_close(_ensemble(members, False)(mr, fn), expected, rtol=0, atol=1e-6)
    # one member without flips is that member, bit for bit
    torch.testing.assert_close(_ensemble(members[:1], False)(mr, fn), members[0](mr, fn), rtol=0, atol=0)


@torch.no_grad()
def test_flip_average_is_mean_over_flipped_views_and_flip_equivariant():
    members = _members(2)
    ens = _ensemble(members, True)
    mr, fn = _pair()
    views = [m(mr.flip(d), fn.flip(d)).flip(d) if d else m(mr, fn) for m in members for d in ((), (-1,), (-2,), (-2, -1))]
    out = ens(mr, fn)
    torch.testing.assert_close(out, sum(views) / 8, rtol=0, atol=1e-6)
    # the flip average commutes with flips, which no single member does
    torch.testing.assert_close(ens(mr.flip(-1), fn.flip(-1)), out.flip(-1), rtol=0, atol=1e-5)
    torch.testing.assert_close(ens(mr.flip(-2), fn.flip(-2)), out.flip(-2), rtol=0, atol=1e-5)
    single = members[0](mr.flip(-1), fn.flip(-1)).flip(-1)
    assert (single - members[0](mr, fn)).abs().max() > 1e-4
    assert ens.config.views == 8 and 0 <= float(out.min()) and float(out.max()) <= 1


def test_config_json_round_trip_and_validation():
    cfg = EnsembleConfig((MdAFuseConfig(salient_skip=0.5), MdAFuseConfig(salient_skip=0.3, skip_rule="mean")), flip_average=True)
    assert EnsembleConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleConfig(())
    with pytest.raises(TypeError, match="do not nest"):
        EnsembleConfig((cfg,))  # type: ignore[arg-type]


@torch.no_grad()
def test_save_and_load_round_trip(tmp_path):
    members = _members(2)
    path = tmp_path / "ens.safetensors"
    sha = save_ensemble(members, path, "ens_test", flip_average=True)
    model, info = load_model(path, expected_sha256=sha)
    assert isinstance(model, MdAFuseEnsemble) and not model.training
    assert info.sha256 == sha == file_sha256(path) and info.version == "ens_test"
    assert info.config == EnsembleConfig(tuple(m.config for m in members), True)
    mr, fn = _pair()
    torch.testing.assert_close(model(mr, fn), _ensemble(members, True)(mr, fn), rtol=0, atol=0)
    assert save_ensemble(members, tmp_path / "again" / "ens.safetensors", "ens_test", flip_average=True) == sha
    with pytest.raises(TypeError, match="single MdAFuseNet"):
        save_ensemble([model], tmp_path / "nested.safetensors", "x")


def test_training_cannot_start_from_an_ensemble(tmp_path):
    from mdafuse.train.loop import TrainConfig, train

    path = tmp_path / "ens.safetensors"
    save_ensemble(_members(2), path, "ens")
    cfg = TrainConfig(datasets=("MR-PET",), steps=1, init_weights=str(path))
    with pytest.raises(ValueError, match="ens.safetensors: an ensemble of 2 networks"):
        train(cfg, tmp_path / "run", progress=False)


def test_ensemble_command_writes_weights_and_cards(tmp_path, capsys):
    paths = []
    for i, net in enumerate(_members(2)):
        paths.append(tmp_path / f"m{i}.safetensors")
        save_weights(net, paths[-1], f"m{i}")
    (tmp_path / "m0.json").write_text(json.dumps({"command": "mdafuse train --seed 0"}))
    out = tmp_path / "both.safetensors"
    assert main(["ensemble", str(paths[0]), str(paths[1]), "--flip-average", "--validate", "--out", str(out)]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["sha256"] == file_sha256(out) and card["flip_average"] is True
    assert [m["weights"] for m in card["members"]] == ["m0.safetensors", "m1.safetensors"]
    assert card["members"][0]["command"] == "mdafuse train --seed 0" and card["members"][1]["command"] is None
    assert [m["sha256"] for m in card["members"]] == [file_sha256(p) for p in paths]
    md = out.with_suffix(".md").read_text()
    assert "mean fused luminance of 2 MdAFuse networks" in md and "8 network evaluations per pair" in md
    assert "0.7 (tanh + 1) / 2 + 0.3 (MR + Y) / 2" in md and "`mdafuse train --seed 0`" in md
    # an ensemble is not a member, and the output name is checked
    assert main(["ensemble", str(out), "--validate", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "already an ensemble" in capsys.readouterr().err
    assert main(["ensemble", str(paths[0]), "--validate", "--out", str(tmp_path / "x.pt")]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err
