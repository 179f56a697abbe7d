"""Tests of longitudinal lesion tracking (mdafuse.longitudinal) on the synthetic phantom."""

from __future__ import annotations

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mdafuse.longitudinal.registration import ncc, register_rigid
from mdafuse.longitudinal.segmentation import SegmentationConfig, segment_lesions
from mdafuse.longitudinal.report import write_report
from mdafuse.longitudinal.track import TimepointInput, TrackConfig, track_subject
from mdafuse.longitudinal.transform import RigidTransform
from mdafuse.synthetic.phantom import make_longitudinal_phantom
from tests.geometry import to_moving


def _inputs(ph):
    return [TimepointInput(tp.mr, tp.suv, f"t{tp.index}", ph.voxel_size_mm) for tp in ph.timepoints]


def _rows_by_truth(table, ph):
    """Map each truth lesion id to its track's rows (nearest baseline centroid)."""
    rows = table.to_pylist()
    base = [r for r in rows if r["timepoint"] == 0]
    out = {}
    for les_id in {t.lesion_id for t in ph.truth}:
        c = np.asarray(ph.truth_for(les_id, 0).centroid)
        best = min(base, key=lambda r: np.linalg.norm(np.array([r["centroid_y"], r["centroid_x"]]) - c[-2:]))
        out[les_id] = {r["timepoint"]: r for r in rows if r["track_id"] == best["track_id"]}
    return out


@pytest.fixture(scope="module")
def slice_result():
    ph = make_longitudinal_phantom(timepoints=3, shape=(128, 128), seed=1)
    return ph, track_subject(_inputs(ph), TrackConfig(subject="phantom"))


def test_misalignment_recovered(slice_result):
    ph, res = slice_result
    assert res.transforms[0] == RigidTransform.identity(2)
    for tp, tr in zip(ph.timepoints[1:], res.transforms[1:]):
        assert abs(tr.angle_deg - tp.angle_deg) < 1.0
        np.testing.assert_allclose(tr.shift, tp.shift_vox, atol=1.0)
    for reg in res.registrations[1:]:
        assert reg.ncc_after > reg.ncc_before


def test_lesion_changes_match_truth(slice_result):
    ph, res = slice_result
    assert res.table.num_rows == 6
    tracks = _rows_by_truth(res.table, ph)
    assert len({rows[0]["track_id"] for rows in tracks.values()}) == 2
    for les_id, rows in tracks.items():
        t0 = ph.truth_for(les_id, 0)
        for t in (1, 2):
            truth = ph.truth_for(les_id, t)
            row = rows[t]
            assert row["present"] and row["size_unit"] == "mm2"
            true_ratio = truth.physical_size / t0.physical_size
            measured_ratio = row["size"] / rows[0]["size"]
            assert measured_ratio == pytest.approx(true_ratio, rel=0.10)
            assert row["size_change_pct"] == pytest.approx(100 * (measured_ratio - 1), abs=1e-9)
            true_suv_ratio = truth.mean_suv / t0.mean_suv
            assert row["mean_suv"] / rows[0]["mean_suv"] == pytest.approx(true_suv_ratio, rel=0.10)
            assert row["mean_suv"] == pytest.approx(truth.mean_suv, rel=0.10)
            # Centroid in the baseline frame within 1 pixel of the truth.
            np.testing.assert_allclose([row["centroid_y"], row["centroid_x"]], truth.centroid, atol=1.0)


