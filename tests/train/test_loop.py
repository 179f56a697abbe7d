"""Training on real pairs: split by series, checkpoints, exact resume."""

from __future__ import annotations

import json

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
