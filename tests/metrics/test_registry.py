"""Registry, compute_all, input validation, colour handling and a real Harvard pair."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mdafuse.color import luminance
from mdafuse.metrics import METRICS, SEED_METRICS, MetricSpec, compute_all, cc, mi, ssim

ALL = ["EN", "MI", "SD", "VIF", "SSIM", "SCD", "CC", "MSE", "rSFe", "Qabf", "SF", "AG", "PSNR"]


@pytest.fixture
def triple() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 45, 47)).astype(np.float32)
    return a, b, 0.5 * (a + b)


def test_registry_keys_and_directions() -> None:
    assert list(METRICS) == ALL
    assert SEED_METRICS == ["EN", "MI", "SD", "VIF", "SSIM", "SCD", "CC", "MSE", "rSFe"]
    assert METRICS["MSE"].better == "lower" and METRICS["MSE"].higher_is_better is False
    assert METRICS["rSFe"].better == "abs_lower" and METRICS["rSFe"].higher_is_better is None
    assert all(METRICS[k].higher_is_better is True for k in ALL if k not in ("MSE", "rSFe"))
    assert all(s.name == k and s.description for k, s in METRICS.items())
    with pytest.raises(ValueError, match="better must be one of"):
        MetricSpec("X", cc, "bigger", "")


def test_compute_all_matches_functions_and_subset(triple) -> None:
    a, b, f = triple
    res = compute_all(a, b, f)
    assert list(res) == ALL
    assert all(isinstance(v, float) and math.isfinite(v) for v in res.values())
    for k in ALL:
        assert res[k] == pytest.approx(METRICS[k].func(a, b, f), rel=1e-12, abs=1e-15)
    sub = compute_all(a, b, f, names=["SSIM", "EN"])
    assert list(sub) == ["SSIM", "EN"]
    with pytest.raises(ValueError, match="unknown metric name"):
        compute_all(a, b, f, names=["EN", "QABF"])


def test_float32_and_float64_agree(triple) -> None:
    a, b, f = triple
    r32 = compute_all(a, b, f)
    r64 = compute_all(a.astype(np.float64), b.astype(np.float64), f.astype(np.float64))
    for k in ALL:
        assert r32[k] == pytest.approx(r64[k], rel=1e-6, abs=1e-9)


def test_colour_input_equals_luminance_input() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((45, 45))
    b_rgb = rng.random((45, 45, 3)).astype(np.float32)
    f_rgb = np.clip(0.5 * (a[..., None] + b_rgb), 0, 1).astype(np.float32)
    res_rgb = compute_all(a, b_rgb, f_rgb)
    res_y = compute_all(a, luminance(b_rgb), luminance(f_rgb))
    for k in ALL:
        assert res_rgb[k] == pytest.approx(res_y[k], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    "case, exc, match",
    [
        ("shape", ValueError, r"f must have the same \(H, W\) as a"),
        ("nan", ValueError, "b must hold finite values"),
        ("range", ValueError, r"a must have values in \[0, 1\]"),
        ("uint8", TypeError, "f must be a float32/float64 array"),
        ("ndim", ValueError, r"b must have shape \(H, W\) or \(H, W, 3\)"),
    ],
)
def test_bad_inputs_raise(case: str, exc: type, match: str) -> None:
    a = np.full((16, 16), 0.5)
    b = a.copy()
    f = a.copy()
    if case == "shape":
        f = np.full((16, 15), 0.5)
    elif case == "nan":
        b[3, 3] = np.nan
    elif case == "range":
        a[0, 0] = 1.5
    elif case == "uint8":
        f = np.full((16, 16), 128, dtype=np.uint8)
    elif case == "ndim":
        b = np.full((2, 16, 16), 0.5)
    for func in (compute_all, mi, ssim):
        with pytest.raises(exc, match=match):
            func(a, b, f)


def test_real_harvard_pair(harvard_root) -> None:
    from scipy.ndimage import gaussian_filter

    from mdafuse.data import harvard_pairs
    from mdafuse.io.images import read_image

    pair = harvard_pairs("MR-PET", harvard_root)[0]
    mr = luminance(read_image(pair.mr))
    fn = read_image(pair.functional)
    f_avg = 0.5 * (mr + luminance(fn))
    res = compute_all(mr, fn, f_avg)
    ranges = {
        "EN": (0.5, 8.0), "MI": (0.1, 16.0), "SD": (1.0, 128.0), "VIF": (0.05, 2.0), "SSIM": (0.2, 2.0),
        "SCD": (-2.0, 2.0), "CC": (0.0, 1.0), "MSE": (1e-5, 0.5), "rSFe": (-1.0, 1.0), "Qabf": (0.05, 0.98),
        "SF": (0.5, 100.0), "AG": (0.1, 60.0), "PSNR": (3.0, 50.0),
    }  # fmt: skip
    for k, (lo, hi) in ranges.items():
        assert lo < res[k] < hi, f"{k}={res[k]} outside ({lo}, {hi})"
    blurred = compute_all(mr, fn, gaussian_filter(f_avg, 2.0), names=["SSIM", "Qabf", "rSFe"])
    assert blurred["SSIM"] < res["SSIM"]
    assert blurred["Qabf"] < res["Qabf"]
    assert blurred["rSFe"] < res["rSFe"]
