"""No input location or identifier in any output or log, whatever the error.

A cohort whose folders and S3 keys carry a fake patient name (and whose DICOM headers carry it as
PatientName/PatientID) goes through each failure path: a missing file, a missing S3 object, an
unreachable S3 endpoint, a truncated DICOM file, a bad header. Every file under OUT and everything
the job printed is searched for the name, the ID and the input series' UIDs.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

ROOT = Path(__file__).resolve().parents[2]
NAME, MRN = "DOE_JOHN", "MRN4455"


def _series_dirs(cohort: Path) -> list[tuple[Path, Path]]:
    with open(cohort / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [((cohort / r["mr"]).resolve(), (cohort / r["pet"]).resolve()) for r in rows]


def _stamp(folder: Path, **attrs) -> set[str]:
    """Set header attributes in every file of a series; return its UIDs."""
    uids = set()
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        for k, v in attrs.items():
            setattr(ds, k, v)
        ds.save_as(f)
        uids |= {str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID), str(ds.SOPInstanceUID), str(ds.FrameOfReferenceUID)}
    return uids


@pytest.mark.slow
def test_no_location_or_identifier_leaks(s3_server, tmp_path):
    from mdafuse.synthetic.demo_cohort import write_demo_cohort

    write_demo_cohort(tmp_path / "demo", 3, 1, 0)
    series = _series_dirs(tmp_path / "demo")
    patients = tmp_path / "patients" / f"{NAME}_{MRN}"
    uids: set[str] = set()
    pairs = {}
    for k, (mr, pt) in enumerate(series):
        target = patients / f"visit{k}"
        shutil.copytree(mr, target / "MR")
        shutil.copytree(pt, target / "PT")
        for sub in ("MR", "PT"):
            uids |= _stamp(target / sub, PatientName=f"{NAME}^{MRN}", PatientID=MRN)
        pairs[k] = target
    # a truncated PET slice (pixel data cut short) and a bad header (orientation not orthonormal)
    victim = sorted((pairs[1] / "PT").iterdir())[4]
    victim.write_bytes(victim.read_bytes()[:-600])
    for f in sorted((pairs[2] / "MR").iterdir()):
        ds = pydicom.dcmread(f)
        ds.ImageOrientationPatient = [1, 0, 0, 1, 0, 0]
        ds.save_as(f)
    # S3 inputs under a key that names the patient
    client = s3_server.client()
    for f in sorted((pairs[0] / "MR").iterdir()):
        client.put_object(Bucket=s3_server.bucket, Key=f"patients/{NAME}_{MRN}/MR/{f.name}", Body=f.read_bytes())
    manifest = tmp_path / "manifest.csv"
    rows = [
        ("good", pairs[0] / "MR", pairs[0] / "PT"),
        ("truncated", pairs[1] / "MR", pairs[1] / "PT"),
        ("badheader", pairs[2] / "MR", pairs[2] / "PT"),
        ("missingfile", patients / "visit9" / "MR", pairs[0] / "PT"),
        ("s3ok", f"s3://{s3_server.bucket}/patients/{NAME}_{MRN}/MR", pairs[0] / "PT"),
        ("s3missing", f"s3://{s3_server.bucket}/patients/{NAME}_{MRN}/gone", pairs[0] / "PT"),
    ]
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subject", "session", "mr", "pet"])
        for i, (label, mr, pet) in enumerate(rows):
            w.writerow([f"{NAME}_{MRN}_{label}", f"ses-{i}", mr, pet])
    out = tmp_path / "out"
    env = {**os.environ, **s3_server.env, "PYTHONPATH": str(ROOT), "MDAFUSE_PSEUDONYM_SALT": "test-salt"}
    proc = subprocess.run([sys.executable, "-m", "jobs.fuse_cohort", str(manifest), "--out", str(out), "--run-id", "p", "--dicom", "--workers", "1"],
                          cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stderr[-4000:]  # error rows, as planted
    # the S3 endpoint becomes unreachable for a second run of the S3 pairs
    s3_rows = [r for r in rows if str(r[1]).startswith("s3://")]
    manifest2 = tmp_path / "manifest-s3.csv"
    with open(manifest2, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subject", "session", "mr", "pet"])
        for i, (label, mr, pet) in enumerate(s3_rows):
            w.writerow([f"{NAME}_{MRN}_{label}", f"ses-{i}", mr, pet])
    env2 = {**env, "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9", "MDAFUSE_STORAGE_RETRIES": "2"}
    proc2 = subprocess.run([sys.executable, "-m", "jobs.fuse_cohort", str(manifest2), "--out", str(out), "--run-id", "q", "--workers", "1"],
                           cwd=str(ROOT), env=env2, capture_output=True, text=True, timeout=600)
    assert proc2.returncode == 3, proc2.stderr[-4000:]

    import pyarrow.parquet as pq

    table = {r["session"]: r for f in (out / "metrics/cohort=manifest/run=p").glob("*.parquet") for r in pq.read_table(f).to_pylist()}
    assert table["ses-0"]["status"] == "ok" and table["ses-4"]["status"] == "ok"
    assert "truncated or corrupt" in table["ses-1"]["error"] and "slice" in table["ses-1"]["error"]
    assert "ImageOrientationPatient" in table["ses-2"]["error"]
    assert table["ses-3"]["status"] == table["ses-5"]["status"] == "error"
    unreachable = [r for f in (out / "metrics/cohort=manifest-s3/run=q").glob("*.parquet") for r in pq.read_table(f).to_pylist()]
    assert len(unreachable) == 2 and all(r["status"] == "error" for r in unreachable)
    assert (out / f"images/cohort=manifest/run=p/{table['ses-0']['pair_id']}/dicom").is_dir()

    needles = [NAME, MRN, "patients/", str(tmp_path / "patients"), s3_server.bucket + "/patients"]
    logs = proc.stdout + proc.stderr + proc2.stdout + proc2.stderr
    for n in needles + sorted(uids):
        assert n not in logs, f"{n!r} in the job's output"
    for f in (p for p in out.rglob("*") if p.is_file() and "demo-input" not in p.parts):
        data = f.read_bytes()
        for n in needles:
            assert n.encode() not in data, f"{n!r} in {f.relative_to(out)}"
        if f.parent.name != "dicom":  # the derived series references its sources by UID, by design
            for uid in uids:
                assert uid.encode() not in data, f"a source UID in {f.relative_to(out)}"
