"""Entry point of the cohort fusion job: ``python -m jobs.fuse_cohort --help``.

Thin on purpose: the job lives in :mod:`mdafuse.jobs.fuse_cohort` (``mdafuse run`` calls the same
code). This script is what ``ray job submit -- python -m jobs.fuse_cohort ...`` and the KubeRay
RayJob start; run it from the repository root or with the root on ``PYTHONPATH`` (the image sets it).
"""

import sys

from mdafuse.jobs.fuse_cohort import build_parser, main, run

__all__ = ["build_parser", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())
