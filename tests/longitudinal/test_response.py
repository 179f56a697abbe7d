"""Response measures (mdafuse.longitudinal.response): LBM/SUL, SUVpeak sphere, PERCIST category."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mdafuse.longitudinal.response import (
    RESPONSES,
    ResponseConfig,
    lean_body_mass_kg,
    percist_response,
    sphere_offsets,
    sul_factor,
    suv_peak,
)


def test_lean_body_mass_reference_values():
    """Janmahasatian (2005) by hand (2026-12-01, pen and paper checked with a calculator):

    male 70 kg, 1.75 m: BMI = 70 / 1.75^2 = 22.857143; LBM = 9270 * 70 / (6680 + 216 * 22.857143)
    = 648900 / 11617.143 = 55.8571 kg. Female 60 kg, 1.65 m: BMI = 22.038567;
    LBM = 556200 / (8780 + 244 * 22.038567) = 556200 / 14157.410 = 39.2868 kg.
    """
    assert lean_body_mass_kg(70.0, 1.75, "M") == pytest.approx(55.8571, abs=1e-4)
    assert lean_body_mass_kg(60.0, 1.65, "f") == pytest.approx(39.2868, abs=1e-4)
    factor, note = sul_factor(70.0, 1.75, "M")
    assert factor == pytest.approx(55.8571 / 70.0, abs=1e-6) and note == ""


def test_lean_body_mass_is_below_weight_and_grows_with_height():
    heights = [1.5, 1.6, 1.7, 1.8, 1.9]
    for sex in ("M", "F"):
        lbm = [lean_body_mass_kg(80.0, h, sex) for h in heights]
        assert all(0 < x < 80.0 for x in lbm)
        assert lbm == sorted(lbm)
    assert lean_body_mass_kg(80.0, 1.8, "M") > lean_body_mass_kg(80.0, 1.8, "F")


def test_lean_body_mass_bad_input():
    with pytest.raises(ValueError, match="sex must be 'M' or 'F'"):
        lean_body_mass_kg(70.0, 1.75, "O")
    with pytest.raises(ValueError, match="weight_kg must be a positive number"):
        lean_body_mass_kg(0.0, 1.75, "M")
    with pytest.raises(ValueError, match="height_m must be a positive number"):
        lean_body_mass_kg(70.0, float("nan"), "M")


def test_sul_factor_says_what_is_missing():
    factor, note = sul_factor(70.0, None, "M")
    assert math.isnan(factor) and note == "no height: SUL not computed"
    factor, note = sul_factor(70.0, None, None)
    assert math.isnan(factor) and note == "no height/sex: SUL not computed"
    factor, note = sul_factor(None, 1.7, "F")
    assert math.isnan(factor) and note == "no weight: SUL not computed"


def test_sphere_offsets_hold_one_millilitre():
    for voxel in ((1.0, 1.0, 1.0), (1.5, 1.5, 1.5), (3.0, 2.0, 2.0)):
        off = sphere_offsets(voxel)
        assert off.shape[1] == 3
        assert (off == 0).all(axis=1).any()
        assert {tuple(o) for o in off} == {tuple(-o) for o in off}  # symmetric
        volume_ml = len(off) * float(np.prod(voxel)) / 1000.0
        assert 0.85 < volume_ml < 1.15
    assert len(sphere_offsets((1.0, 1.0, 1.0))) == 1021  # lattice points with |p| <= 6.2035 (see the brute-force test)
    assert sphere_offsets((1.0, 1.0)).shape == (121, 2)  # central disc of the sphere
    with pytest.raises(ValueError, match="voxel_size_mm must hold 2 or 3 positive values"):
        sphere_offsets((1.0, 0.0, 1.0))


def test_sphere_offsets_count_by_brute_force():
    radius = (3000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    n = sum(1 for z in range(-7, 8) for y in range(-7, 8) for x in range(-7, 8) if z * z + y * y + x * x <= radius**2)
    assert len(sphere_offsets((1.0, 1.0, 1.0))) == n


def _ball(shape, centre, radius_vox):
    grid = np.indices(shape, dtype=np.float64)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius_vox**2


def test_suv_peak_of_a_uniform_sphere_is_its_value():
    shape = (33, 35, 37)
    inside = _ball(shape, (16, 17, 18), 12.0)
    suv = np.where(inside, 6.0, 1.0).astype(np.float32)
    peak = suv_peak(suv, inside, (1.0, 1.0, 1.0))
    assert peak.value == pytest.approx(6.0, abs=1e-12)
    assert not peak.truncated and peak.n_voxels == peak.n_inside == 1021
    assert peak.centre == (16, 17, 18)  # among equally hot voxels, the one nearest the centroid


def test_suv_peak_of_one_hot_voxel_is_diluted_over_the_sphere():
    suv = np.ones((21, 21, 21), np.float32)
    suv[10, 10, 10] = 1022.0
    mask = suv > 1
    peak = suv_peak(suv, mask, (1.0, 1.0, 1.0))
    assert peak.value == pytest.approx((1022.0 + 1020 * 1.0) / 1021, abs=1e-9)  # = 2: one hot voxel among 1021
    anisotropic = suv_peak(suv, mask, (2.0, 1.0, 1.0))
    assert anisotropic.n_voxels == len(sphere_offsets((2.0, 1.0, 1.0)))
    assert anisotropic.value == pytest.approx(1.0 + 1021.0 / anisotropic.n_voxels, abs=1e-9)


def test_suv_peak_on_the_image_edge_uses_the_voxels_inside():
    suv = np.full((15, 15, 15), 4.0, np.float32)
    suv[0, 0, 0] = 5.0
    mask = np.zeros(suv.shape, bool)
    mask[0, :2, :2] = True
    peak = suv_peak(suv, mask, (1.0, 1.0, 1.0))
    assert peak.truncated and peak.n_inside < peak.n_voxels
    assert peak.value == pytest.approx((5.0 + 4.0 * (peak.n_inside - 1)) / peak.n_inside, abs=1e-9)
    with pytest.raises(ValueError, match="mask is empty"):
        suv_peak(suv, np.zeros(suv.shape, bool), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="mask must have the suv shape"):
        suv_peak(suv, mask[:-1], (1.0, 1.0, 1.0))


@pytest.mark.parametrize(
    ("base", "follow", "new", "expected"),
    [
        ({1: 10.0}, {1: 6.5}, 0, "PMR"),  # -35 %, -3.5
        ({1: 10.0}, {1: 7.0}, 0, "PMR"),  # exactly -30 %, -3.0: the threshold is inclusive
        ({1: 2.0}, {1: 1.3}, 0, "SMD"),  # -35 % but only -0.7 units
        ({1: 10.0}, {1: 8.0}, 0, "SMD"),  # -20 %
        ({1: 10.0}, {1: 13.5}, 0, "PMD"),  # +35 %, +3.5
        ({1: 2.0}, {1: 2.7}, 0, "SMD"),  # +35 % but only +0.7 units
        ({1: 10.0}, {1: 5.0, 2: 3.0}, 1, "PMD"),  # a new lesion wins over a falling peak
        ({1: 10.0, 2: 4.0}, {}, 0, "CMR"),  # nothing left above background
        ({}, {}, 0, "NE"),
        ({}, {2: 5.0}, 1, "PMD"),
    ],
)
def test_percist_constructed_cases(base, follow, new, expected):
    category, reason, _ = percist_response(base, follow, new)
    assert category == expected and category in RESPONSES
    assert reason


def test_percist_compares_the_hottest_lesions():
    category, reason, d = percist_response({1: 10.0, 2: 4.0}, {2: 14.0}, 0)
    assert category == "PMD" and reason == "peak +40.0 % (+4.00)"
    assert (d["baseline_track_id"], d["followup_track_id"]) == (1, 2)
    assert d["peak_change"] == pytest.approx(4.0, abs=1e-12) and d["peak_change_pct"] == pytest.approx(40.0, abs=1e-9)


def test_percist_thresholds_are_configurable_and_checked():
    strict = ResponseConfig(pmr_change_pct=-50.0, min_abs_change=0.0)
    assert percist_response({1: 10.0}, {1: 6.5}, 0, strict)[0] == "SMD"
    assert percist_response({1: 2.0}, {1: 0.9}, 0, strict)[0] == "PMR"
    with pytest.raises(ValueError, match="pmr_change_pct < 0 < pmd_change_pct"):
        ResponseConfig(pmr_change_pct=10.0)
    with pytest.raises(ValueError, match="peak_volume_ml must be > 0"):
        ResponseConfig(peak_volume_ml=0.0)
    with pytest.raises(ValueError, match="new_lesions must be >= 0"):
        percist_response({}, {}, -1)
