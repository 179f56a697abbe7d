"""The cohort job on BIDS: the demo dataset (PET registered to MR, a T1w from another session, a bad sidecar) and the official examples."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mdafuse.cohort import build_pair_table
from mdafuse.io.bids import BidsSelection
from tests.jobs.test_fuse_cohort import _rows


def _truth_motion(root: Path) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    from mdafuse.synthetic.demo_bids import _rotation

    out = {}
    with (root / "truth_registration.csv").open() as fh:
        for r in csv.DictReader(fh):
            angles = np.array([float(r[k]) for k in ("rotation_z_deg", "rotation_y_deg", "rotation_x_deg")])
            shift = np.array([float(r[k]) for k in ("translation_x_mm", "translation_y_mm", "translation_z_mm")])
            out[(r["subject"], r["session"])] = (_rotation(angles), shift)
    return out


def _brain_points(t1w: Path) -> tuple[np.ndarray, np.ndarray]:
    """LPS points (N, 3) of the MR's head voxels, and the grid centre (the demo's centre of motion)."""
    from mdafuse.io.nifti import read_nifti

    mr = read_nifti(t1w)
    zyx = np.argwhere(mr.data > 0.1 * np.percentile(mr.data, 99))[::7]
    points = (mr.affine[:3, :3] @ zyx[:, ::-1].T).T + mr.affine[:3, 3]
    centre = mr.affine[:3, :3] @ ((np.array(mr.data.shape[::-1]) - 1) / 2.0) + mr.affine[:3, 3]
    return points, centre


@pytest.fixture(scope="module")
def bids_demo(tmp_path_factory) -> Path:
    """2 subjects x 2 sessions; sub-002 ses-02 without its T1w; sub-001 ses-02's sidecar without Units."""
    from mdafuse.synthetic.demo_bids import write_demo_bids

    root = write_demo_bids(tmp_path_factory.mktemp("bidsjob") / "demo", subjects=2, timepoints=2, seed=5)
    shutil.rmtree(root / "sub-002/ses-02/anat")
    side = root / "sub-001/ses-02/pet/sub-001_ses-02_trc-FDG_pet.json"
    side.write_text(json.dumps({k: v for k, v in json.loads(side.read_text()).items() if k != "Units"}))
    return root


def test_job_on_bids_registers_pet_and_reports_every_pair(ray_local, bids_demo: Path, tmp_path: Path) -> None:
    from jobs.fuse_cohort import main

    out = tmp_path / "out"
    assert main([str(bids_demo), "--out", str(out), "--run-id", "b", "--cohort-name", "b", "--workers", "1", "--mr-session", "nearest", "-q"]) == 3
    rows = _rows(str(out), "b", "b")
    table = build_pair_table(bids_demo, "b", bids=BidsSelection(mr_session="nearest")).table.to_pylist()
    assert len(rows) == len(table) == 4 and {r["pair_id"] for r in rows} == {p["pair_id"] for p in table}
    by_key = {(p["pet"].split("/")[-1].split("_")[0], p["session"].split("_")[0]): p for p in table}
    by_id = {r["pair_id"]: r for r in rows}
    truth = _truth_motion(bids_demo)
    # the sidecar without Units: an error row naming the cause, no location in it
    bad = by_id[by_key[("sub-001", "ses-02")]["pair_id"]]
    assert bad["status"] == "error" and "lacks Units" in bad["error"] and str(bids_demo) not in bad["error"]
    from mdafuse.registration import PatientRigidTransform

    for (subject, session), pair in by_key.items():
        row = by_id[pair["pair_id"]]
        if (subject, session) == ("sub-001", "ses-02"):
            continue
        assert row["status"] == "ok", row["error"]
        assert row["registration"].startswith("rigid") and 1.0 < row["registration_quality"] < 2.0
        assert "SUVbw from the sidecar's Units" in row["pet_fields"] and "participants.tsv weight" in row["pet_fields"] and "frames 5-6 of 6" in row["pet_fields"]
        if (subject, session) == ("sub-002", "ses-02"):  # its T1w came from the nearest session, 90 days earlier
            assert row["mr_session"] == "ses-01" and row["mr_gap_days"] == pytest.approx(-90.0, abs=1.0)
            continue  # the phantom's head also moves between sessions: no known truth for this pair
        assert row["mr_session"] == "" and np.isnan(row["mr_gap_days"])
        # the recovered transform (MR LPS -> PET LPS) against the demo's known head motion, over the head
        rotation, shift = truth[(subject, session)]
        points, centre = _brain_points(Path(pair["mr"]))
        expected = (rotation @ (points - centre).T).T + centre + shift
        found = PatientRigidTransform.from_json(row["registration_transform"]).apply(points)
        error_mm = np.linalg.norm(found - expected, axis=1)
        assert np.median(error_mm) < 1.5 and np.percentile(error_mm, 95) < 3.0, (subject, session, np.median(error_mm))
        saved = out / "images/cohort=b/run=b" / pair["pair_id"] / "registration.json"
        assert PatientRigidTransform.from_json(saved.read_text()) == PatientRigidTransform.from_json(row["registration_transform"])
    # the subject labels of the dataset never reach the table (pseudonyms only)
    assert not any("sub-00" in str(v) for r in rows for v in r.values())


