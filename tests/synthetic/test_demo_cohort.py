"""Tests of mdafuse.synthetic.demo_cohort and ``mdafuse demo-cohort``: layout, headers and a round trip."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest

from mdafuse.cli import main
from mdafuse.synthetic.demo_cohort import MR_FIRST, MR_SLICES, block_mean, demo_phantom, write_demo_cohort
from mdafuse.io.dicom import discover_series, read_dicom_series
from mdafuse.io.resample import resample_to
from tests.geometry import index_to_patient, patient_to_index


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_cohort(tmp_path_factory.mktemp("demo") / "cohort", subjects=2, timepoints=2, seed=0)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_layout_and_manifest(cohort: Path) -> None:
    root = cohort.parent
    assert cohort.name == "manifest.csv"
    rows = read_rows(cohort)
    assert [(r["subject"], r["session"]) for r in rows] == [("sub-001", "ses-01"), ("sub-001", "ses-02"), ("sub-002", "ses-01"), ("sub-002", "ses-02")]
    for r in rows:
        assert r["mr"] == f"{r['subject']}/{r['session']}/MR" and r["pet"] == f"{r['subject']}/{r['session']}/PT"
        assert len(list((root / r["mr"]).glob("*.dcm"))) == 16
        assert len(list((root / r["pet"]).glob("*.dcm"))) == 12
    truth = read_rows(root / "truth.csv")
    assert len(truth) == 2 * 2 * 2  # subjects x sessions x lesions


def test_headers_and_no_names_in_file_names(cohort: Path) -> None:
    root = cohort.parent
    series = discover_series(root)
    assert len(series) == 8
    by_study: dict[str, list] = {}
    for s in series:
        by_study.setdefault(s.study_uid, []).append(s)
    for members in by_study.values():
        assert sorted(m.modality for m in members) == ["MR", "PT"]
        assert len({m.frame_of_reference_uid for m in members}) == 1
    pt = pydicom.dcmread(next((root / "sub-001" / "ses-01" / "PT").glob("*.dcm")))
    assert pt.Units == "BQML" and pt.DecayCorrection == "START" and float(pt.PatientWeight) > 0
    rp = pt.RadiopharmaceuticalInformationSequence[0]
    assert float(rp.RadionuclideHalfLife) == pytest.approx(6586.2, rel=1e-9)
    assert rp.RadionuclideCodeSequence[0].CodeMeaning == "^18^Fluorine"
    names = {str(pydicom.dcmread(s.files[0]).PatientName) for s in series}
    assert len(names) <= 2
    for path in root.rglob("*"):
        for name in names:
            for part in name.split("^"):
                assert part.lower() not in path.name.lower()


def test_round_trip_geometry_and_values(cohort: Path) -> None:
    """MR exact (12-bit storage, round(4095 * mr)); PET SUV within half a stored step per slice
    (slope = slice max / 32767, so |error| <= 0.5 * max / 32767 plus float32 rounding)."""
    root = cohort.parent
    phantom = demo_phantom(2, 2, seed=0)
    for t in range(2):
        mr = read_dicom_series(root / "sub-002" / f"ses-{t + 1:02d}" / "MR")
        pt = read_dicom_series(root / "sub-002" / f"ses-{t + 1:02d}" / "PT")
        tp = phantom.timepoints[t]
        np.testing.assert_array_equal(mr.data, np.rint(tp.mr[MR_FIRST : MR_FIRST + MR_SLICES].astype(np.float64) * 4095.0))
        expected = block_mean(tp.suv.astype(np.float64), 2)
        assert pt.units == "SUVbw" and pt.warnings == []
        tol = 0.5 * expected.reshape(12, -1).max(axis=1) / 32767.0 + 1e-5 * expected.max()
        err = np.abs(pt.data - expected).reshape(12, -1).max(axis=1)
        assert np.all(err <= tol)
        assert mr.shape == (16, 128, 128) and pt.shape == (12, 64, 64)
        np.testing.assert_allclose(mr.spacing, (1.5, 1.5, 1.5), rtol=1e-9)
        np.testing.assert_allclose(pt.spacing, (3.0, 3.0, 3.0), rtol=1e-9)
        # Both grids are centred on the same patient point.
        np.testing.assert_allclose(index_to_patient(mr, [7.5, 63.5, 63.5]), index_to_patient(pt, [5.5, 31.5, 31.5]), atol=1e-4)
        assert mr.frame_of_reference_uid == pt.frame_of_reference_uid


def test_pet_on_mr_grid_puts_lesion_at_truth(cohort: Path) -> None:
    """The PET resampled onto the MR grid has its lesion-1 peak region within one MR voxel (1.5 mm)
    of the centroid in truth.csv (measured 0.46 mm for seed 0)."""
    root = cohort.parent
    mr = read_dicom_series(root / "sub-001" / "ses-01" / "MR")
    pt = resample_to(read_dicom_series(root / "sub-001" / "ses-01" / "PT"), mr)
    row = next(r for r in read_rows(root / "truth.csv") if r["subject"] == "sub-001" and r["session"] == "ses-01" and r["lesion_id"] == "1")
    truth = np.array([float(row[f"centroid_lps_ses01_{a}"]) for a in "xyz"])
    near = patient_to_index(pt, truth)
    k, j, i = np.rint(near).astype(int)
    zz, yy, xx = np.indices(pt.shape)
    ball = (zz - k) ** 2 + ((yy - j) ** 2 + (xx - i) ** 2) <= 6**2  # 9 mm in-plane, 9 mm along z
    w = np.where(ball & (pt.data > 0.5 * float(row["max_suv"])), pt.data, 0.0)
    c = index_to_patient(pt, (np.stack([zz, yy, xx], -1) * w[..., None]).reshape(-1, 3).sum(0) / w.sum())
    assert np.linalg.norm(c - truth) <= 1.5


def test_cli_and_bad_arguments(tmp_path: Path) -> None:
    assert main(["demo-cohort", str(tmp_path / "c"), "--subjects", "1", "--timepoints", "1", "--seed", "4"]) == 0
    assert len(read_rows(tmp_path / "c" / "manifest.csv")) == 1
    with pytest.raises(ValueError, match="subjects must be in 1..999"):
        write_demo_cohort(tmp_path / "d", subjects=0)


def test_headers_carry_height_and_sex(cohort: Path) -> None:
    """PatientSize (m) and PatientSex are in every MR and PT slice, so SUL can be computed."""
    root = cohort.parent
    for r in read_rows(cohort):
        sizes, sexes = set(), set()
        for folder in (r["mr"], r["pet"]):
            for f in sorted((root / folder).glob("*.dcm")):
                ds = pydicom.dcmread(f, stop_before_pixels=True)
                sizes.add(float(ds.PatientSize))
                sexes.add(str(ds.PatientSex))
        assert len(sizes) == 1 and len(sexes) == 1
        (height,), (sex,) = sizes, sexes
        assert sex in ("F", "M") and (1.55 <= height <= 1.75 if sex == "F" else 1.65 <= height <= 1.90)


def test_come_and_go_cohort_truth(tmp_path: Path) -> None:
    manifest = write_demo_cohort(tmp_path / "c", subjects=1, timepoints=2, seed=0, come_and_go=True)
    truth = read_rows(manifest.parent / "truth.csv")
    ids = {s: sorted(int(r["lesion_id"]) for r in truth if r["session"] == s) for s in ("ses-01", "ses-02")}
    assert ids == {"ses-01": [1, 2, 4], "ses-02": [1, 2, 3]}
