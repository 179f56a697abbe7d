"""``mdafuse run``: fuse a whole cohort on Ray, in this process (the job of ``python -m jobs.fuse_cohort``).

The options are the job's own (:func:`mdafuse.jobs.fuse_cohort.add_arguments`), so the two
commands cannot drift apart.
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    from mdafuse.jobs import fuse_cohort

    p = subparsers.add_parser(
        "run",
        help="fuse every MR/PET pair of a cohort on Ray (images, metrics table, summary)",
        description=fuse_cohort.DESCRIPTION,
        epilog=fuse_cohort.EPILOG.replace("python -m jobs.fuse_cohort", "mdafuse run"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fuse_cohort.add_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import logging

    from mdafuse.jobs.fuse_cohort import run_from_args

    if args.quiet:
        logging.getLogger().setLevel(logging.WARNING)
    elif not args.verbose:
        logging.getLogger("mdafuse").setLevel(logging.INFO)
    return run_from_args(args)
