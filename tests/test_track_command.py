"""``mdafuse track SUBJECT_DIR -o OUT`` on subject folders built from the synthetic phantom.

Each case writes a 2-time-point phantom as a subject folder (NIfTI volumes or PNG slices), runs
the command through :func:`mdafuse.cli.main` and checks the written table against the phantom truth:
one row per lesion and time point, and each lesion's size ratio (follow-up / baseline) within
``SIZE_RTOL`` (two-sided, relative) of the true ratio. Bad folders must fail with exit code 2 and
an error naming the folder.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mdafuse.cli import main
from mdafuse.commands.track import load_subject, subject_modality
from mdafuse.io.images import write_image
from mdafuse.synthetic.phantom import make_longitudinal_phantom

#: Two-sided relative tolerance on the tracked size ratio vs. the phantom truth.
SIZE_RTOL = 0.15
#: SUV of a white PET PNG pixel in the PNG case (above the phantom's maximum SUV, so nothing clips).
PNG_SUV_SCALE = 20.0
OUTPUTS = ("lesions.parquet", "lesions.csv", "tracking.png")


def _write_nifti_subject(root, ph):
    """One folder per time point with mr.nii.gz and pet.nii.gz; (Z, Y, X) arrays, RAS affine with the voxel size."""
    dz, dy, dx = ph.voxel_size_mm
    affine = np.diag([dx, dy, dz, 1.0])
    for tp in ph.timepoints:
        folder = root / f"{tp.index}_tp"
        folder.mkdir(parents=True)
        for name, data in (("mr.nii.gz", tp.mr), ("pet.nii.gz", tp.suv)):
            nib.save(nib.Nifti1Image(np.ascontiguousarray(data.transpose(2, 1, 0), dtype=np.float32), affine), str(folder / name))
    return root


def _write_png_subject(root, ph):
    """One folder per time point with 16-bit grey mr.png and pet.png (pet = SUV / PNG_SUV_SCALE)."""
    for tp in ph.timepoints:
        folder = root / f"{tp.index}_tp"
        folder.mkdir(parents=True)
        assert tp.suv.max() < PNG_SUV_SCALE
        write_image(folder / "mr.png", np.clip(tp.mr, 0.0, 1.0), bits=16)
        write_image(folder / "pet.png", tp.suv / PNG_SUV_SCALE, bits=16)
    return root


@pytest.fixture(scope="module")
def nifti_phantom():
    return make_longitudinal_phantom(timepoints=2, shape=(8, 64, 64), seed=3)


@pytest.fixture(scope="module")
def png_phantom():
    return make_longitudinal_phantom(timepoints=2, shape=(96, 96), seed=4)


def _check_outputs(out, ph, unit):
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert (out / "tracking.png").stat().st_size > 1000
    table = pq.read_table(out / "lesions.parquet")
    assert pacsv.read_csv(out / "lesions.csv").num_rows == table.num_rows
    rows = table.to_pylist()
    n_lesions = len(ph.config.lesions)
    # one row per lesion and time point
    assert table.num_rows == n_lesions * len(ph.timepoints)
    assert sorted((r["track_id"], r["timepoint"]) for r in rows) == sorted(
        (k, t) for k in {r["track_id"] for r in rows} for t in range(len(ph.timepoints))
    )
    assert len({r["track_id"] for r in rows}) == n_lesions
    assert {r["size_unit"] for r in rows} == {unit}
    assert all(r["present"] for r in rows)
    # match each truth lesion to the track whose baseline centroid is nearest (in-plane)
    base = [r for r in rows if r["timepoint"] == 0]
    matched = set()
    for les_id in range(1, n_lesions + 1):
        c0 = np.asarray(ph.truth_for(les_id, 0).centroid)[-2:]
        best = min(base, key=lambda r: float(np.hypot(r["centroid_y"] - c0[0], r["centroid_x"] - c0[1])))
        assert np.hypot(best["centroid_y"] - c0[0], best["centroid_x"] - c0[1]) < 2.0
        matched.add(best["track_id"])
        track = {r["timepoint"]: r for r in rows if r["track_id"] == best["track_id"]}
        true_ratio = ph.truth_for(les_id, 1).physical_size / ph.truth_for(les_id, 0).physical_size
        measured_ratio = track[1]["size"] / track[0]["size"]
        assert measured_ratio == pytest.approx(true_ratio, rel=SIZE_RTOL), (les_id, measured_ratio, true_ratio)
        assert track[1]["size_change_pct"] == pytest.approx(100.0 * (measured_ratio - 1.0), abs=1e-6)
        if unit == "ml":
            assert track[0]["size"] == pytest.approx(ph.truth_for(les_id, 0).physical_size, rel=0.35)
    assert len(matched) == n_lesions  # each truth lesion has its own track
    return table


def test_track_nifti_subject(tmp_path, nifti_phantom, capsys):
    subject = _write_nifti_subject(tmp_path / "subj_nii", nifti_phantom)
    out = tmp_path / "out"
    assert main(["track", str(subject), "-o", str(out), "--no-fuse"]) == 0
    _check_outputs(out, nifti_phantom, "ml")
    assert "wrote" in capsys.readouterr().out


def test_load_subject_reads_nifti_geometry(tmp_path, nifti_phantom):
    subject = _write_nifti_subject(tmp_path / "subj_nii", nifti_phantom)
    tps = load_subject(subject)
    assert [tp.label for tp in tps] == ["0_tp", "1_tp"]
    np.testing.assert_allclose(tps[0].voxel_size_mm, nifti_phantom.voxel_size_mm, rtol=1e-6)
    np.testing.assert_allclose(tps[1].suv, nifti_phantom.timepoints[1].suv, atol=1e-5)
    np.testing.assert_allclose(tps[0].mr, nifti_phantom.timepoints[0].mr, atol=1e-6)


def test_track_png_subject(tmp_path, png_phantom):
    subject = _write_png_subject(tmp_path / "subj_png", png_phantom)
    out = tmp_path / "out"
    argv = ["track", str(subject), "-o", str(out), "--no-fuse", "--png-suv-scale", str(PNG_SUV_SCALE)]
    assert main(argv) == 0
    _check_outputs(out, png_phantom, "voxels")
    # with --pixel-mm the sizes are in mm^2 and scale by pixel_mm ** 2
    out_mm = tmp_path / "out_mm"
    assert main(["track", str(subject), "-o", str(out_mm), *argv[4:], "--pixel-mm", "2"]) == 0
    px = pq.read_table(out / "lesions.parquet").sort_by([("track_id", "ascending"), ("timepoint", "ascending")])
    mm = pq.read_table(out_mm / "lesions.parquet").sort_by([("track_id", "ascending"), ("timepoint", "ascending")])
    assert set(mm.column("size_unit").to_pylist()) == {"mm2"}
    np.testing.assert_allclose(mm.column("size").to_numpy(), 4.0 * px.column("size").to_numpy(), rtol=1e-9)
    # 2 mm is the phantom's true pixel size (192 mm / 96), so baseline areas match the truth in mm^2
    assert png_phantom.voxel_size_mm == (2.0, 2.0)
    base_mm = sorted(r["size"] for r in mm.to_pylist() if r["timepoint"] == 0)
    true_mm = sorted(png_phantom.truth_for(k, 0).physical_size for k in (1, 2))
    np.testing.assert_allclose(base_mm, true_mm, rtol=SIZE_RTOL)


def test_track_png_subject_with_fusion(tmp_path, png_phantom):
    pytest.importorskip("mdafuse.fusion.pipeline")
    subject = _write_png_subject(tmp_path / "subj_png", png_phantom)
    out = tmp_path / "out"
    assert main(["track", str(subject), "-o", str(out), "--png-suv-scale", str(PNG_SUV_SCALE)]) == 0
    for name in OUTPUTS:
        assert (out / name).is_file(), name


def test_spect_subject_takes_the_spect_weights(tmp_path, png_phantom, monkeypatch):
    """A subject whose time points hold spect.png is fused with the SPECT weights unless --modality says otherwise."""
    from mdafuse.fusion import pipeline

    subject = _write_png_subject(tmp_path / "subj", png_phantom)
    assert subject_modality(subject) is None
    for tp in subject.iterdir():
        (tp / "pet.png").rename(tp / "spect.png")
    assert subject_modality(subject) == "SPECT"
    assert [t.label for t in load_subject(subject, PNG_SUV_SCALE)] == ["0_tp", "1_tp"]

    real, seen = pipeline.fuse_pair, []
    monkeypatch.setattr(pipeline, "fuse_pair", lambda *a, **k: seen.append(k["modality"]) or real(*a, **k))
    for extra, expected in (([], "SPECT"), (["--modality", "pet"], "PET")):
        seen.clear()
        assert main(["track", str(subject), "-o", str(tmp_path / "out"), "--png-suv-scale", str(PNG_SUV_SCALE), *extra]) == 0
        assert seen and set(seen) == {expected}


def test_missing_pet_file_is_a_clear_error(tmp_path, png_phantom, capsys):
    subject = _write_png_subject(tmp_path / "subj", png_phantom)
    (subject / "1_tp" / "pet.png").unlink()
    assert main(["track", str(subject), "-o", str(tmp_path / "out"), "--no-fuse"]) == 2
    err = capsys.readouterr().err
    assert "1_tp" in err and "pet.png" in err
    assert not (tmp_path / "out" / "lesions.parquet").exists()
    with pytest.raises(FileNotFoundError, match=r"1_tp.*pet\.png"):
        load_subject(subject)


def test_single_timepoint_is_a_clear_error(tmp_path, nifti_phantom, capsys):
    subject = _write_nifti_subject(tmp_path / "subj", nifti_phantom)
    for f in (subject / "1_tp").iterdir():
        f.unlink()
    (subject / "1_tp").rmdir()
    assert main(["track", str(subject), "-o", str(tmp_path / "out"), "--no-fuse"]) == 2
    err = capsys.readouterr().err
    assert "subj" in err and "at least 2 time-point" in err
    with pytest.raises(ValueError, match=r"subj: need at least 2 time-point folders; found 1"):
        load_subject(subject)
