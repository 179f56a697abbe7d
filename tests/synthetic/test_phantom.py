"""Tests of the synthetic longitudinal phantom (mdafuse.synthetic.phantom)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mdafuse.longitudinal.transform import RigidTransform
from mdafuse.synthetic.phantom import LesionSpec, PhantomConfig, TISSUE_SUV, make_longitudinal_phantom


@pytest.fixture(scope="module")
def slice_phantom():
    return make_longitudinal_phantom(timepoints=3, shape=(96, 96), seed=3)


def test_shapes_dtypes_and_ranges(slice_phantom):
    ph = slice_phantom
    assert len(ph.timepoints) == 3
    assert ph.voxel_size_mm == pytest.approx((2.0, 2.0))
    for tp in ph.timepoints:
        assert tp.mr.shape == tp.suv.shape == tp.lesion_labels.shape == (96, 96)
        assert tp.mr.dtype == np.float32 and tp.suv.dtype == np.float32 and tp.lesion_labels.dtype == np.int32
        assert 0.0 <= tp.mr.min() and tp.mr.max() <= 1.0
        assert tp.suv.min() >= 0.0
        assert set(np.unique(tp.lesion_labels)) == {0, 1, 2}
    # Corners are air: MR noise only, SUV exactly 0.
    assert ph.timepoints[0].suv[:4, :4].max() == 0.0
    assert ph.timepoints[0].mr[:4, :4].mean() < 0.05


def test_volume_and_odd_shape():
    ph = make_longitudinal_phantom(timepoints=2, shape=(5, 33, 35), seed=1)
    assert ph.timepoints[1].mr.shape == (5, 33, 35)
    assert len(ph.voxel_size_mm) == 3 and ph.voxel_size_mm[0] == 5.0
    assert ph.timepoints[1].transform.ndim == 3
    assert float(ph.timepoints[1].transform.shift[0]).is_integer()


def test_deterministic_for_seed():
    a = make_longitudinal_phantom(timepoints=2, shape=(64, 64), seed=7)
    b = make_longitudinal_phantom(timepoints=2, shape=(64, 64), seed=7)
    c = make_longitudinal_phantom(timepoints=2, shape=(64, 64), seed=8)
    np.testing.assert_array_equal(a.timepoints[1].suv, b.timepoints[1].suv)
    np.testing.assert_array_equal(a.timepoints[1].mr, b.timepoints[1].mr)
    assert a.timepoints[1].transform == b.timepoints[1].transform
    assert a.timepoints[1].transform != c.timepoints[1].transform


def test_misalignment_bounds_and_identity_baseline(slice_phantom):
    cfg = slice_phantom.config
    assert slice_phantom.timepoints[0].transform == RigidTransform.identity(2)
    for tp in slice_phantom.timepoints[1:]:
        assert abs(tp.angle_deg) <= cfg.max_rotation_deg
        assert all(abs(s) <= cfg.max_shift_vox for s in tp.shift_vox)
        assert abs(tp.angle_deg) > 0.0


def test_truth_follows_lesion_specs(slice_phantom):
    cfg = slice_phantom.config
    for les_id, spec in enumerate(cfg.lesions, start=1):
        for t in range(3):
            row = slice_phantom.truth_for(les_id, t)
            assert row.radius_mm == pytest.approx(spec.radius_mm * (1 + spec.radius_change) ** t, rel=1e-12)
            assert row.nominal_suv == pytest.approx(spec.suv * (1 + spec.suv_change) ** t, rel=1e-12)
            # Area of a digitised disc: pi r^2 within 20 % (2 mm pixels, radii 3-6 pixels).
            assert row.physical_size == pytest.approx(math.pi * row.radius_mm**2, rel=0.2)
            assert row.physical_unit == "mm2"
            # Blur lowers the mean below the nominal value but the peak stays close to it.
            assert 0.6 * row.nominal_suv < row.mean_suv < row.nominal_suv
            assert row.max_suv == pytest.approx(row.nominal_suv, rel=0.05)
    # Growing lesion 1 grows, responding lesion 2 shrinks.
    assert slice_phantom.truth_for(1, 2).volume_voxels > slice_phantom.truth_for(1, 0).volume_voxels
    assert slice_phantom.truth_for(2, 2).volume_voxels < slice_phantom.truth_for(2, 0).volume_voxels
    with pytest.raises(KeyError, match="lesion 9"):
        slice_phantom.truth_for(9, 0)


def test_labels_move_with_the_transform(slice_phantom):
    # Bringing the time point's labels back to the reference frame must land on the truth centroid.
    tp = slice_phantom.timepoints[2]
    back = tp.transform.to_reference(tp.lesion_labels, order=0)
    for les_id in (1, 2):
        truth = slice_phantom.truth_for(les_id, 2)
        centroid = np.argwhere(back == les_id).mean(axis=0)
        np.testing.assert_allclose(centroid, truth.centroid, atol=0.5)


def test_tissue_uptake_levels():
    cfg = PhantomConfig(pet_fwhm_mm=0.0, pet_noise=0.0, mr_noise=0.0, mr_blur_vox=0.0)
    ph = make_longitudinal_phantom(timepoints=1, shape=(128, 128), seed=0, config=cfg)
    values = set(np.round(np.unique(ph.timepoints[0].suv), 6).tolist())
    for name in ("grey", "white", "csf", "air"):
        assert TISSUE_SUV[name] in values
    assert 6.0 <= TISSUE_SUV["grey"] <= 8.0 and 2.0 <= TISSUE_SUV["white"] <= 3.0


def test_transform_inverse_round_trip():
    tr = RigidTransform(3.0, (1.0, -2.5, 1.5))
    pts = np.random.default_rng(0).uniform(0, 30, size=(3, 10))
    back = tr.inverse().apply(tr.apply(pts, (8, 32, 32)), (8, 32, 32))
    np.testing.assert_allclose(back, pts, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"timepoints": 0}, "timepoints"),
        ({"shape": (16, 16)}, "shape"),
        ({"shape": (2, 3, 64, 64)}, "shape"),
    ],
)
def test_bad_input_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_longitudinal_phantom(**kwargs)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="lesion 1: radius_mm"):
        PhantomConfig(lesions=(LesionSpec((0, 0, 0), -1.0, 0.0, 5.0, 0.0),))
    with pytest.raises(ValueError, match="max_shift_vox"):
        PhantomConfig(max_shift_vox=-1.0)


def test_lesions_that_come_and_go():
    """COME_AND_GO_LESIONS: lesion 3 exists from time point 1, lesion 4 only at time point 0."""
    from mdafuse.synthetic.phantom import COME_AND_GO_LESIONS, LesionSpec, PhantomConfig

    ph = make_longitudinal_phantom(timepoints=3, shape=(64, 64), seed=0, config=PhantomConfig(lesions=COME_AND_GO_LESIONS))
    ids = {t: sorted(r.lesion_id for r in ph.truth if r.timepoint == t) for t in range(3)}
    assert ids == {0: [1, 2, 4], 1: [1, 2, 3], 2: [1, 2, 3]}
    for tp in ph.timepoints:
        assert sorted(int(v) for v in np.unique(tp.lesion_labels) if v) == ids[tp.index]
    assert ph.truth_for(3, 1).nominal_suv == 14.0
    with pytest.raises(KeyError):
        ph.truth_for(4, 1)
    default = make_longitudinal_phantom(timepoints=2, shape=(64, 64), seed=0)
    assert [(r.lesion_id, r.timepoint) for r in default.truth] == [(1, 0), (2, 0), (1, 1), (2, 1)]
    bad = LesionSpec(center_mm=(0.0, 0.0, 0.0), radius_mm=5.0, radius_change=0.0, suv=10.0, suv_change=0.0, appear_at=2, disappear_at=2)
    with pytest.raises(ValueError, match="need 0 <= appear_at < disappear_at"):
        PhantomConfig(lesions=(bad,))
