"""``mdafuse fuse``: fuse one MR/functional pair, or every pair of a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

_FUNCTIONAL_DIRS = ("PET", "SPECT", "CT", "NM", "functional")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fuse",
        help="fuse MR with PET/SPECT images",
        description="Fuse an MR image with a PET/SPECT (or CT) image of the same slice. Colour functional images are "
        "fused in YCbCr (the network fuses MR with Y, the functional Cb/Cr are kept). "
        "Examples: `mdafuse fuse MR.png PET.png -o fused.png`; folder mode: `mdafuse fuse --pairs DIR -o OUTDIR` where "
        "DIR holds MR/ and one of PET/, SPECT/, CT/ with matching file names.",
    )
    p.add_argument("mr", nargs="?", type=Path, help="MR image (PNG, JPEG or TIFF)")
    p.add_argument("functional", nargs="?", type=Path, help="PET/SPECT/CT image of the same slice")
    p.add_argument("-o", "--out", type=Path, required=True, help="output image (single pair) or folder (--pairs)")
    p.add_argument("--pairs", type=Path, default=None, help="folder with MR/ and PET/ (or SPECT/, CT/) sub-folders")
    p.add_argument("--weights", type=Path, default=None, help="safetensors weights (default: the shipped model)")
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

    fuser = Fuser(args.weights, args.device)
    if args.pairs is None:
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

    mr_dir = args.pairs / "MR"
    fn_dir = next((args.pairs / d for d in _FUNCTIONAL_DIRS if (args.pairs / d).is_dir()), None)
    if not mr_dir.is_dir() or fn_dir is None:
        raise FileNotFoundError(f"{args.pairs}: expected sub-folders MR/ and one of {', '.join(_FUNCTIONAL_DIRS)}")
    names = sorted(p.name for p in mr_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff") and (fn_dir / p.name).is_file())
    if not names:
        raise FileNotFoundError(f"{args.pairs}: no file name appears in both {mr_dir.name}/ and {fn_dir.name}/")
    failed = 0
    for name in tqdm(names, desc="fuse", unit="pair"):
        try:
            mr, fn = read_pair(mr_dir / name, fn_dir / name, resample=args.resample)
            fused = fuser.fuse(mr, fn)
            write_image(args.out / Path(name).with_suffix(".png"), fused)
            if args.enhance:
                write_image(args.out / (Path(name).stem + "_enhanced.png"), _enhance(fused, fn))
        except ValueError as exc:
            failed += 1
            print(f"skipped {name}: {exc}")
    print(f"fused {len(names) - failed} of {len(names)} pairs into {args.out}")
    return 1 if failed else 0
