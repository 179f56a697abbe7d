"""Training on real pairs: split by series, checkpoints, exact resume."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from mdafuse.data import load_split, split_pairs
from mdafuse.model.config import MdAFuseConfig
from mdafuse.train.loop import TrainConfig, train

TINY = MdAFuseConfig(cfm_channels=(2, 4), ffm_channels=(8, 8), mfm_stem=8, mfm_channels=8, features=4, decoder_channels=(4,))


def _cfg(root, steps):
    return TrainConfig(datasets=("MR-PET",), data_root=str(root), steps=steps, batch_size=2, patch=32, limit_pairs=6,
                       log_every=1, checkpoint_every=2, model=TINY, threads=1)


def test_split_is_by_series_and_disjoint(harvard_root):
    split = load_split()
    for ds, parts in split.items():
        assert not set(parts["train"]) & set(parts["test"]), ds
        train = split_pairs(ds, "train", harvard_root.parent)
        test = split_pairs(ds, "test", harvard_root.parent)
        assert train and test
        assert {p.series for p in train}.isdisjoint({p.series for p in test})


def test_resume_reproduces_an_uninterrupted_run(harvard_root, tmp_path):
    straight = train(_cfg(harvard_root.parent, 4), tmp_path / "a", progress=False)
    train(_cfg(harvard_root.parent, 4), tmp_path / "b", progress=False, stop_at=2)
    resumed = train(_cfg(harvard_root.parent, 4), tmp_path / "b", resume=tmp_path / "b" / "checkpoint.safetensors", progress=False)
    for (k, v1), v2 in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(v1, v2, rtol=0, atol=1e-6, msg=k)
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4]
    ckpt = load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    assert any(k.startswith("optim.") for k in ckpt) and any(k.startswith("model.") for k in ckpt)
    assert json.loads((tmp_path / "b" / "history.json").read_text())[-1]["step"] == 4
    assert all(torch.isfinite(torch.tensor(h["total"])) for h in straight.history)


def test_fine_tuning_starts_from_given_weights(harvard_root, tmp_path):
    from mdafuse.model.weights import save_weights

    first = train(_cfg(harvard_root.parent, 2), tmp_path / "a", progress=False)
    save_weights(first.model, tmp_path / "w.safetensors", "w")
    cfg = _cfg(harvard_root.parent, 1)
    zero_lr = replace(cfg, lr=0.0, lr_final=0.0, init_weights=str(tmp_path / "w.safetensors"))
    tuned = train(zero_lr, tmp_path / "b", progress=False)
    # with a zero learning rate only BatchNorm running statistics may move
    for (k, v1), v2 in zip(first.model.state_dict().items(), tuned.model.state_dict().values()):
        if "running" not in k and "num_batches" not in k:
            torch.testing.assert_close(v1, v2, rtol=0, atol=0, msg=k)
    # a different salient_skip has no parameters of its own: the same tensors fit
    skip = train(replace(zero_lr, model=replace(zero_lr.model, salient_skip=0.25)), tmp_path / "d", progress=False)
    assert skip.model.config.salient_skip == 0.25
    for (k, v1), v2 in zip(first.model.state_dict().items(), skip.model.state_dict().values()):
        if "running" not in k and "num_batches" not in k:
            torch.testing.assert_close(v1, v2, rtol=0, atol=0, msg=k)
    other = replace(zero_lr, model=MdAFuseConfig())
    with pytest.raises(ValueError, match="does not fit the configured"):
        train(other, tmp_path / "c", progress=False)


def test_model_card_records_the_recipe(harvard_root, tmp_path):
    from mdafuse.model.weights import save_weights
    from mdafuse.train.card import write_model_card
    from mdafuse.train.losses import LossWeights

    cfg = replace(_cfg(harvard_root.parent, 1), losses=LossWeights(vif=0.0, rsfe=20.0, entropy=4.0), init_weights=str(tmp_path / "base.safetensors"))
    result = train(replace(cfg, init_weights=None), tmp_path / "run", progress=False)
    weights = tmp_path / "tuned.safetensors"
    sha = save_weights(result.model, weights, "tuned")
    validation = {"MR-PET": {"pairs": 3.0, "ssim_fused_mr": 0.9, "ssim_fused_functional": 0.5}}
    md = write_model_card(weights, sha, cfg, result, validation, "mdafuse train ...")
    assert md == tmp_path / "tuned.md"
    text = md.read_text()
    assert "starting from `base.safetensors` (fine-tuning)" in text
    assert "20 rSFe^2" in text and "4 (-EN(F) / 8)" in text and "VIF" not in text
    assert "output tanh mapped to [0, 1]" in text and "salient skip" not in text
    skip_cfg = replace(cfg, model=replace(cfg.model, salient_skip=0.4))
    text = write_model_card(weights, sha, skip_cfg, result, validation, "mdafuse train ...").read_text()
    assert "output `F = 0.6 (tanh + 1) / 2 + 0.4 max(MR, Y)` (salient skip)" in text
    mean_cfg = replace(cfg, model=replace(cfg.model, salient_skip=0.3, skip_rule="mean"))
    text = write_model_card(weights, sha, mean_cfg, result, validation, "mdafuse train ...").read_text()
    assert "output `F = 0.7 (tanh + 1) / 2 + 0.3 (MR + Y) / 2` (salient skip)" in text and "from the average of the two inputs" in text
    assert json.loads(weights.with_suffix(".json").read_text())["sha256"] == sha
