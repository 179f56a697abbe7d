"""Tests of mdafuse.io.derived: PNG slices, NIfTI and derived DICOM (references, geometry, de-identification)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import MRImageStorage, SecondaryCaptureImageStorage

from mdafuse.io.derived import write_derived_dicom, write_derived_nifti, write_png_slices
from mdafuse.io.dicom import read_dicom_series
from mdafuse.io.images import read_image
from mdafuse.io.nifti import read_nifti
from mdafuse.io.volume import Volume
from mdafuse.privacy import pseudonym
from tests.io.test_dicom import PATIENT, make_affine, rotation_z, write_series


@pytest.fixture()
def mr_and_pet(tmp_path: Path) -> tuple[Volume, Volume]:
    write_series(tmp_path / "src" / "MR", shape=(4, 6, 7), affine=make_affine(rot=rotation_z(15.0)))
    write_series(tmp_path / "src" / "PT", modality="PT", shape=(3, 6, 7), seed=1)
    return read_dicom_series(tmp_path / "src" / "MR"), read_dicom_series(tmp_path / "src" / "PT")


def test_png_slices_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.uniform(size=(3, 33, 35, 3)).astype(np.float32)
    paths = write_png_slices(rgb, tmp_path / "png", indices=[4, 5, 9])
    assert [p.name for p in paths] == ["slice_0004.png", "slice_0005.png", "slice_0009.png"]
    back = np.stack([read_image(p) for p in paths])
    assert np.abs(back - rgb).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match="indices has 2 entries for 3 slices"):
        write_png_slices(rgb, tmp_path / "png", indices=[1, 2])


def test_derived_nifti_on_source_grid(tmp_path: Path, mr_and_pet) -> None:
    mr, _ = mr_and_pet
    fused = np.random.default_rng(1).uniform(size=mr.shape + (3,)).astype(np.float32)
    path = write_derived_nifti(fused, mr, tmp_path / "fused.nii.gz")
    back = read_nifti(path)
    np.testing.assert_allclose(back.affine, mr.affine, atol=1e-5)
    assert np.abs(back.data - fused).max() <= 0.5 / 255 + 1e-6
    assert nib.load(str(path)).shape == (7, 6, 4)
    with pytest.raises(ValueError, match="does not match the reference grid"):
        write_derived_nifti(fused[:2], mr, tmp_path / "x.nii")


def test_derived_rgb_secondary_capture(tmp_path: Path, mr_and_pet) -> None:
    mr, pet = mr_and_pet
    fused = np.random.default_rng(2).uniform(size=(2, 6, 7, 3)).astype(np.float32)
    paths = write_derived_dicom(fused, mr, tmp_path / "out", slice_indices=[1, 3], extra_sources=[pet])
    assert len(paths) == 2
    source_study = pydicom.dcmread(mr.source_files[0]).StudyInstanceUID
    series = set()
    for n, (path, k) in enumerate(zip(paths, [1, 3])):
        ds = pydicom.dcmread(path)
        src = pydicom.dcmread(mr.source_files[k])
        assert ds.SOPClassUID == SecondaryCaptureImageStorage
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
        assert np.abs(ds.pixel_array / 255.0 - fused[n]).max() <= 0.5 / 255 + 1e-6
        # new UIDs
        assert ds.StudyInstanceUID != source_study
        assert ds.SeriesInstanceUID != mr.series_uid and ds.SOPInstanceUID not in mr.source_sop_uids
        series.add(ds.SeriesInstanceUID)
        # geometry copied from the source slice
        assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
        np.testing.assert_allclose(np.array(ds.ImagePositionPatient, float), np.array(src.ImagePositionPatient, float), atol=1e-4)
        np.testing.assert_allclose(np.array(ds.ImageOrientationPatient, float), np.array(src.ImageOrientationPatient, float), atol=1e-6)
        np.testing.assert_allclose(np.array(ds.PixelSpacing, float), np.array(src.PixelSpacing, float), atol=1e-6)
        # references
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert ds.SourceImageSequence[0].ReferencedSOPClassUID == src.SOPClassUID
        assert ds.SourceImageSequence[0].PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
        refs = {item.SeriesInstanceUID: item for item in ds.ReferencedSeriesSequence}
        assert set(refs) == {mr.series_uid, pet.series_uid}
        assert [r.ReferencedSOPInstanceUID for r in refs[mr.series_uid].ReferencedInstanceSequence] == mr.source_sop_uids
        assert ds.StudiesContainingOtherReferencedInstancesSequence[0].StudyInstanceUID == source_study
        # not de-identified: the patient module is copied
        assert ds.PatientName == PATIENT.name and ds.PatientID == PATIENT.patient_id
    assert len(series) == 1


def test_derived_grey_reads_back_as_series(tmp_path: Path, mr_and_pet) -> None:
    mr, _ = mr_and_pet
    grey = np.random.default_rng(3).uniform(size=mr.shape).astype(np.float32)
    write_derived_dicom(grey, mr, tmp_path / "grey", new_study=False)
    back = read_dicom_series(tmp_path / "grey")
    np.testing.assert_allclose(back.affine, mr.affine, atol=1e-4)
    assert np.abs(back.data - grey).max() <= 0.5 / 65535 + 1e-6
    ds = pydicom.dcmread(back.source_files[0])
    assert ds.SOPClassUID == MRImageStorage and ds.StudyInstanceUID == mr.study_uid
    assert "StudiesContainingOtherReferencedInstancesSequence" not in ds


def test_deidentify_removes_patient_identity(tmp_path: Path, mr_and_pet) -> None:
    mr, _ = mr_and_pet
    paths = write_derived_dicom(np.zeros(mr.shape, np.float32), mr, tmp_path / "deid", deidentify=True, salt="k")
    for path in paths:
        ds = pydicom.dcmread(path)
        key = pseudonym(PATIENT.patient_id, "k")
        assert ds.PatientName == key and ds.PatientID == key
        assert ds.get("PatientBirthDate", "") == ""
        assert ds.PatientIdentityRemoved == "YES"
        raw = path.read_bytes()
        for secret in (b"DOE", b"JANE", PATIENT.patient_id.encode(), PATIENT.birth_date.encode()):
            assert secret not in raw


def test_derived_bad_input(tmp_path: Path, mr_and_pet) -> None:
    mr, _ = mr_and_pet
    with pytest.raises(ValueError, match=r"finite values in \[0, 1\]"):
        write_derived_dicom(np.full(mr.shape, 2.0), mr, tmp_path / "x")
    with pytest.raises(ValueError, match="2 images for 4 slice indices"):
        write_derived_dicom(np.zeros((2, 6, 7)), mr, tmp_path / "x")
    bare = Volume(data=np.zeros(mr.shape, np.float32), affine=mr.affine)
    with pytest.raises(ValueError, match="read with read_dicom_series"):
        write_derived_dicom(np.zeros(mr.shape), bare, tmp_path / "x")
