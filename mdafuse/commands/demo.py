"""``mdafuse demo-cohort``: write a small synthetic MR + FDG PET DICOM cohort."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Write a synthetic DICOM cohort to OUT: per subject and session an MR series (16 slices of
128x128 at 1.5 mm) and an F-18 FDG PET series (12 slices of 64x64 at 3 mm, Bq/ml with SUV
header attributes) sharing a study and frame of reference, rendered from the longitudinal brain
phantom (two lesions changing over time). Layout: OUT/sub-001/ses-01/{MR,PT}/*.dcm, plus
OUT/manifest.csv (subject, session, mr, pet; paths relative to OUT) and OUT/truth.csv (lesion
truth). Patient names, IDs and birth dates are made up; the output is deterministic per --seed.

With --bids the same phantom is written as a BIDS-PET dataset instead: per session
anat/*_T1w.nii.gz and a 6-frame dynamic FDG pet/*_trc-FDG_pet.nii.gz (Bq/mL) with its _pet.json
sidecar, participants.tsv (sex, weight, height) and sessions.tsv; the PET is acquired with the head
moved by a few degrees and millimetres (truth_registration.csv), as on a second scanner, so
`mdafuse run OUT` registers it to the MR."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo-cohort",
        help="write a small synthetic MR + PET DICOM cohort with a manifest",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", metavar="OUT", type=Path, help="output folder (created)")
    p.add_argument("--subjects", type=int, default=3, metavar="N", help="number of subjects (default: 3)")
    p.add_argument("--timepoints", type=int, default=2, metavar="T", help="sessions per subject (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--come-and-go", action="store_true", help="also a lesion that appears at the second time point and one that is gone by then (for new/resolved lesions in tracking)")
    p.add_argument("--bids", action="store_true", help="write a BIDS-PET dataset (NIfTI + sidecars) instead of DICOM")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    if args.bids:
        from mdafuse.synthetic.demo_bids import write_demo_bids

        root = write_demo_bids(args.out, subjects=args.subjects, timepoints=args.timepoints, seed=args.seed)
        print(f"wrote {args.subjects} subjects x {args.timepoints} sessions of T1w + dynamic FDG PET as BIDS under {root}")
        return 0
    from mdafuse.synthetic.demo_cohort import write_demo_cohort

    manifest = write_demo_cohort(args.out, subjects=args.subjects, timepoints=args.timepoints, seed=args.seed, come_and_go=args.come_and_go)
    print(f"wrote {args.subjects} subjects x {args.timepoints} sessions of MR + PT DICOM; manifest {manifest}")
    return 0
