"""Tracking on real glioblastoma anatomy with synthetic PET (benchmarks/tumor_progression.py).

Two patients keep this fast: 03 (compact tumour, growing) and 06 (shrinking multi-part tumour,
where a weak peak once annexed the main tumour's blurred tail and turned -27 % into +8 %).
Tolerances, two-sided: tracked volume within 15 % of the mask at both time points (measured
6-7 % and 10-11 %), the change within 10 percentage points of the masks' change (measured 0.1 pp
and 0.1 pp) and of the same sign. The full benchmark reports all 11 patients.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "tumor_progression.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("tumor_progression", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["tumor_progression"] = module  # dataclasses look their module up while executing
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("tumor_progression", None)


@pytest.mark.parametrize("patient", ["03", "06"])
def test_tracked_volume_follows_mask(tumor_root, bench, patient):
    folder = tumor_root / patient
    if not folder.is_dir():
        pytest.skip(f"{folder} is missing")
    r = bench.run_patient(folder)
    assert r.mask_pre > 1000 and r.mask_post > 1000
    assert r.error_pre_pct < 15.0
    assert r.error_post_pct < 15.0
    assert abs(r.tracked_change_pct - r.mask_change_pct) < 10.0
    assert np.sign(r.tracked_change_pct) == np.sign(r.mask_change_pct)
    # The collection is distributed co-registered, but head positions differ by a few degrees
    # (NCC rises from 0.70-0.81 to 0.82-0.92 with the rotation); the registration must improve it.
    assert abs(r.angle_deg) < 6.0
    assert r.ncc_after > r.ncc_before + 0.02


def test_synthetic_pet_model(bench):
    import numpy as np

    mr = np.zeros((3, 40, 40), np.float32)
    mr[:, 5:35, 5:35] = 100.0
    mask = np.zeros_like(mr)
    mask[1, 15:25, 15:25] = 1
    pet = bench.synthesize_pet(mr, mask, pixel_mm=1.0, slice_mm=5.0, seed=0)
    assert pet.shape == mr.shape and pet.min() >= 0
    # Brain far from the tumour sits at 2 * (0.75 + 0.5) = 2.5; the tumour centre is lifted towards 6.
    assert pet[1, 8, 8] == pytest.approx(2.5, abs=0.4)
    assert 4.0 < pet[1, 20, 20] < 6.5
    assert pet[1, 0, 0] < 0.5
