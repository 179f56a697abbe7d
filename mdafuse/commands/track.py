"""``mdafuse track``: longitudinal lesion tracking for one subject, the synthetic phantom, or a cohort.

Cohort mode: ``mdafuse track COHORT --out URI`` where COHORT is a manifest (``.csv``/``.parquet``,
local or ``s3://``) or a DICOM tree, and URI a folder or ``s3://bucket/prefix``, runs the Ray
lesion-tracking job (:mod:`mdafuse.jobs.track_lesions`, the code behind ``python -m
jobs.track_lesions``) in this process, with the job's own options; see docs/cohort-job.md. A folder is taken as a
cohort when it holds ``manifest.csv``/``manifest.parquet`` or no time-point sub-folder with
``mr.nii.gz``/``mr.png``; ``--cohort`` forces cohort mode.

Subject folder layout: one sub-folder per time point, processed in name order (the first is the
baseline), e.g. ``SUBJECT/0_baseline/``, ``SUBJECT/1_followup/``. Each holds either

* ``mr.nii.gz`` (or ``mr.nii``) and ``pet.nii.gz`` / ``suv.nii.gz``: volumes on the same grid; PET
  values are taken as SUV; voxel sizes come from the header; or
* ``mr.png`` and ``pet.png`` (or ``spect.png``): one slice each; the PET/SPECT image (luminance if
  colour) is multiplied by ``--png-suv-scale`` to give SUV-like units (default 15: white = SUV 15);
  sizes are reported in pixels unless ``--pixel-mm`` is given.

The figure fuses MR with the uptake image using the shipped weights of its modality: SPECT when a
time point holds ``spect.png`` or ``--modality SPECT`` is given, PET otherwise (``--weights``
overrides both). In cohort mode each subject's modality comes from the pair table (DICOM PT/NM
partner, folder name or manifest column) unless ``--modality`` fixes one.

Writes ``lesions.parquet``, ``lesions.csv`` and ``tracking.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


__all__ = ["register", "load_subject", "subject_modality", "is_cohort"]

_SUBJECT_FILES = ("mr.nii.gz", "mr.nii", "mr.png")
#: job options that mean nothing for one subject folder or the phantom
_COHORT_ONLY = ("run_id", "cohort_name", "workers", "s3_endpoint", "address")


def is_cohort(location: str, force: bool = False) -> bool:
    """True when ``location`` is a cohort (manifest, ``s3://`` or DICOM tree) rather than one subject folder."""
    text = str(location)
    if force or text.startswith("s3://") or text.lower().endswith((".csv", ".parquet", ".pq")):
        return True
    root = Path(text)
    if not root.is_dir():
        return False
    if (root / "manifest.csv").is_file() or (root / "manifest.parquet").is_file():
        return True
    return not any(sub.is_dir() and any((sub / n).is_file() for n in _SUBJECT_FILES) for sub in root.iterdir())


def _first(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def load_subject(subject_dir: str | Path, png_suv_scale: float = 15.0, pixel_mm: float | None = None) -> list:
    """Read a subject folder (layout in the module docstring) as a list of ``TimepointInput``.

    Raises:
        FileNotFoundError: the folder or a time point's files are missing.
        ValueError: fewer than two time points.
    """
    from mdafuse.color import luminance
    from mdafuse.io.images import read_image
    from mdafuse.longitudinal.track import TimepointInput

    root = Path(subject_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: subject folder not found")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    out = []
    for folder in folders:
        mr_nii = _first(folder, ("mr.nii.gz", "mr.nii"))
        pet_nii = _first(folder, ("pet.nii.gz", "pet.nii", "suv.nii.gz", "suv.nii"))
        mr_png = _first(folder, ("mr.png",))
        pet_png = _first(folder, ("pet.png", "spect.png", "suv.png"))
        if mr_nii and pet_nii:
            from mdafuse.io.nifti import read_nifti

            mr_vol, pet_vol = read_nifti(mr_nii), read_nifti(pet_nii)
            out.append(TimepointInput(mr_vol.data, pet_vol.data, folder.name, mr_vol.spacing))
        elif mr_png and pet_png:
            mr = luminance(read_image(mr_png))
            pet = luminance(read_image(pet_png)) * np.float32(png_suv_scale)
            voxel = (pixel_mm, pixel_mm) if pixel_mm else None
            out.append(TimepointInput(mr, pet, folder.name, voxel))
        else:
            raise FileNotFoundError(f"{folder}: expected mr.nii.gz + pet.nii.gz (or suv.nii.gz), or mr.png + pet.png")
    if len(out) < 2:
        raise ValueError(f"{root}: need at least 2 time-point folders; found {len(out)}")
    return out


def subject_modality(subject_dir: str | Path) -> str | None:
    """``"SPECT"`` when a time-point folder of the subject holds ``spect.png``, else None (PET's weights)."""
    root = Path(subject_dir)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return "SPECT" if any((f / "spect.png").is_file() and not (f / "pet.png").is_file() for f in folders) else None


def _handler(args: argparse.Namespace) -> int:
    from mdafuse.longitudinal.report import write_report
    from mdafuse.longitudinal.segmentation import SegmentationConfig
    from mdafuse.longitudinal.track import TimepointInput, TrackConfig, track_subject

    if bool(args.phantom) == bool(args.subject_dir):
        raise ValueError("give either SUBJECT_DIR (or COHORT) or --phantom (not both)")
    if not args.phantom and (args.cohort or str(args.out).startswith("s3://") or is_cohort(args.subject_dir)):
        from mdafuse.jobs.track_lesions import run_from_args

        args.cohort = str(args.subject_dir)
        return run_from_args(args)
    if any(getattr(args, name, None) is not None for name in _COHORT_ONLY):
        raise ValueError("--" + "/--".join(n.replace("_", "-") for n in _COHORT_ONLY) + " apply to a COHORT only")
    if args.phantom:
        from mdafuse.synthetic.phantom import make_longitudinal_phantom

        ph = make_longitudinal_phantom(timepoints=args.timepoints, shape=tuple(args.shape), seed=args.seed)
        tps = [TimepointInput(tp.mr, tp.suv, f"t{tp.index}", ph.voxel_size_mm) for tp in ph.timepoints]
        subject = "phantom"
    else:
        tps = load_subject(args.subject_dir, args.png_suv_scale, args.pixel_mm)
        subject = args.subject or Path(args.subject_dir).name
    modality = args.modality or (None if args.phantom else subject_modality(args.subject_dir))
    fwhm = args.psf_fwhm_mm if args.psf_fwhm_mm is not None else (ph.config.pet_fwhm_mm if args.phantom else None)
    cfg = TrackConfig(
        subject=subject, fuse=not args.no_fuse, fusion_weights=args.weights, fusion_modality=modality, device=args.device,
        segmentation=SegmentationConfig(psf_fwhm_mm=fwhm),
    )
    res = write_report(track_subject(tps, cfg), tps, cfg, Path(args.out))
    if args.phantom:
        for tp, tr in zip(ph.timepoints[1:], res.transforms[1:]):
            print(f"t{tp.index}: true angle {tp.angle_deg:+.2f} deg shift {tuple(round(s, 2) for s in tp.shift_vox)}; "
                  f"recovered {tr.angle_deg:+.2f} deg {tuple(round(s, 2) for s in tr.shift)}")
    for row in res.table.to_pylist():
        print(f"lesion {row['track_id']} {row['timepoint_label']}: size {row['size']:.4g} {row['size_unit']} "
              f"({row['size_change_pct']:+.1f} %), mean SUV {row['mean_suv']:.3g} ({row['mean_suv_change_pct']:+.1f} %)")
    print(f"wrote {res.parquet_path}, {res.csv_path}, {res.figure_path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``track`` sub-command."""
    p = subparsers.add_parser(
        "track",
        help="track lesions of one subject over time (register, segment, match, report)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from mdafuse.jobs.track_lesions import add_arguments

    p.add_argument("subject_dir", nargs="?", metavar="SUBJECT_DIR|COHORT", help="folder with one sub-folder per time point (see layout above), or a cohort manifest/DICOM tree")
    p.add_argument("--phantom", action="store_true", help="run on the synthetic longitudinal phantom instead")
    p.add_argument("-o", "--out", required=True, help="output folder (cohort mode: folder or s3://bucket/prefix)")
    p.add_argument("--cohort", action="store_true", help="treat the location as a cohort and run the Ray tracking job")
    p.add_argument("--subject", help="subject key for the table (default: folder name); never a patient name")
    p.add_argument("--timepoints", type=int, default=3, help="phantom time points (default 3)")
    p.add_argument("--shape", type=int, nargs="+", default=[24, 128, 128], help="phantom shape Z Y X or Y X")
    p.add_argument("--png-suv-scale", type=float, default=15.0, help="SUV of a white PNG PET pixel (default 15)")
    p.add_argument("--pixel-mm", type=float, help="pixel size of PNG inputs in mm")
    p.add_argument("--device", default="cpu", help="torch device for fusion (default cpu)")
    # the cohort job's options (one subject uses --weights, --modality, --no-fuse and --seed of the phantom)
    add_arguments(p.add_argument_group("cohort mode (the Ray tracking job) and shared options"), cohort_positional=False)
    p.set_defaults(func=_handler)
