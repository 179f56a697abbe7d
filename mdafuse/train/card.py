"""Validation of trained weights on held-out series and the model card written beside them."""

from __future__ import annotations

import datetime as _dt
import json
import shlex
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mdafuse.data import MODALITY_FOLDERS, load_split, split_pairs
from mdafuse.color import luminance, rgb_to_ycbcr
from mdafuse.fusion.pipeline import Fuser
from mdafuse.io.pair import IMAGE_KIND, load_pair
from mdafuse.model.config import MdAFuseConfig
from mdafuse.model.ensemble import EnsembleConfig
from mdafuse.model.weights import WeightsInfo
from mdafuse.train.loop import TrainConfig, TrainResult
from mdafuse.train.losses import LossWeights, ssim_map

__all__ = ["validate_weights", "write_model_card", "write_ensemble_card", "invocation", "validation_report"]


def validate_weights(weights: str | Path, datasets: tuple[str, ...] = tuple(MODALITY_FOLDERS), data_root: str | None = None) -> dict[str, dict[str, float]]:
    """Held-out figures per dataset: SSIM of fused Y to MR and to functional Y, and a chroma check.

    The chroma check compares Cb/Cr of the fused RGB (after clipping to [0, 1]) with those of the
    functional image, in 8-bit levels: where a new luminance pushes a colour out of the RGB gamut,
    clipping changes its chroma slightly, and this figure says by how much.
    """
    import torch

    fuser = Fuser(weights)
    out: dict[str, dict[str, float]] = {}
    for ds in datasets:
        pairs = split_pairs(ds, "test", data_root)
        s_mr, s_fn, chroma_mean, chroma_p99 = [], [], [], []
        for p in pairs:
            prepared = load_pair(p.mr, p.functional, IMAGE_KIND)
            mr, fn = prepared.mr[0], prepared.functional[0]
            fused = fuser.fuse_slices(prepared.mr, prepared.functional)[0]
            fy, y = luminance(fused), luminance(fn)
            tf, tm, ty = (torch.from_numpy(np.ascontiguousarray(a))[None, None] for a in (fy, mr, y))
            s_mr.append(float(ssim_map(tf, tm).mean()))
            s_fn.append(float(ssim_map(tf, ty).mean()))
            if fn.ndim == 3:
                diff = np.abs(rgb_to_ycbcr(fused)[..., 1:] - rgb_to_ycbcr(fn)[..., 1:]) * 255
                chroma_mean.append(float(diff.mean()))
                chroma_p99.append(float(np.percentile(diff, 99)))
        row = {"pairs": float(len(pairs)), "ssim_fused_mr": float(np.mean(s_mr)), "ssim_fused_functional": float(np.mean(s_fn))}
        if chroma_mean:
            row["chroma_abs_diff_mean_8bit"] = float(np.mean(chroma_mean))
            row["chroma_abs_diff_p99_8bit"] = float(np.mean(chroma_p99))
        out[ds] = row
    return out


def _loss_text(w: LossWeights) -> str:
    terms = [
        (w.ssim_mr, "(1 - SSIM(F, MR))"),
        (w.ssim_functional, "(1 - SSIM(F, Y))"),
        (w.intensity, "|F - max(MR, Y)|_1"),
        (w.gradient, "| |grad F| - max(|grad MR|, |grad Y|) |_1 (Sobel)"),
        (w.correlation, "(2 - CC(F, MR) - CC(F, Y))"),
        (w.fidelity, "(MSE(F, MR) + MSE(F, Y)) / 2"),
        (w.vif, "(2 - VIF(MR, F) - VIF(Y, F))"),
        (w.rsfe, "rSFe^2"),
        (w.contrast, "relu(SD(max) - SD(F)) / SD(max)"),
        (w.mse_cap, "relu(MSE(F) - MSE(max)) / MSE(max)"),
        (w.entropy, "(-EN(F) / 8) (soft histogram)"),
        (w.scd, "(2 - SCD(F))"),
    ]
    return " + ".join(f"{weight:g} {text}" for weight, text in terms if weight)


def _output_text(model: MdAFuseConfig) -> str:
    if model.salient_skip:
        g = model.salient_skip
        ref = "max(MR, Y)" if model.skip_rule == "max" else "(MR + Y) / 2"
        return f"output `F = {1 - g:g} (tanh + 1) / 2 + {g:g} {ref}` (salient skip)"
    return "output tanh mapped to [0, 1]"


