"""``mdafuse run``: fuse a whole cohort on Ray (wraps ``python -m jobs.fuse_cohort``).

The library never imports ``jobs/``: this command starts the job module in a child Python
process with the same interpreter and passes the options through.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

__all__ = ["register", "job_command"]


_PASS_THROUGH: list[tuple[str, type, str]] = [
    ("--batch-size", int, "slices per network call for volumes"),
    ("--num-gpus-per-worker", float, "GPUs per fusion actor (0: CPU)"),
    ("--cpus-per-worker", float, "CPUs per fusion actor (fractional is fine)"),
    ("--weights", str, "safetensors weights (default: shipped)"),
    ("--modality", str, "functional modality PET, SPECT or CT: picks the shipped weights (SPECT has its own)"),
    ("--s3-endpoint", str, "S3 endpoint URL"),
    ("--address", str, "Ray cluster address"),
    ("--limit", int, "process only the first N pairs"),
]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="fuse every MR/PET pair of a cohort on Ray (images, metrics table, summary)",
        description=(
            "Run the cohort job (python -m jobs.fuse_cohort) on COHORT: a manifest (.csv/.parquet with subject, "
            "session, mr, pet; local or s3://), a DICOM tree, or a folder with MR/ and PET/ 2-D pairs. Without COHORT "
            "a synthetic demo cohort is processed. Results go under --out (folder or s3://bucket/prefix); rerunning "
            "with the same --run-id resumes. Options after COHORT are passed to the job unchanged; see "
            "`python -m jobs.fuse_cohort --help` for all of them."
        ),
        epilog="example: mdafuse run manifest.csv --out s3://bucket/fusion --run-id r1 --workers 4",
    )
    p.add_argument("cohort", nargs="?", metavar="COHORT", help="manifest, DICOM folder or 2-D pair folder (omit for the demo)")
    p.add_argument("--out", metavar="URI", help="output root (default ./mdafuse-demo for the demo)")
    p.add_argument("--run-id", metavar="ID", help="run id; reuse it to resume")
    p.add_argument("--cohort-name", metavar="NAME", help="cohort partition name")
    p.add_argument("--workers", type=int, metavar="N", help="fusion actors")
    p.add_argument("--smoke-test", action="store_true", help="tiny run (2 pairs, 1 worker)")
    for flag, kind, text in _PASS_THROUGH:
        p.add_argument(flag, type=kind, default=None, help=text)
    p.add_argument("job_args", nargs=argparse.REMAINDER, help="further jobs.fuse_cohort options after COHORT, e.g. --slice-images all")
    p.set_defaults(func=_run)


def job_command(args: argparse.Namespace) -> list[str]:
    """The child command line for parsed ``args``."""
    cmd = [sys.executable, "-m", "jobs.fuse_cohort"]
    if args.cohort:
        cmd.append(args.cohort)
    for flag, value in (("--out", args.out), ("--run-id", args.run_id), ("--cohort-name", args.cohort_name), ("--workers", args.workers)):
        if value is not None:
            cmd += [flag, str(value)]
    for flag, _, _ in _PASS_THROUGH:
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            cmd += [flag, str(value)]
    if args.smoke_test:
        cmd.append("--smoke-test")
    extra = list(args.job_args or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return cmd + extra


def _run(args: argparse.Namespace) -> int:
    return subprocess.call(job_command(args))
