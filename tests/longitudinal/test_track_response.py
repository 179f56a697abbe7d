"""track_subject's response columns on the phantom: new and resolved lesions, SUL, TLG, bad input."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from mdafuse.longitudinal.response import lean_body_mass_kg
from mdafuse.longitudinal.report import write_report
from mdafuse.longitudinal.track import RESPONSE_SCHEMA, STATUSES, TABLE_SCHEMA, TimepointInput, TrackConfig, track_subject
from mdafuse.synthetic.phantom import COME_AND_GO_LESIONS, PhantomConfig, make_longitudinal_phantom

APPEARS, VANISHES = 3, 4  # lesion ids of COME_AND_GO_LESIONS


@pytest.fixture(scope="module")
def come_and_go():
    ph = make_longitudinal_phantom(timepoints=2, shape=(8, 96, 96), seed=1, config=PhantomConfig(lesions=COME_AND_GO_LESIONS))
    tps = [TimepointInput(tp.mr, tp.suv, f"t{tp.index}", ph.voxel_size_mm, weight_kg=80.0, height_m=1.8, sex="M") for tp in ph.timepoints]
    return ph, tps, track_subject(tps, TrackConfig(fuse=False))


def _track_of(rows, truth_centroid) -> int:
    """Track id whose first present row's centroid is nearest the truth centroid (baseline frame)."""
    present = [r for r in rows if r["present"]]
    best = min(present, key=lambda r: np.hypot(r["centroid_y"] - truth_centroid[1], r["centroid_x"] - truth_centroid[2]))
    return best["track_id"]


def test_new_lesion_reported_new_and_vanished_one_resolved(come_and_go):
    ph, _, res = come_and_go
    assert res.table.schema == TABLE_SCHEMA and res.responses.schema == RESPONSE_SCHEMA
    rows = res.table.to_pylist()
    assert {r["status_at_timepoint"] for r in rows} <= set(STATUSES)
    new_id = _track_of([r for r in rows if r["timepoint"] == 1], ph.truth_for(APPEARS, 1).centroid)
    gone_id = _track_of([r for r in rows if r["timepoint"] == 0], ph.truth_for(VANISHES, 0).centroid)
    by = {(r["track_id"], r["timepoint"]): r for r in rows}
    assert (new_id, 0) not in by  # no row before it exists
    new = by[(new_id, 1)]
    assert new["status_at_timepoint"] == "new" and new["present"]
    assert new["size"] == pytest.approx(ph.truth_for(APPEARS, 1).physical_size, rel=0.15)
    gone, before = by[(gone_id, 1)], by[(gone_id, 0)]
    assert before["status_at_timepoint"] == "baseline"
    assert gone["status_at_timepoint"] == "resolved" and not gone["present"] and gone["size"] == 0.0
    assert gone["last_seen_timepoint"] == 0
    assert gone["last_seen_size"] == pytest.approx(before["size"], abs=1e-12)
    assert gone["last_seen_suv_peak"] == pytest.approx(before["suv_peak"], abs=1e-12)
    assert gone["suv_peak"] is None and gone["mtv_ml"] == 0.0 and gone["tlg"] == 0.0
    assert "resolved: last seen at t0" in gone["note"]
    persisting = [r for r in rows if r["timepoint"] == 1 and r["track_id"] not in (new_id, gone_id)]
    assert len(persisting) == 2 and all(r["status_at_timepoint"] == "persisting" for r in persisting)
    (resp,) = res.responses.to_pylist()
    assert (resp["response"], resp["n_new_lesions"], resp["n_resolved_lesions"]) == ("PMD", 1, 1)
    assert resp["response_reason"] == "1 new lesion(s)" and resp["response_measure"] == "SULpeak"
    assert (resp["n_lesions_baseline"], resp["n_lesions"]) == (3, 3)
    assert all(r["response"] == "PMD" for r in rows if r["timepoint"] == 1)
    assert all(r["response"] is None for r in rows if r["timepoint"] == 0)


