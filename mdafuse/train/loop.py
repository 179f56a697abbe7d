"""Unsupervised training loop with safetensors checkpoints and resume."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mdafuse.data import split_pairs
from mdafuse.model.config import MdAFuseConfig
from mdafuse.model.network import MdAFuseNet
from mdafuse.model.weights import load_model, read_metadata, save_weights
from mdafuse.train.data import PatchSampler, load_pairs
from mdafuse.train.losses import LossWeights, fusion_loss

__all__ = ["TrainConfig", "TrainResult", "train", "export_weights"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (the model's own shape lives in ``model``)."""

    datasets: tuple[str, ...] = ("MR-PET", "MR-SPECT")
    data_root: str | None = None
    limit_pairs: int | None = None
    steps: int = 1200
    batch_size: int = 8
    patch: int = 64
    lr: float = 2e-3
    lr_final: float = 1e-4
    seed: int = 0
    threads: int = 2
    log_every: int = 50
    checkpoint_every: int = 250
    model: MdAFuseConfig = field(default_factory=MdAFuseConfig)
    losses: LossWeights = field(default_factory=LossWeights)
    init_weights: str | None = None
    """Inference weights (safetensors) to start from instead of a random initialisation (fine-tuning)."""

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps(d, sort_keys=True)


@dataclass
class TrainResult:
    model: MdAFuseNet
    history: list[dict[str, float]]
    seconds: float
    checkpoint: Path | None


def _lr_at(cfg: TrainConfig, step: int) -> float:
    # Cosine decay from lr to lr_final over the run.
    t = min(step / max(cfg.steps, 1), 1.0)
    return cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + np.cos(np.pi * t))


def _save_checkpoint(path: Path, model: MdAFuseNet, opt: torch.optim.Optimizer, step: int, cfg: TrainConfig, history: list[dict[str, float]]) -> None:
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        for name, val in opt.state.get(p, {}).items():
            if torch.is_tensor(val):
                # safetensors stores no 0-d tensors: Adam's scalar step is kept as shape (1,)
                tensors[f"optim.{i}.{name}"] = val.detach().contiguous() if val.ndim else val.detach().reshape(1)
    meta = {"step": str(step), "train_config": cfg.to_json(), "model_config": model.config.to_json(), "history": json.dumps(history)}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def _load_checkpoint(path: Path, model: MdAFuseNet, opt: torch.optim.Optimizer) -> tuple[int, list[dict[str, float]]]:
    meta = read_metadata(path)
    if "step" not in meta:
        raise ValueError(f"{path}: not an mdafuse training checkpoint (no step metadata)")
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    params = [p for g in opt.param_groups for p in g["params"]]
    for key, val in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            p = params[int(idx)]
            opt.state[p][name] = val.reshape(()) if name == "step" else val
    return int(meta["step"]), json.loads(meta.get("history", "[]"))


def train(cfg: TrainConfig, out_dir: str | Path, resume: str | Path | None = None, progress: bool = True, stop_at: int | None = None) -> TrainResult:
    """Train on the training series of the recorded split; checkpoints go to ``out_dir``.

    The split is by series (``mdafuse/splits/harvard_split.json``), never by slice. ``stop_at``
    ends the run early (with a checkpoint) as an interruption would; ``resume`` continues it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    model = MdAFuseNet(cfg.model)
    if cfg.init_weights is not None:
        start_model, _ = load_model(cfg.init_weights)
        if not isinstance(start_model, MdAFuseNet):
            raise ValueError(f"{cfg.init_weights}: an ensemble of {len(start_model.members)} networks; start training from one member's weights file")
        try:
            # a head setting without parameters (salient_skip) may differ; every tensor must match
            model.load_state_dict(start_model.state_dict(), strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{cfg.init_weights}: its network {start_model.config} does not fit the configured {cfg.model}: {exc}") from exc
    pairs = [p for ds in cfg.datasets for p in split_pairs(ds, "train", cfg.data_root)]
    if cfg.limit_pairs is not None:
        pairs = pairs[:: max(1, len(pairs) // cfg.limit_pairs)][: cfg.limit_pairs]
    data = load_pairs(pairs)
    log.info("training on %d pairs from %s", len(pairs), ", ".join(cfg.datasets))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start, history = 0, []
    if resume is not None:
        start, history = _load_checkpoint(Path(resume), model, opt)
        log.info("resumed from %s at step %d", resume, start)
    sampler = PatchSampler(data, cfg.patch, seed=cfg.seed)
    model.train()
    t0 = time.perf_counter()
    ckpt = None
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    iterator = range(start, end)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, initial=start, total=cfg.steps, desc="train", unit="step")
    running: dict[str, float] = {}
    for step in iterator:
        for g in opt.param_groups:
            g["lr"] = _lr_at(cfg, step)
        mr, fn = sampler.batch(cfg.batch_size, step)
        fused = model(mr, fn)
        loss, terms = fusion_loss(fused, mr, fn, cfg.losses)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for k, v in terms.items():
            running[k] = running.get(k, 0.0) + v
        if (step + 1) % cfg.log_every == 0:
            row = {"step": step + 1, **{k: v / cfg.log_every for k, v in running.items()}}
            history.append(row)
            running = {}
            log.info("step %d %s", step + 1, " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "step"))
            if progress:
                iterator.set_postfix(loss=f"{row['total']:.3f}")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == end:
            ckpt = out_dir / "checkpoint.safetensors"
            _save_checkpoint(ckpt, model, opt, step + 1, cfg, history)
    model.eval()
    seconds = time.perf_counter() - t0
    (out_dir / "history.json").write_text(json.dumps(history, indent=1))
    return TrainResult(model=model, history=history, seconds=seconds, checkpoint=ckpt)



def export_weights(model: MdAFuseNet, path: str | Path, version: str, cfg: TrainConfig) -> str:
    """Write inference weights (BN statistics included) and return their sha256."""
    return save_weights(model, path, version, extra={"train_config": cfg.to_json()})