def test_register_never_trusts_the_headers(ray_local, bids_demo: Path, tmp_path: Path) -> None:
    from jobs.fuse_cohort import main

    out = tmp_path / "out"
    # the first pair by pair_id is sub-001 ses-01, a good one (the Units-less sidecar is ses-02)
    assert main([str(bids_demo), "--out", str(out), "--run-id", "n", "--cohort-name", "b", "--workers", "1", "--register", "never", "--limit", "1", "-q"]) == 0
    (row,) = _rows(str(out), "b", "n")
    assert row["status"] == "ok" and row["registration"] == "none" and np.isnan(row["registration_quality"]) and row["registration_transform"] == ""
    assert "FrameOfReferenceUID unknown" in row["warnings"]  # the headers were trusted, and the row says so


def test_job_on_the_official_examples_gives_one_clear_error_row_per_pet(ray_local, data_root: Path, tmp_path: Path) -> None:
    from jobs.fuse_cohort import main

    root = data_root / "bids-pet-examples" / "pet002"
    out = tmp_path / "out"
    assert main([str(root), "--out", str(out), "--run-id", "e", "--cohort-name", "e", "--workers", "1", "-q"]) == 3
    rows = _rows(str(out), "e", "e")
    n_pet = len(list(root.rglob("*_pet.nii*")))
    assert len(rows) == n_pet == 4 and all(r["status"] == "error" for r in rows)
    for r in rows:  # placeholder images: unreadable, named by role, never by path
        assert "cannot read as NIfTI" in r["error"] and str(root) not in r["error"] and "\n" not in r["error"]


def _validator() -> str | None:
    found = os.environ.get("MDAFUSE_BIDS_VALIDATOR") or shutil.which("bids-validator")
    local = Path(__file__).resolve().parents[2] / ".ci/node/node_modules/.bin/bids-validator"
    return found or (str(local) if local.is_file() else None)


def test_demo_passes_the_bids_validator(bids_demo: Path, tmp_path: Path) -> None:
    from mdafuse.synthetic.demo_bids import write_demo_bids

    validator = _validator()
    if validator is None:
        msg = "bids-validator not found (npm install --prefix .ci/node bids-validator@1.15.0, or set MDAFUSE_BIDS_VALIDATOR)"
        if os.environ.get("MDAFUSE_REQUIRE_DATA", "") not in ("", "0", "false"):
            pytest.fail(msg)
        pytest.skip(msg)
    root = write_demo_bids(tmp_path / "clean", subjects=2, timepoints=2, seed=1)
    proc = subprocess.run([validator, str(root), "--json"], capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stdout)
    errors = [(i["key"], i.get("reason", "")) for i in report["issues"]["errors"]]
    assert proc.returncode == 0 and errors == [], errors
    summary = report["summary"]
    assert summary["subjects"] == ["001", "002"] and summary["sessions"] == ["01", "02"] and set(summary["dataTypes"]) == {"T1w", "pet"}


def test_manifest_of_bids_files_on_s3(ray_local, s3_server, bids_demo: Path, tmp_path: Path, monkeypatch) -> None:
    """A manifest on S3 listing BIDS files: each PET is fetched with its sidecar, read as SUV and registered."""
    from jobs.fuse_cohort import main

    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    client = s3_server.client()
    keep = ("sub-002/ses-01/", "participants.tsv", "dataset_description.json")
    for f in bids_demo.rglob("*"):
        rel = f.relative_to(bids_demo).as_posix()
        if f.is_file() and any(rel.startswith(k) for k in keep):
            client.put_object(Bucket=s3_server.bucket, Key=f"bids/{rel}", Body=f.read_bytes())
    manifest = "subject,session,mr,pet\nsub-002,ses-01,sub-002/ses-01/anat/sub-002_ses-01_T1w.nii.gz,sub-002/ses-01/pet/sub-002_ses-01_trc-FDG_pet.nii.gz\n"
    client.put_object(Bucket=s3_server.bucket, Key="bids/manifest.csv", Body=manifest.encode())
    out = tmp_path / "out"
    assert main([f"s3://{s3_server.bucket}/bids/manifest.csv", "--out", str(out), "--run-id", "m", "--workers", "1", "-q"]) == 0
    (row,) = _rows(str(out), "manifest", "m")
    # on S3 there is no dataset root above the file: SUV needs the weight, which only participants.tsv has
    assert row["status"] == "ok" and row["registration"].startswith("rigid")
    assert row["pet_fields"].startswith("BQML from the sidecar's Units") and "no body weight" in row["warnings"]
