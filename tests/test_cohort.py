"""mdafuse.cohort: manifests, 2-D folders and pseudonymous pair ids."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mdafuse.cohort import IMAGE_KIND, PAIR_SCHEMA, VOLUME_KIND, build_pair_table, pair_id, pair_kind, read_manifest


def test_pair_id_is_salted_sha256():
    want = hashlib.sha256(b"s3cretpair|c|sub-1|ses-01").hexdigest()[:16]
    assert pair_id("c", "sub-1", "ses-01", salt="s3cret") == want
    assert pair_id("c", "sub-1", "ses-01", salt="other") != want
    assert pair_id("c", "sub-1", "ses-02", salt="s3cret") != want


def test_pair_kind():
    assert pair_kind("/x/a.PNG") == IMAGE_KIND
    assert pair_kind("s3://b/a.nii.gz") == VOLUME_KIND
    assert pair_kind("/dicom/MR") == VOLUME_KIND


def test_csv_manifest_relative_paths_and_timepoint(tmp_path):
    (tmp_path / "m.csv").write_text("subject,timepoint,mr,pet,label\nP-7,1,MR/a.nii.gz,/abs/pet.nii.gz,baseline\nP-8,1,s3://b/mr.png,,\n")
    table = read_manifest(tmp_path / "m.csv", "coh", salt="x")
    assert table.schema == PAIR_SCHEMA and table.num_rows == 2
    a = next(r for r in table.to_pylist() if r["mr"].endswith("a.nii.gz"))
    assert a["mr"] == str(tmp_path / "MR/a.nii.gz") and a["pet"] == "/abs/pet.nii.gz"
    assert a["kind"] == VOLUME_KIND and a["label"] == "baseline" and a["session"] == "1"
    assert a["pair_id"] == pair_id("coh", "P-7", "1", salt="x")
    b = next(r for r in table.to_pylist() if r["mr"].startswith("s3://"))
    assert b["pet"] == "" and b["kind"] == IMAGE_KIND
    assert a["modality"] == b["modality"] == ""  # no modality column: unknown
    assert "P-7" not in str(table.to_pylist())  # the raw subject is not kept
    assert table.column("pair_id").to_pylist() == sorted(table.column("pair_id").to_pylist())


def test_parquet_manifest(tmp_path):
    pq.write_table(pa.table({"subject": ["a", "b"], "session": ["s1", "s1"], "mr": ["x.png", "y.png"], "pet": ["x2.png", "y2.png"]}), tmp_path / "m.parquet")
    src = build_pair_table(tmp_path / "m.parquet", "c")
    assert src.source_kind == "manifest" and src.table.num_rows == 2


def test_manifest_modality_column(tmp_path):
    (tmp_path / "m.csv").write_text("subject,session,mr,pet,modality\na,1,m.png,p.png,NM\nb,1,m.png,p.png,pet\nc,1,m.png,p.png,\n")
    rows = {r["mr"] + r["session"] + r["pair_id"]: r["modality"] for r in read_manifest(tmp_path / "m.csv", "c").to_pylist()}
    assert sorted(rows.values()) == ["", "PET", "SPECT"]
    (tmp_path / "bad.csv").write_text("subject,session,mr,pet,modality\na,1,m.png,p.png,NM\nb,1,m.png,p.png,US\n")
    with pytest.raises(ValueError, match=r"bad.csv: row 2: unknown functional modality 'US'"):
        read_manifest(tmp_path / "bad.csv", "c")


def test_bad_manifests(tmp_path):
    (tmp_path / "nocol.csv").write_text("subject,mr\na,b\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['pet', 'session \(or timepoint\)'\]"):
        read_manifest(tmp_path / "nocol.csv", "c")
    (tmp_path / "dup.csv").write_text("subject,session,mr,pet\na,1,m,p\na,1,m2,p2\n")
    with pytest.raises(ValueError, match="row 2 repeats"):
        read_manifest(tmp_path / "dup.csv", "c")
    (tmp_path / "empty.csv").write_text("subject,session,mr,pet\n")
    with pytest.raises(ValueError, match="no rows"):
        read_manifest(tmp_path / "empty.csv", "c")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_pair_table(tmp_path / "nowhere", "c")
    with pytest.raises(ValueError, match="cohort name"):
        build_pair_table(tmp_path / "dup.csv", "")


def test_folder_with_manifest_and_empty_dicom_tree(tmp_path):
    (tmp_path / "manifest.csv").write_text("subject,session,mr,pet\na,1,m.png,p.png\n")
    assert build_pair_table(tmp_path, "c").source_kind == "manifest"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no MR DICOM series"):
        build_pair_table(empty, "c")


def test_harvard_folder_discovery(harvard_root):
    src = build_pair_table(harvard_root / "MR-PET", "harvard-pet")
    assert src.source_kind == "images"
    assert src.table.num_rows == 176
    assert set(src.table.column("kind").to_pylist()) == {IMAGE_KIND}
    assert all(r["pet"].endswith(r["mr"].rsplit("/", 1)[1]) for r in src.table.to_pylist())
    assert len(set(src.table.column("pair_id").to_pylist())) == 176
    assert set(src.table.column("modality").to_pylist()) == {"PET"}
    spect = build_pair_table(harvard_root / "MR-SPECT", "harvard-spect").table
    assert set(spect.column("modality").to_pylist()) == {"SPECT"}


def _write_header_only_dicom(path, modality: str, patient: str, study_uid: str, series_uid: str, date: str | None, time: str | None) -> None:
    """A minimal single-instance DICOM file with just the headers series discovery reads."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient
    ds.Modality = modality
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = study_uid + ".9"
    if date is not None:
        ds.StudyDate = date
    if time is not None:
        ds.StudyTime = time
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_dicom_sessions_follow_study_date_not_uid(tmp_path):
    """Study UIDs sort opposite to the dates: sessions must follow StudyDate/StudyTime, and no date is stored."""
    studies = [  # (study uid, date, time): UID order 1.2.9.1 < 1.2.9.2 < 1.2.9.3 < 1.2.9.4
        ("1.2.9.1", "20240301", "080000"),  # third
        ("1.2.9.2", "20230115", "120000"),  # second (same day as 1.2.9.3, later time)
        ("1.2.9.3", "20230115", "093000.5"),  # first
        ("1.2.9.4", None, None),  # no date: last
    ]
    for i, (uid, date, time) in enumerate(studies):
        # the last study has a SPECT (NM) partner instead of a PET one
        for mod in ("MR", "NM" if i == 3 else "PT"):
            _write_header_only_dicom(tmp_path / f"s{i}" / mod / "1.dcm", mod, "PAT-SECRET", uid, f"{uid}.{1 if mod == 'MR' else 2}", date, time)
    table = build_pair_table(tmp_path, "c", salt="x").table
    assert table.num_rows == 4
    by_uid = {r["mr_series_uid"].rsplit(".", 1)[0]: r["session"] for r in table.to_pylist()}
    assert by_uid == {"1.2.9.3": "ses-01", "1.2.9.2": "ses-02", "1.2.9.1": "ses-03", "1.2.9.4": "ses-04"}
    modality = {r["session"]: r["modality"] for r in table.to_pylist()}
    assert modality == {"ses-01": "PET", "ses-02": "PET", "ses-03": "PET", "ses-04": "SPECT"}
    text = str(table.to_pylist())
    assert "2023" not in text and "2024" not in text and "PAT-SECRET" not in text


def test_manifest_pet_resolution_column(tmp_path):
    (tmp_path / "m.csv").write_text("subject,session,mr,pet,pet_fwhm_mm\na,1,m.nii,p.nii,4.5\nb,1,m.nii,p.nii,\n")
    rows = {r["subject_id"]: r["pet_fwhm_mm"] for r in read_manifest(tmp_path / "m.csv", "c").to_pylist()}
    assert sorted(rows.values()) == ["", "4.5"]
    (tmp_path / "bad.csv").write_text("subject,session,mr,pet,pet_fwhm_mm\na,1,m.nii,p.nii,-2\n")
    with pytest.raises(ValueError, match="row 1: pet_fwhm_mm must be a resolution in mm > 0"):
        read_manifest(tmp_path / "bad.csv", "c")
