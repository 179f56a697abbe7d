"""Thread-pool sizing shared by the cohort jobs and the benchmark's worker processes."""

from __future__ import annotations

__all__ = ["THREAD_ENV_VARS", "thread_env"]

#: Variables that size the OpenMP/BLAS pools; read once, when a process first loads numpy or torch.
THREAD_ENV_VARS: tuple[str, ...] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """Environment of a worker holding ``threads`` CPUs: OpenMP/BLAS pools sized to its share."""
    n = str(max(1, int(threads)))
    return {k: n for k in THREAD_ENV_VARS}