def test_volume_outputs_written(tmp_path):
    ph = make_longitudinal_phantom(timepoints=2, shape=(8, 96, 96), seed=2)
    config = TrackConfig(fuse=False)
    res = write_report(track_subject(_inputs(ph), config), _inputs(ph), config, tmp_path)
    assert res.parquet_path is not None and res.parquet_path.is_file()
    assert pq.read_table(res.parquet_path).equals(res.table)
    assert pacsv.read_csv(res.csv_path).num_rows == res.table.num_rows == 4
    assert res.figure_path is not None and res.figure_path.stat().st_size > 10_000
    np.testing.assert_allclose(res.transforms[1].shift, ph.timepoints[1].shift_vox, atol=1.0)
    units = set(res.table.column("size_unit").to_pylist())
    assert units == {"ml"}
    tracks = _rows_by_truth(res.table, ph)
    for les_id, rows in tracks.items():
        ratio = ph.truth_for(les_id, 1).volume_voxels / ph.truth_for(les_id, 0).volume_voxels
        assert rows[1]["volume_voxels"] / rows[0]["volume_voxels"] == pytest.approx(ratio, rel=0.15)


def test_disappearing_lesion_reported_absent():
    ph = make_longitudinal_phantom(timepoints=1, shape=(96, 96), seed=0)
    tp = ph.timepoints[0]
    gone = tp.suv.copy()
    gone[tp.lesion_labels == 2] = 2.5
    res = track_subject([TimepointInput(tp.mr, tp.suv), TimepointInput(tp.mr, gone)])
    rows = res.table.to_pylist()
    absent = [r for r in rows if not r["present"]]
    assert len(absent) == 1 and absent[0]["timepoint"] == 1
    assert absent[0]["size_change_pct"] == pytest.approx(-100.0)
    assert absent[0]["size_unit"] == "voxels"
    assert np.isnan(absent[0]["mean_suv"])


def test_register_rigid_recovers_known_transform():
    ph = make_longitudinal_phantom(timepoints=1, shape=(96, 96), seed=5)
    ref = ph.timepoints[0].mr
    truth = RigidTransform(-3.0, (2.0, -1.5))
    res = register_rigid(ref, to_moving(truth, ref))
    assert res.transform.angle_deg == pytest.approx(-3.0, abs=0.5)
    np.testing.assert_allclose(res.transform.shift, truth.shift, atol=0.3)
    with pytest.raises(ValueError, match="moving must have the reference shape"):
        register_rigid(ref, ref[:-1])


def test_ncc_reference_values():
    a = np.random.default_rng(0).normal(size=100)
    assert ncc(a, 2 * a + 1) == pytest.approx(1.0, abs=1e-12)
    assert ncc(a, -a) == pytest.approx(-1.0, abs=1e-12)
    assert ncc(a, np.ones(100)) == 0.0


def test_segmentation_uniform_disc():
    yy, xx = np.mgrid[:64, :64]
    suv = np.where(np.hypot(yy - 30, xx - 33) <= 8, 12.0, 3.0).astype(np.float32)
    (les,) = segment_lesions(suv, SegmentationConfig(smooth_sigma_vox=0))
    expected = int((np.hypot(yy - 30, xx - 33) <= 8).sum())
    assert les.volume_voxels == expected
    assert les.mean_suv == pytest.approx(12.0) and les.background == pytest.approx(3.0)
    assert les.centroid == pytest.approx((30.0, 33.0))
    assert segment_lesions(np.zeros((16, 16), np.float32)) == []
    with pytest.raises(ValueError, match="suv must have shape"):
        segment_lesions(np.zeros(5))


def test_bad_inputs_raise():
    ph = make_longitudinal_phantom(timepoints=2, shape=(64, 64), seed=0)
    tps = _inputs(ph)
    with pytest.raises(ValueError, match="at least 2 time points"):
        track_subject(tps[:1])
    with pytest.raises(ValueError, match=r"timepoints\[1\].suv must have shape"):
        track_subject([tps[0], TimepointInput(tps[1].mr, tps[1].suv[:32])])


