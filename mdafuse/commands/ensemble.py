"""``mdafuse ensemble``: join trained networks into one weights file whose output is their mean."""

from __future__ import annotations

import argparse
from pathlib import Path

from mdafuse.data import MODALITY_FOLDERS

__all__ = ["register"]

DATASETS = tuple(MODALITY_FOLDERS)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ensemble",
        help="join trained weights files into one ensemble (mean fused image), with a model card",
        description=(
            "Write one safetensors file holding every MEMBER network; fusing with it returns the mean of the members' "
            "fused luminance (with --flip-average, also over the pair flipped left-right, up-down and both). "
            "Beside it go a .json card (sha256 checked at load, members and their training commands) and a .md "
            "model card with held-out validation figures. Use it wherever weights are accepted (--weights)."
        ),
        epilog="example: mdafuse ensemble runs/a/w.safetensors runs/b/w.safetensors --flip-average --out mdafuse/weights/my_ensemble.safetensors",
    )
    p.add_argument("members", nargs="+", type=Path, metavar="MEMBER", help="weights files of single trained networks")
    p.add_argument("--out", type=Path, required=True, help="ensemble weights file to write (.safetensors)")
    p.add_argument("--flip-average", action="store_true", help="also average over the three flips of each pair (4x the compute)")
    p.add_argument(
        "--validate", nargs="*", default=list(DATASETS), choices=DATASETS, metavar="DATASET",
        help="test series to validate on for the card (default: all three; none to skip)",
    )
    p.add_argument("--data", default=None, help="shared data folder for the card's validation (default: ../shared/data or $MDAFUSE_DATA)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mdafuse.model.network import MdAFuseNet
    from mdafuse.model.weights import load_model, save_ensemble
    from mdafuse.train.card import invocation, validate_weights, validation_report, write_ensemble_card

    if args.out.suffix != ".safetensors":
        raise ValueError(f"{args.out}: the ensemble file must end in .safetensors")
    loaded = [load_model(m) for m in args.members]
    for path, (model, info) in zip(args.members, loaded):
        if not isinstance(model, MdAFuseNet):
            raise ValueError(f"{path}: already an ensemble ({info.version}); list its members instead")
    sha = save_ensemble([m for m, _ in loaded], args.out, args.out.stem, flip_average=args.flip_average)
    validation = validate_weights(args.out, tuple(args.validate), data_root=args.data) if args.validate else {}
    command = invocation(getattr(args, "argv", ["ensemble"]))
    card = write_ensemble_card(args.out, sha, [info for _, info in loaded], args.flip_average, validation, command)
    print(f"ensemble of {len(loaded)} networks {args.out} (sha256 {sha[:12]}...), model card {card}")
    if validation:
        print(validation_report(validation))
    return 0
