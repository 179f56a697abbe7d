"""Thread-pool sizing shared by the cohort jobs and the benchmark's worker processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["THREAD_ENV_VARS", "thread_env", "threads_for_children"]

#: Variables that size the OpenMP/BLAS pools; read once, when a process first loads numpy or torch.
THREAD_ENV_VARS: tuple[str, ...] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """Environment of a worker holding ``threads`` CPUs: OpenMP/BLAS pools sized to its share."""
    n = str(max(1, int(threads)))
    return {k: n for k in THREAD_ENV_VARS}


@contextmanager
def threads_for_children(threads: int) -> Iterator[None]:
    """Set this process's thread variables to ``threads`` inside the block, then restore them.

    For processes started inside the block: their pools are sized when they first import numpy or
    torch, from the environment they inherit.
    """
    saved = {k: os.environ.get(k) for k in THREAD_ENV_VARS}
    os.environ.update(thread_env(threads))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