def test_weak_peak_in_strong_lesion_tail_does_not_annex_it():
    # Strong lesion (SUV 8, r = 8) with a tail of SUV 3 out to r = 12; a weak peak (SUV 4) joined to
    # the tail by a bridge of SUV 3. Seeds: SUV > 1.6 * 2.0 = 3.2. Strong lesion: shell median 3.0,
    # threshold 3 + 0.45 * 5 = 5.25 -> the 197-voxel disc. Weak peak: shell median 2.0, own threshold
    # 2 + 0.45 * 2 = 2.9, whose component reaches the strong lesion, so it is cut at 5.25 instead
    # (above its peak: dropped) rather than annexing the 288-voxel tail and bridge.
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32, xx - 24)
    suv = np.full((64, 64), 2.0, np.float32)
    suv[r <= 12] = 3.0
    suv[(yy >= 31) & (yy <= 33) & (xx >= 36) & (xx <= 46)] = 3.0
    suv[np.hypot(yy - 32, xx - 48) <= 2] = 4.0
    suv[r <= 8] = 8.0
    lesions = segment_lesions(suv, SegmentationConfig(smooth_sigma_vox=0, peak_to_reference=1.6, min_suv=0))
    assert [les.volume_voxels for les in lesions] == [int((r <= 8).sum())]
    assert lesions[0].threshold == pytest.approx(5.25) and lesions[0].background == pytest.approx(3.0)


def test_partial_volume_model_threshold_on_small_blurred_disc():
    from scipy import ndimage

    yy, xx = np.mgrid[:96, :96]
    disc = np.hypot(yy - 48, xx - 48) <= 3  # 29 voxels, about the 6-voxel FWHM
    suv = ndimage.gaussian_filter(2.0 + 6.0 * disc, 6.0 / 2.3548).astype(np.float32)
    base = dict(smooth_sigma_vox=0, peak_to_reference=1.2, min_suv=0)
    (fixed,) = segment_lesions(suv, SegmentationConfig(**base))
    (model,) = segment_lesions(suv, SegmentationConfig(**base, psf_fwhm_vox=(6.0, 6.0)))
    # A fixed 45 % isocontour overestimates a lesion this small by > 30 %; the model-based fraction
    # (volume-preserving for the blurred indicator) brings it within 20 % (measured 45 vs 25 voxels).
    assert fixed.volume_voxels > 1.3 * disc.sum()
    assert model.volume_voxels == pytest.approx(disc.sum(), rel=0.2)
    # A large disc is unaffected: the edge of a blurred half-plane is at half height.
    big = np.hypot(yy - 48, xx - 48) <= 14
    suv = ndimage.gaussian_filter(2.0 + 6.0 * big, 6.0 / 2.3548).astype(np.float32)
    (model,) = segment_lesions(suv, SegmentationConfig(**base, psf_fwhm_vox=(6.0, 6.0)))
    assert model.volume_voxels == pytest.approx(big.sum(), rel=0.03)
    with pytest.raises(ValueError, match="psf_fwhm_vox must have 2 values"):
        segment_lesions(suv, SegmentationConfig(psf_fwhm_vox=(1.0, 6.0, 6.0)))


def test_figure_fusion_uses_the_modality_weights():
    """SPECT time points are fused for the figure with the SPECT weights, PET ones with the default."""
    pytest.importorskip("torch")
    from mdafuse.fusion.pipeline import fuse_pair
    from mdafuse.longitudinal.report import fuse_for_display

    ph = make_longitudinal_phantom(timepoints=2, shape=(64, 64), seed=2)
    mr = np.clip(ph.timepoints[0].mr, 0, 1).astype(np.float32)
    uptake = np.clip(ph.timepoints[0].suv / ph.timepoints[0].suv.max(), 0, 1).astype(np.float32)
    spect = fuse_for_display(mr, uptake, TrackConfig(fusion_modality="NM"))
    pet = fuse_for_display(mr, uptake, TrackConfig())
    np.testing.assert_allclose(spect, fuse_pair(mr, uptake, modality="SPECT"), atol=1e-6)
    np.testing.assert_allclose(pet, fuse_pair(mr, uptake), atol=1e-6)
    assert np.abs(spect - pet).max() > 1e-3
    with pytest.raises(ValueError, match="unknown functional modality 'MRI'"):
        TrackConfig(fusion_modality="MRI")