def _departure_text(model: MdAFuseConfig) -> str:
    if not model.salient_skip:
        return ""
    if model.skip_rule == "mean":
        return (
            f"; a skip copies a share {model.salient_skip:g} of the output from the average of the two inputs, the image of least "
            "error, so the decoder alone adds contrast and detail (why: `docs/research/README.md`)"
        )
    return (
        f"; a salient skip copies a share {model.salient_skip:g} of the output from the max rule of the two inputs (the paper keeps "
        "salient content with the element-wise maximum in feature space only), so bright uptake and anatomy are kept exactly in "
        "that share (why: `docs/research/README.md`)"
    )


def invocation(argv: list[str]) -> str:
    """The ``mdafuse`` command line that was run (for a card), quoted so that it can be pasted back."""
    return "mdafuse " + " ".join(shlex.quote(a) for a in argv)


def validation_report(validation: dict[str, dict[str, float]]) -> str:
    """One indented line per dataset of :func:`validate_weights`'s figures, for the terminal."""
    return "\n".join(f"  {ds}: " + ", ".join(f"{k}={v:.3f}" for k, v in row.items()) for ds, row in validation.items())


def _validation_lines(validation: dict[str, dict[str, float]]) -> list[str]:
    if not validation:
        return ["## Held-out validation (test series)", "", "Not run for this file.", ""]
    lines = [
        "## Held-out validation (test series)",
        "",
        "| dataset | pairs | SSIM(fused Y, MR) | SSIM(fused Y, functional Y) | chroma |Δ| mean (8-bit) | chroma |Δ| p99 (8-bit) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for ds, row in validation.items():
        cm = row.get("chroma_abs_diff_mean_8bit")
        cp = row.get("chroma_abs_diff_p99_8bit")
        lines.append(
            f"| {ds} | {int(row['pairs'])} | {row['ssim_fused_mr']:.3f} | {row['ssim_fused_functional']:.3f} | "
            f"{'n/a (grey)' if cm is None else f'{cm:.2f}'} | {'n/a' if cp is None else f'{cp:.2f}'} |"
        )
    return lines + ["", "Chroma differences come only from clipping to the RGB gamut after the new luminance; before clipping Cb/Cr are copied exactly.", ""]


def _benchmark_lines() -> list[str]:
    return [
        "## Benchmarks and choices",
        "",
        "- Held-out comparison with the classical baselines on every metric: `benchmarks/results/harvard/` "
        "(`mdafuse benchmark MR-PET -o benchmarks/results/harvard/MR-PET`, same for MR-SPECT).",
        "- How the loss weights were chosen, and how far the 6-of-9 metric target is: `docs/research/README.md`.",
    ]


def _card_head(weights: Path, sha256: str, command: str) -> dict[str, str]:
    """The fields every card starts with; ``sha256`` is the one verified when shipped weights load."""
    return {"weights": weights.name, "sha256": sha256, "version": weights.stem, "date": _dt.date.today().isoformat(), "command": command}


def write_model_card(weights: Path, sha256: str, cfg: TrainConfig, result: TrainResult, validation: dict[str, dict[str, float]], command: str) -> Path:
    """Write ``<weights>.json`` (machine-readable, holds the sha256 verified at load) and ``<weights>.md``."""
    split = load_split()
    n_train = {ds: len(split_pairs(ds, "train", cfg.data_root)) for ds in cfg.datasets}
    card = {
        **_card_head(weights, sha256, command),
        "train_seconds": round(result.seconds, 1),
        "train_pairs": n_train,
        "split": split,
        "train_config": json.loads(cfg.to_json()),
        "model_config": asdict(cfg.model),
        "parameters": sum(p.numel() for p in result.model.parameters()),
        "final_losses": result.history[-1] if result.history else {},
        "validation_test_series": validation,
    }
    card_path = weights.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    train_desc = ", ".join(f"{ds}: {n} pairs (series {', '.join(split[ds]['train'])})" for ds, n in n_train.items())
    lines = [
        f"# Model card: {weights.name}",
        "",
        f"- **Date**: {card['date']}; **sha256**: `{sha256}`; **parameters**: {card['parameters']:,}",
        f"- **Command**: `{command}` ({card['train_seconds'] / 60:.1f} min on the machine that trained it)",
        "- **Data**: Harvard Whole Brain Atlas pairs from `../shared/data/harvard` (MR with PET/SPECT luminance), "
        f"training series only: {train_desc}. "
        "Split by series, never by slice (`mdafuse/splits/harvard_split.json`).",
        f"- **Training**: unsupervised, {cfg.steps} steps of batch {cfg.batch_size}, random {cfg.patch}x{cfg.patch} patches with flips and rotations, "
        f"Adam, cosine learning rate {cfg.lr:g} -> {cfg.lr_final:g}, seed {cfg.seed}"
        + (f", starting from `{Path(cfg.init_weights).name}` (fine-tuning)." if cfg.init_weights else ", from a random initialisation."),
        f"- **Losses** (against both sources only): {_loss_text(cfg.losses)}.",
        "- **Architecture**: CFM (7x7, few channels) + FFM (3x3/1x1, more channels) per image, MFM (strided stem, depthwise-separable "
        "convolutions to 1/4 scale, inverted residual, pyramid pooling, scales summed at full size); CF+FF per image, element-wise maximum "
        f"across modalities for (CF+FF) and MF; learned per-channel affine map; 5x5/3x3 decoder; {_output_text(cfg.model)}.",
        "- **Departures from the paper**: fewer channels (CPU-trainable; see `MdAFuseConfig`); the affine coefficients are per channel "
        "(the release shares them along image width, which ties the model to one width); output `(tanh + 1) / 2` to stay in [0, 1]"
        + _departure_text(cfg.model) + ".",
        "",
    ]
    lines += _validation_lines(validation) + _benchmark_lines()
    lines += ["- Training is deterministic on CPU with one thread: rerunning the command above reproduces these weights bit for bit.", ""]
    md = weights.with_suffix(".md")
    md.write_text("\n".join(lines))
    return md


def write_ensemble_card(
    weights: Path, sha256: str, members: list[WeightsInfo], flip_average: bool, validation: dict[str, dict[str, float]], command: str
) -> Path:
    """Write ``<weights>.json`` and ``<weights>.md`` for an ensemble: its members, their training and the validation.

    Each member's training command is taken from the member's own card (``<member>.json``) when it
    sits beside the member's weights file.
    """
    rows = []
    for info in members:
        member_card = info.path.with_suffix(".json")
        card_json = json.loads(member_card.read_text()) if member_card.is_file() else {}
        rows.append(
            {
                "weights": info.path.name,
                "sha256": info.sha256,
                "version": info.version,
                "command": card_json.get("command"),
                "train_config": json.loads(info.metadata["train_config"]) if "train_config" in info.metadata else None,
                "model_config": asdict(info.config),
            }
        )
    card = {
        **_card_head(weights, sha256, command),
        "flip_average": flip_average,
        "members": rows,
        "split": load_split(),
        "validation_test_series": validation,
    }
    weights.with_suffix(".json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    views = EnsembleConfig(tuple(info.config for info in members), flip_average).views
    lines = [
        f"# Model card: {weights.name}",
        "",
        f"- **Date**: {card['date']}; **sha256**: `{sha256}`",
        f"- **Command**: `{command}`",
        f"- **What it is**: the mean fused luminance of {len(members)} MdAFuse networks"
        + (", each also applied to the pair flipped left-right, up-down and both (outputs flipped back)" if flip_average else "")
        + f": {views} network evaluations per pair. No training of its own; each member is a network trained as its card says. "
        "Why an ensemble: `docs/research/README.md` (ensembles).",
        "",
        "## Members",
        "",
        "| weights | sha256 | output head | training command |",
        "| --- | --- | --- | --- |",
    ]
    for info, row in zip(members, rows):
        lines.append(f"| `{row['weights']}` | `{row['sha256'][:12]}` | {_output_text(info.config)} | `{row['command'] or 'not recorded'}` |")
    lines += [""] + _validation_lines(validation) + _benchmark_lines()
    lines += ["- Each member's training is deterministic on CPU with one thread: rerunning its command reproduces its tensors exactly, and rerunning the command above on them reproduces this file byte for byte.", ""]
    md = weights.with_suffix(".md")
    md.write_text("\n".join(lines))
    return md
