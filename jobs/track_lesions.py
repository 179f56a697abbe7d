"""Entry point of the lesion-tracking job: ``python -m jobs.track_lesions --help``.

Thin on purpose: the job lives in :mod:`mdafuse.jobs.track_lesions` (``mdafuse track COHORT``
calls the same code).
"""

import sys

from mdafuse.jobs.track_lesions import build_parser, main, run

__all__ = ["build_parser", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())
