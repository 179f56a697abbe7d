"""``mdafuse train``: unsupervised training on the Harvard training series."""

from __future__ import annotations

import argparse
from pathlib import Path

from mdafuse.data import MODALITY_FOLDERS
from mdafuse.model.config import SKIP_RULES


LOSS_TERMS = {
    "ssim_mr": "1 - SSIM(F, MR)",
    "ssim_functional": "1 - SSIM(F, functional Y)",
    "intensity": "the max-intensity L1 term",
    "gradient": "the max-gradient L1 term",
    "correlation": "2 - CC(F, MR) - CC(F, Y)",
    "fidelity": "(MSE(F, MR) + MSE(F, Y)) / 2",
    "vif": "2 - VIF(MR, F) - VIF(Y, F)",
    "rsfe": "rSFe^2",
    "contrast": "the shortfall of SD(F) below SD(max rule)",
    "mse_cap": "the excess of MSE(F) over the max rule's",
    "entropy": "-EN(F) / 8, soft-histogram entropy in bits",
    "scd": "2 - SCD(F) (sum of correlations of differences)",
}
"""One ``--w-<name>`` option per field of :class:`mdafuse.train.losses.LossWeights`."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the fusion network without ground truth",
        description="Train MdAFuse on the training series of ../shared/data/harvard (split by series, recorded in "
        "mdafuse/splits/harvard_split.json). Writes safetensors checkpoints to --out and can resume. With --export, "
        "writes inference weights plus a model card with held-out validation figures.",
    )
    p.add_argument("--out", type=Path, default=Path("runs/train"), help="folder for checkpoints and loss history")
    p.add_argument("--steps", type=int, default=1200, help="optimiser steps (default 1200)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patch", type=int, default=64, help="square patch size in pixels")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (1 is faster on a busy machine)")
    p.add_argument("--datasets", nargs="+", default=["MR-PET", "MR-SPECT"], choices=list(MODALITY_FOLDERS))
    p.add_argument("--data", default=None, help="shared data folder (default: ../shared/data or $MDAFUSE_DATA)")
    p.add_argument("--resume", type=Path, default=None, help="checkpoint.safetensors to continue from")
    p.add_argument("--export", type=Path, default=None, help="write inference weights here (+ a .json card and a .md model card beside them)")
    p.add_argument("--skip-rule", choices=SKIP_RULES, default="max", help="fixed rule the salient skip copies from: max(MR, Y) or the average (MR + Y) / 2 (default max)")
    p.add_argument("--salient-skip", type=float, default=0.0, help="share g of the output taken from the max rule: F = (1 - g) * decoded + g * max(MR, Y) (default 0, the paper's head)")
    for name, text in LOSS_TERMS.items():
        p.add_argument(f"--w-{name.replace('_', '-')}", type=float, default=None, help=f"weight of {text} (default: LossWeights.{name})")
    p.add_argument("--init", type=Path, default=None, help="start from these inference weights (fine-tuning) instead of random ones")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mdafuse.model.config import MdAFuseConfig
    from mdafuse.train.card import invocation, validate_weights, validation_report, write_model_card
    from mdafuse.train.loop import TrainConfig, export_weights, train
    from mdafuse.train.losses import LossWeights

    overrides = {name: getattr(args, f"w_{name}") for name in LOSS_TERMS if getattr(args, f"w_{name}") is not None}
    cfg = TrainConfig(
        datasets=tuple(args.datasets), data_root=args.data, steps=args.steps, batch_size=args.batch_size,
        patch=args.patch, lr=args.lr, seed=args.seed, threads=args.threads, model=MdAFuseConfig(salient_skip=args.salient_skip, skip_rule=args.skip_rule), losses=LossWeights(**overrides),
        init_weights=None if args.init is None else str(args.init),
    )
    result = train(cfg, args.out, resume=args.resume)
    print(f"trained {cfg.steps} steps in {result.seconds / 60:.1f} min; checkpoint {result.checkpoint}")
    if args.export is not None:
        sha = export_weights(result.model, args.export, args.export.stem, cfg)
        validation = validate_weights(args.export, data_root=args.data)
        card = write_model_card(args.export, sha, cfg, result, validation, invocation(getattr(args, "argv", ["train"])))
        print(f"weights {args.export} (sha256 {sha[:12]}...), model card {card}")
        print(validation_report(validation))
    return 0
