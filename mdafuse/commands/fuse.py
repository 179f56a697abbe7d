"""``mdafuse fuse``: fuse one MR/functional pair, or every pair of a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from mdafuse.modality import FUNCTIONAL_MODALITIES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fuse",
        help="fuse MR with PET/SPECT images",
        description="Fuse an MR image with a PET/SPECT (or CT) image of the same slice. Colour functional images are "
        "fused in YCbCr (the network fuses MR with Y, the functional Cb/Cr are kept). "
        "Examples: `mdafuse fuse MR.png PET.png -o fused.png`; folder mode: `mdafuse fuse --pairs DIR -o OUTDIR` where "
        "DIR holds MR/ and one of PET/, SPECT/, PT/, CT/, NM/ with matching file names.",
    )
    p.add_argument("mr", nargs="?", type=Path, help="MR image (PNG, JPEG or TIFF)")
    p.add_argument("functional", nargs="?", type=Path, help="PET/SPECT/CT image of the same slice")
    p.add_argument("-o", "--out", type=Path, required=True, help="output image (single pair) or folder (--pairs)")
    p.add_argument("--pairs", type=Path, default=None, help="folder with MR/ and PET/ (or SPECT/, CT/) sub-folders")
    p.add_argument("--weights", type=Path, default=None, help="safetensors weights (default: the shipped model for --modality)")
    p.add_argument(
        "--modality",
        type=str.upper,
        choices=FUNCTIONAL_MODALITIES,
        default=None,
        help="functional modality; picks the shipped weights (SPECT has its own, PET and CT share the default). "
        "Default: the functional folder's name with --pairs (SPECT/ or NM/ -> SPECT), otherwise the default weights",
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--resample", action="store_true", help="resize the functional image to the MR size when they differ")
    p.add_argument("--enhance", action="store_true", help="also write the energy-enhanced image (<name>_enhanced.png)")
    p.set_defaults(func=run)


def _enhance(fused, functional):
    from mdafuse.fusion.enhance import enhance

    return enhance(fused, functional)


def run(args: argparse.Namespace) -> int:
    from mdafuse.fusion.pipeline import Fuser
    from mdafuse.io.images import read_pair, write_image

    if args.pairs is None:
        fuser = Fuser(args.weights, args.device, args.modality)
        if args.mr is None or args.functional is None:
            raise ValueError("give MR and functional images, or --pairs DIR")
        mr, fn = read_pair(args.mr, args.functional, resample=args.resample)
        fused = fuser.fuse(mr, fn)
        write_image(args.out, fused)
        print(f"fused image written to {args.out}")
        if args.enhance:
            enhanced_path = args.out.with_name(args.out.stem + "_enhanced" + args.out.suffix)
            write_image(enhanced_path, _enhance(fused, fn))
            print(f"enhanced image written to {enhanced_path}")
        return 0
    from tqdm import tqdm

    from mdafuse.cohort import image_pair_paths

    pairs = [(mr_path, fn_path) for mr_path, fn_path in image_pair_paths(args.pairs) if fn_path is not None]
    if not pairs:
        raise FileNotFoundError(f"{args.pairs}: no file name appears in both MR/ and the functional folder")
    fuser = Fuser(args.weights, args.device, args.modality or pairs[0][1].parent.name)
    failed = 0
    for mr_path, fn_path in tqdm(pairs, desc="fuse", unit="pair"):
        name = mr_path.name
        try:
            mr, fn = read_pair(mr_path, fn_path, resample=args.resample)
            fused = fuser.fuse(mr, fn)
            write_image(args.out / Path(name).with_suffix(".png"), fused)
            if args.enhance:
                write_image(args.out / (Path(name).stem + "_enhanced.png"), _enhance(fused, fn))
        except ValueError as exc:
            failed += 1
            print(f"skipped {name}: {exc}")
    print(f"fused {len(pairs) - failed} of {len(pairs)} pairs into {args.out}")
    return 1 if failed else 0
