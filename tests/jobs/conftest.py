"""Fixtures of the Ray job tests: one local Ray (2 CPUs) per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """``ray.init(num_cpus=2)`` once for the whole test session."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
