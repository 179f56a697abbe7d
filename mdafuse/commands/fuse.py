"""``mdafuse fuse``: fuse one MR/functional pair (2-D images or volumes), or every 2-D pair of a folder.

Every form runs the per-pair steps the cohort job runs: :func:`mdafuse.io.pair.load_pair` (read,
resample, window), :meth:`mdafuse.fusion.pipeline.Fuser.fuse_slices` (fuse), optionally
:func:`mdafuse.scoring.score_slices` (``--score``) and :mod:`mdafuse.io.encode` (write).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mdafuse.modality import FUNCTIONAL_MODALITIES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fuse",
        help="fuse MR with PET/SPECT images or volumes",
        description="Fuse an MR image with a PET/SPECT (or CT) image of the same slice, or an MR volume with a PET/SPECT "
        "volume (DICOM series folders or NIfTI files; the functional volume is resampled onto the MR grid and windowed, "
        "PET in SUV 0..8 when the header allows). Colour functional images are fused in YCbCr (the network fuses MR with "
        "Y, the functional Cb/Cr are kept). Examples: `mdafuse fuse MR.png PET.png -o fused.png`; volumes: "
        "`mdafuse fuse MR_DIR PT_DIR -o OUTDIR --enhance --score` writes OUTDIR/fused.nii.gz; folder mode: "
        "`mdafuse fuse --pairs DIR -o OUTDIR` where DIR holds MR/ and one of PET/, SPECT/, PT/, CT/, NM/ with matching file names.",
    )
    p.add_argument("mr", nargs="?", type=Path, help="MR image (PNG, JPEG, TIFF), DICOM series folder or NIfTI file")
    p.add_argument("functional", nargs="?", type=Path, help="PET/SPECT/CT image of the same slice, or a volume of the same subject")
    p.add_argument("-o", "--out", type=Path, required=True, help="output image (2-D pair), output folder (volumes, --pairs)")
    p.add_argument("--pairs", type=Path, default=None, help="folder with MR/ and PET/ (or SPECT/, CT/) sub-folders of 2-D images")
    p.add_argument("--weights", default=None, help="safetensors weights or a shipped name (default: the shipped model for --modality)")
    p.add_argument(
        "--modality",
        type=str.upper,
        choices=FUNCTIONAL_MODALITIES,
        default=None,
        help="functional modality; picks the shipped weights (SPECT has its own, PET and CT share the default). "
        "Default: the functional folder's name with --pairs (SPECT/ or NM/ -> SPECT), otherwise the default weights",
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--batch-size", type=int, default=8, help="slices per network call for volumes (default 8)")
    p.add_argument("--resample", action="store_true", help="2-D: resize the functional image to the MR size when they differ")
    p.add_argument("--enhance", action="store_true", help="also write the energy-enhanced image (<name>_enhanced.png, enhanced.nii.gz)")
    p.add_argument("--slice-images", choices=("brain", "all", "none"), default="none", help="volumes: also write PNG slices (default none)")
    p.add_argument("--score", action="store_true", help="print the 13 fusion metrics (volumes: mean over the brain slices)")
    p.add_argument("--dicom", action="store_true", help="volumes: also write the fused volume as a derived DICOM series in OUT/dicom/ (de-identified; the MR must be a DICOM series)")
    p.add_argument("--keep-identity", action="store_true", help="with --dicom: keep the source patient module (name, ID, birth date)")
    p.set_defaults(func=run)


def _enhance_stack(fused: np.ndarray, functional: np.ndarray) -> np.ndarray:
    from mdafuse.fusion.enhance import enhance

    return np.stack([enhance(f, g) for f, g in zip(fused, functional)])


def _print_scores(prepared, fused: np.ndarray) -> None:
    from mdafuse.scoring import pair_means, score_slices

    idx = prepared.score_slices
    means = pair_means(score_slices(prepared.mr[idx], prepared.functional[idx], fused[idx]))
    print(json.dumps({"n_scored": int(idx.size), **{k: round(v, 6) for k, v in means.items()}}))


def _fuse_volume(args: argparse.Namespace, fuser) -> int:
    from mdafuse.io.encode import nifti_rgb_bytes, png_bytes
    from mdafuse.io.pair import VOLUME_KIND, load_pair

    prepared = load_pair(args.mr, args.functional, VOLUME_KIND, slice_images=args.slice_images, keep_dicom_source=args.dicom)
    if args.dicom and prepared.dicom_source is None:
        raise ValueError(f"--dicom needs the MR as a DICOM series; {args.mr} is not one")
    fused = fuser.fuse_slices(prepared.mr, prepared.functional, batch_size=args.batch_size)
    outputs = {"fused": fused}
    if args.enhance:
        outputs["enhanced"] = _enhance_stack(fused, prepared.functional)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, stack in outputs.items():
        (args.out / f"{name}.nii.gz").write_bytes(nifti_rgb_bytes(stack, prepared.affine))
        for z in prepared.image_slices:
            (args.out / f"{name}_{int(z):03d}.png").write_bytes(png_bytes(stack[z]))
    if args.dicom:
        from mdafuse.io.derived import write_derived_dicom

        files = write_derived_dicom(fused, prepared.dicom_source, args.out / "dicom", deidentify=not args.keep_identity)
        print(f"derived DICOM series ({len(files)} files, {'source identity kept' if args.keep_identity else 'de-identified'}) written to {args.out / 'dicom'}")
    for note in prepared.warnings:
        print(f"note: {note}")
    print(f"fused volume ({prepared.n_slices} slices) written to {args.out / 'fused.nii.gz'}")
    if args.score:
        _print_scores(prepared, fused)
    return 0


def run(args: argparse.Namespace) -> int:
    from mdafuse.cohort import pair_kind
    from mdafuse.fusion.pipeline import Fuser
    from mdafuse.io.images import read_pair, write_image
    from mdafuse.io.pair import IMAGE_KIND, PreparedPair

    if args.pairs is None:
        if args.mr is None or args.functional is None:
            raise ValueError("give MR and functional images (or volumes), or --pairs DIR")
        fuser = Fuser(args.weights, args.device, args.modality)
        if pair_kind(str(args.mr)) != IMAGE_KIND:
            return _fuse_volume(args, fuser)
        mr, fn = read_pair(args.mr, args.functional, resample=args.resample)
        fused = fuser.fuse_slices(mr[None], fn[None])[0]
        write_image(args.out, fused)
        print(f"fused image written to {args.out}")
        if args.enhance:
            enhanced_path = args.out.with_name(args.out.stem + "_enhanced" + args.out.suffix)
            write_image(enhanced_path, _enhance_stack(fused[None], fn[None])[0])
            print(f"enhanced image written to {enhanced_path}")
        if args.score:
            one = np.zeros(1, dtype=np.int64)
            _print_scores(PreparedPair(mr[None], fn[None], one, one), fused[None])
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
            fused = fuser.fuse_slices(mr[None], fn[None])[0]
            write_image(args.out / Path(name).with_suffix(".png"), fused)
            if args.enhance:
                write_image(args.out / (Path(name).stem + "_enhanced.png"), _enhance_stack(fused[None], fn[None])[0])
        except ValueError as exc:
            failed += 1
            print(f"skipped {name}: {exc}")
    print(f"fused {len(pairs) - failed} of {len(pairs)} pairs into {args.out}")
    return 1 if failed else 0
