"""Fixtures of the HTML QA report tests: a local Ray (2 CPUs), shared with the job tests when they ran first."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """``ray.init(num_cpus=2)`` unless Ray already runs in this process; shut down only when started here."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()