def test_measures_follow_their_formulas(come_and_go):
    ph, tps, res = come_and_go
    sul = lean_body_mass_kg(80.0, 1.8, "M") / 80.0
    present = [r for r in res.table.to_pylist() if r["present"]]
    assert len(present) == 6
    for r in present:
        assert r["mtv_ml"] == r["size"] and r["size_unit"] == "ml"
        assert r["tlg"] == pytest.approx(r["mtv_ml"] * r["mean_suv"], rel=1e-12)
        assert r["sul_peak"] == pytest.approx(r["suv_peak"] * sul, rel=1e-12)
        assert 0 < r["suv_peak"] <= r["max_suv"]  # a mean around the hottest voxel (5 mm slices: it takes in cooler slices)
        assert r["note"] in ("", "volume near the PET resolution: MTV unreliable")  # the latter only if segmentation flags it
    # SUVpeak against the truth: the lesions are blurred spheres of radius 8-9 mm, the 1 ml sphere
    # (radius 6.2 mm) sits in their core, so SUVpeak lies between the truth mean and the nominal SUV.
    for les_id in (1, 2, VANISHES):
        truth = ph.truth_for(les_id, 0)
        tid = _track_of([r for r in present if r["timepoint"] == 0], truth.centroid)
        row = next(r for r in present if r["track_id"] == tid and r["timepoint"] == 0)
        assert truth.mean_suv * 0.9 < row["suv_peak"] < truth.nominal_suv * 1.05
    (resp,) = res.responses.to_pylist()
    base = [r for r in present if r["timepoint"] == 0]
    now = [r for r in present if r["timepoint"] == 1]
    assert resp["baseline_peak"] == pytest.approx(max(r["sul_peak"] for r in base), abs=1e-12)
    assert resp["followup_peak"] == pytest.approx(max(r["sul_peak"] for r in now), abs=1e-12)
    assert resp["baseline_tlg"] == pytest.approx(sum(r["tlg"] for r in base), rel=1e-12)
    assert resp["tlg_change_pct"] == pytest.approx(100 * (resp["followup_tlg"] / resp["baseline_tlg"] - 1), rel=1e-9)


def test_follow_up_without_pet_and_without_height(come_and_go, tmp_path):
    _, tps, _ = come_and_go
    base = tps[0]
    no_height = TimepointInput(base.mr, base.suv, "t0", base.voxel_size_mm, weight_kg=80.0, height_m=None, sex="M")
    no_pet = TimepointInput(tps[1].mr, None, "t1", tps[1].voxel_size_mm)
    config = TrackConfig(fuse=False)
    res = write_report(track_subject([no_height, no_pet], config), [no_height, no_pet], config, tmp_path)
    rows = res.table.to_pylist()
    t0 = [r for r in rows if r["timepoint"] == 0]
    t1 = [r for r in rows if r["timepoint"] == 1]
    assert len(t0) == len(t1) == 3
    for r in t0:
        assert r["sul_peak"] is None and "no height: SUL not computed" in r["note"]
        assert r["suv_peak"] > 0 and r["tlg"] > 0  # the other measures are still there
    for r in t1:
        assert r["status_at_timepoint"] == "not_measured" and r["present"] is None and r["response"] == "NE"
        assert r["note"] == "no PET at this time point: not measured"
        assert r["last_seen_timepoint"] == 0
    (resp,) = res.responses.to_pylist()
    assert resp["response"] == "NE" and resp["response_reason"] == "no PET at this time point"
    assert resp["n_new_lesions"] is None and resp["baseline_peak"] is None
    assert pq.read_table(res.response_parquet_path).equals(res.responses)
    assert res.response_csv_path.is_file() and res.figure_path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="the baseline needs PET"):
        track_subject([no_pet, no_height])


def test_response_on_suv_peak_when_sul_is_missing(come_and_go):
    _, tps, _ = come_and_go
    plain = [TimepointInput(tp.mr, tp.suv, tp.label, tp.voxel_size_mm) for tp in tps]
    (resp,) = track_subject(plain, TrackConfig(fuse=False)).responses.to_pylist()
    assert resp["response"] == "PMD" and resp["response_measure"] == "SUVpeak"
    assert "response on SUVpeak" in resp["note"]
    bq = [plain[0], TimepointInput(tps[1].mr, tps[1].suv * 5000.0, "t1", tps[1].voxel_size_mm, in_suv=False)]
    res = track_subject(bq, TrackConfig(fuse=False))
    (resp,) = res.responses.to_pylist()
    assert resp["response"] == "NE" and resp["response_reason"] == "PET not in SUV at this time point"
    assert all("PET not in SUV" in r["note"] for r in res.table.to_pylist() if r["timepoint"] == 1)


def test_lesion_on_the_image_edge_is_noted():
    ph = make_longitudinal_phantom(timepoints=2, shape=(8, 96, 96), seed=3)
    tps = []
    for tp in ph.timepoints:
        suv = tp.suv.copy()
        suv[2:6, 40:48, :4] = 12.0  # a hot block against the x = 0 border of each frame
        tps.append(TimepointInput(tp.mr, suv, f"t{tp.index}", ph.voxel_size_mm))
    rows = track_subject(tps, TrackConfig(fuse=False)).table.to_pylist()
    edge = [r for r in rows if r["timepoint"] == 0 and r["present"] and r["centroid_x"] < 4]
    assert len(edge) == 1
    note = edge[0]["note"]
    assert "lesion on the image edge: size may be truncated" in note and "SUVpeak sphere cut by the image edge" in note
    assert edge[0]["suv_peak"] is not None and math.isfinite(edge[0]["suv_peak"]) and edge[0]["mtv_ml"] > 0
