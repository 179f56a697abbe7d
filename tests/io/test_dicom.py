"""Tests of mdafuse.io.dicom: slice ordering, geometry, rescaling, SUV and error reporting.

Small series (a few slices of 6 x 7 pixels) are written into tmp_path with
``mdafuse.synthetic.demo_cohort.write_dicom_series``; bad inputs are made by editing those files.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PositronEmissionTomographyImageStorage, generate_uid

from mdafuse.synthetic.demo_cohort import PatientInfo, PetDose, write_dicom_series
from mdafuse.io.derived import new_file_dataset
from mdafuse.io.dicom import (
    DicomSeriesError,
    discover_series,
    parse_dicom_datetime,
    read_dicom_series,
    suv_scale,
)
from mdafuse.privacy import pseudonym
from tests.geometry import index_to_patient, patient_to_index

PATIENT = PatientInfo(name="DOE^JANE", patient_id="PID12345", birth_date="19600102", sex="F", weight_kg=70.0)
INJECTION = datetime(2024, 3, 1, 10, 0, 0)
DOSE = PetDose(dose_bq=370e6, injection=INJECTION, series_start=datetime(2024, 3, 1, 11, 0, 0))


def rotation_z(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])


def rotation_x(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[1.0, 0.0, 0.0], [0.0, math.cos(a), -math.sin(a)], [0.0, math.sin(a), math.cos(a)]])


def make_affine(spacing=(0.9, 1.1, 2.0), rot: np.ndarray | None = None, origin=(-10.0, 20.0, 30.0)) -> np.ndarray:
    """Voxel (x, y, z) -> LPS affine with column spacing, row spacing, slice spacing ``spacing``."""
    rot = np.eye(3) if rot is None else rot
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def write_series(
    folder: Path,
    modality: str = "MR",
    shape=(5, 6, 7),
    affine: np.ndarray | None = None,
    seed: int = 0,
    file_name=None,
    series_uid: str | None = None,
) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Write a small random series; returns (files in slice order, data, affine)."""
    rng = np.random.default_rng(seed)
    data = rng.uniform(0.0, 1.0, size=shape)
    if modality == "PT":
        data = data * 10.0
    affine = make_affine() if affine is None else affine
    paths = write_dicom_series(
        data, affine, folder, modality=modality, patient=PATIENT, study_uid=generate_uid(),
        series_uid=series_uid or generate_uid(), frame_uid=generate_uid(), study_datetime=INJECTION,
        pet=DOSE if modality == "PT" else None, file_name=file_name,
    )  # fmt: skip
    return paths, data, affine


def edit(path: Path, **attrs) -> None:
    ds = pydicom.dcmread(path)
    for name, value in attrs.items():
        setattr(ds, name, value)
    ds.save_as(path)


# ----------------------------------------------------------------------------- geometry


def test_mr_series_geometry_and_values(tmp_path: Path) -> None:
    paths, data, affine = write_series(tmp_path / "mr")
    vol = read_dicom_series(tmp_path / "mr")
    assert vol.shape == (5, 6, 7)
    assert vol.data.dtype == np.float32
    np.testing.assert_allclose(vol.affine, affine, atol=1e-6)
    np.testing.assert_allclose(vol.spacing, (2.0, 1.1, 0.9), rtol=1e-9)
    # 12-bit storage: round(4095 * x); no rescale for MR.
    np.testing.assert_array_equal(vol.data, np.rint(data * 4095.0).astype(np.float32))
    assert vol.modality == "MR" and vol.units == ""
    assert vol.source_files == paths
    assert vol.subject_key == pseudonym("PID12345")
    assert vol.warnings == []


def test_shuffled_random_file_names_come_back_in_order(tmp_path: Path) -> None:
    """Random file names and shuffled InstanceNumbers: order follows the position along the normal."""
    rng = np.random.default_rng(3)
    names = {k: f"{uuid.UUID(int=int(rng.integers(2**62))).hex}.dcm" for k in range(9)}
    paths, data, affine = write_series(tmp_path / "s", shape=(9, 6, 7), file_name=lambda k: names[k])
    perm = rng.permutation(9)
    for path, number in zip(paths, perm):
        edit(path, InstanceNumber=int(number) + 1)
    assert sorted(p.name for p in paths) != [p.name for p in paths]  # the names are not in slice order
    vol = read_dicom_series(tmp_path / "s")
    np.testing.assert_array_equal(vol.data, np.rint(data * 4095.0))
    assert vol.source_files == paths
    np.testing.assert_allclose(vol.affine, affine, atol=1e-6)


def test_oblique_series_sorted_along_normal(tmp_path: Path) -> None:
    """An oblique stack whose slice normal points partly along -z is still ordered along +normal."""
    rot = rotation_x(160.0) @ rotation_z(25.0)
    affine = make_affine(rot=rot)
    paths, data, _ = write_series(tmp_path / "o", shape=(6, 6, 7), affine=affine)
    vol = read_dicom_series([paths[k] for k in (3, 0, 5, 1, 4, 2)])
    np.testing.assert_allclose(vol.affine, affine, atol=1e-6)
    np.testing.assert_array_equal(vol.data, np.rint(data * 4095.0))
    # The centre of voxel (z=2, y=3, x=4) is where the affine puts it.
    np.testing.assert_allclose(index_to_patient(vol, [2, 3, 4]), affine[:3, :3] @ [4, 3, 2] + affine[:3, 3], atol=1e-9)
    np.testing.assert_allclose(patient_to_index(vol, index_to_patient(vol, [2.5, 1.0, 0.25])), [2.5, 1.0, 0.25], atol=1e-9)


def test_rescale_slope_intercept_applied_per_slice(tmp_path: Path) -> None:
    paths, data, _ = write_series(tmp_path / "r", shape=(3, 6, 7))
    edit(paths[1], RescaleSlope="2", RescaleIntercept="-100")
    vol = read_dicom_series(tmp_path / "r")
    stored = np.rint(data * 4095.0)
    np.testing.assert_array_equal(vol.data[0], stored[0])
    np.testing.assert_array_equal(vol.data[1], stored[1] * 2.0 - 100.0)


def test_several_series_need_series_uid(tmp_path: Path) -> None:
    uid_a, uid_b = generate_uid(), generate_uid()
    write_series(tmp_path / "a", series_uid=uid_a)
    write_series(tmp_path / "b", shape=(4, 6, 7), series_uid=uid_b)
    with pytest.raises(DicomSeriesError, match="hold 2 series"):
        read_dicom_series(tmp_path)
    vol = read_dicom_series(tmp_path, series_uid=uid_b)
    assert vol.shape == (4, 6, 7) and vol.series_uid == uid_b
    with pytest.raises(DicomSeriesError, match="not found"):
        read_dicom_series(tmp_path, series_uid="1.2.3")


def test_discover_series_groups_and_pseudonymises(tmp_path: Path) -> None:
    write_series(tmp_path / "a")
    write_series(tmp_path / "b", modality="PT", shape=(3, 6, 7))
    (tmp_path / "manifest.csv").write_text("not dicom\n")
    found = discover_series(tmp_path, salt="s3cret")
    assert sorted((s.modality, s.n_files) for s in found) == [("MR", 5), ("PT", 3)]
    import hashlib

    expected = hashlib.sha256(b"s3cretPID12345").hexdigest()[:16]
    assert {s.subject_key for s in found} == {expected}
    assert "DOE" not in repr(found) and "PID12345" not in repr(found)
    with pytest.raises(FileNotFoundError, match="no such DICOM folder"):
        discover_series(tmp_path / "missing")


def test_single_multiframe_nm_file(tmp_path: Path) -> None:
    """One NM file with frames and geometry in DetectorInformationSequence (tomographic NM)."""
    frames = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    ds = new_file_dataset("1.2.840.10008.5.1.4.1.1.20", generate_uid())
    ds.Modality, ds.SeriesInstanceUID, ds.PatientID = "NM", generate_uid(), "X"
    ds.NumberOfFrames, ds.Rows, ds.Columns = 3, 4, 5
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelSpacing, ds.SpacingBetweenSlices = ["4", "3"], "5"
    det = Dataset()
    det.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    det.ImagePositionPatient = ["-1", "-2", "-3"]
    ds.DetectorInformationSequence = DicomSequence([det])
    ds.PixelData = frames.tobytes()
    ds.save_as(tmp_path / "nm.dcm", enforce_file_format=True)
    vol = read_dicom_series(tmp_path / "nm.dcm")
    np.testing.assert_array_equal(vol.data, frames)
    np.testing.assert_allclose(vol.affine, [[3, 0, 0, -1], [0, 4, 0, -2], [0, 0, 5, -3], [0, 0, 0, 1]])


# ----------------------------------------------------------------------------- SUV


def pet_header(**changes) -> Dataset:
    """The check case: 70 kg, 370 MBq F-18 at 10:00, series at 11:00, DecayCorrection START, BQML."""
    ds = Dataset()
    ds.Units = "BQML"
    ds.DecayCorrection = "START"
    ds.PatientWeight = "70"
    ds.SeriesDate, ds.SeriesTime = "20240301", "110000"
    ds.AcquisitionDate, ds.AcquisitionTime = "20240301", "111500"
    rp = Dataset()
    rp.RadionuclideTotalDose = "370000000"
    rp.RadiopharmaceuticalStartTime = "100000"
    rp.RadionuclideHalfLife = "6586.2"
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([rp])
    for name, value in changes.items():
        if value is None:
            delattr(ds, name)
        else:
            setattr(ds, name, value)
    return ds


def test_suv_hand_calculation() -> None:
    """Check value, by hand: stored 10000 x slope 0.5 = 5000 Bq/ml.

    Dose decayed from 10:00 to 11:00: 370e6 * 2 ** (-3600 / 6586.2) = 370e6 * 0.684637 = 253.316e6 Bq.
    SUVbw = 5000 Bq/ml * 70000 g / 253.316e6 Bq = 1.3817 (g/ml).
    """
    factor, warnings = suv_scale(pet_header())
    assert warnings == []
    assert factor is not None
    assert abs(factor * (10000 * 0.5) - 1.3817) < 5e-4
    assert abs(factor - 70000.0 / (370e6 * 2 ** (-3600 / 6586.2))) < 1e-12


def test_suv_decay_correction_admin_and_none() -> None:
    """ADMIN: no decay of the dose (5000 * 70000 / 370e6 = 0.94595). NONE: decay to AcquisitionTime 11:15."""
    admin, _ = suv_scale(pet_header(DecayCorrection="ADMIN"))
    assert admin is not None and abs(admin * 5000 - 0.945946) < 1e-5
    none, _ = suv_scale(pet_header(DecayCorrection="NONE"))
    assert none is not None and abs(none - 70000.0 / (370e6 * 2 ** (-4500 / 6586.2))) < 1e-12


def test_suv_start_datetime_preferred_and_next_day() -> None:
    """RadiopharmaceuticalStartDateTime wins over the time alone (here: injected the evening before)."""
    ds = pet_header()
    ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime = "20240229230000+0100"
    factor, _ = suv_scale(ds)
    assert factor is not None and abs(factor - 70000.0 / (370e6 * 2 ** (-12 * 3600 / 6586.2))) < 1e-12


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"Units": "CNTS"}, "Units is 'CNTS'"),
        ({"Units": "GML"}, "Units is 'GML'"),
        ({"PatientWeight": None}, "PatientWeight missing"),
        ({"PatientWeight": "0"}, "PatientWeight missing or not positive"),
        ({"RadiopharmaceuticalInformationSequence": None}, "RadiopharmaceuticalInformationSequence missing"),
        ({"SeriesTime": None}, "date/time missing"),
        ({"DecayCorrection": None}, "DecayCorrection 'missing'"),
    ],
)
def test_suv_missing_attributes_fall_back_with_warning(changes: dict, message: str) -> None:
    factor, warnings = suv_scale(pet_header(**changes))
    assert factor is None
    assert len(warnings) == 1 and message in warnings[0]


def test_suv_missing_half_life_and_injection_after_series() -> None:
    ds = pet_header()
    del ds.RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife
    assert suv_scale(ds)[0] is None and "RadionuclideHalfLife" in suv_scale(ds)[1][0]
    late = pet_header(SeriesTime="093000")
    assert suv_scale(late)[0] is None and "after the reference time" in suv_scale(late)[1][0]


def write_check_pet(folder: Path, **changes) -> Path:
    """A two-slice PET series of the hand-calculated check case: stored 10000, RescaleSlope 0.5."""
    folder.mkdir(parents=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(2):
        ds = new_file_dataset(PositronEmissionTomographyImageStorage, generate_uid())
        ds.update(pet_header(**changes))
        ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID = "PT", series, study, frame
        ds.PatientID = "PID12345"
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.ImagePositionPatient = ["0", "0", str(3.0 * k)]
        ds.PixelSpacing = ["2", "2"]
        ds.Rows, ds.Columns = 3, 4
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = "0.5", "0"
        ds.PixelData = np.full((3, 4), 10000, dtype=np.int16).tobytes()
        ds.save_as(folder / f"p{k}.dcm", enforce_file_format=True)
    return folder


def test_read_pet_series_in_suv(tmp_path: Path) -> None:
    vol = read_dicom_series(write_check_pet(tmp_path / "pt"))
    assert vol.units == "SUVbw" and vol.warnings == []
    assert np.all(np.abs(vol.data - 1.3817) < 5e-4)
    assert vol.suv_factor is not None and vol.suv_factor.shape == (2,)
    raw = read_dicom_series(tmp_path / "pt", suv=False)
    assert raw.units == "BQML" and np.all(raw.data == 5000.0)


def test_read_pet_series_without_weight_keeps_raw_values_with_warning(tmp_path: Path) -> None:
    vol = read_dicom_series(write_check_pet(tmp_path / "pt", PatientWeight=None))
    assert vol.units == "BQML"
    assert np.all(vol.data == 5000.0)
    assert vol.suv_factor is None
    assert any("PatientWeight missing" in w for w in vol.warnings)


def test_read_pet_series_in_counts_is_not_scaled(tmp_path: Path) -> None:
    vol = read_dicom_series(write_check_pet(tmp_path / "pt", Units="CNTS"))
    assert vol.units == "CNTS" and np.all(vol.data == 5000.0)
    assert any("Units is 'CNTS'" in w for w in vol.warnings)


def test_parse_dicom_datetime() -> None:
    assert parse_dicom_datetime("20240301", "101530.5") == datetime(2024, 3, 1, 10, 15, 30, 500000)
    assert parse_dicom_datetime("20240301", "10:15") == datetime(2024, 3, 1, 10, 15)
    assert parse_dicom_datetime(dt="20240301101530-0500") == datetime(2024, 3, 1, 10, 15, 30)
    with pytest.raises(ValueError, match="not a DICOM TM"):
        parse_dicom_datetime("20240301", "10h15")


# ----------------------------------------------------------------------------- bad input


def test_missing_slice_is_reported(tmp_path: Path) -> None:
    paths, _, _ = write_series(tmp_path / "s", shape=(6, 6, 7))
    paths[3].unlink()
    with pytest.raises(DicomSeriesError, match=rf"{paths[4].name}: missing slices.*1 slice"):
        read_dicom_series(tmp_path / "s")


def test_duplicate_slice_position_is_reported(tmp_path: Path) -> None:
    paths, _, _ = write_series(tmp_path / "s")
    ipp = pydicom.dcmread(paths[1]).ImagePositionPatient
    edit(paths[2], ImagePositionPatient=ipp)
    with pytest.raises(DicomSeriesError, match=r"MR_000[12]\.dcm: duplicate slice position"):
        read_dicom_series(tmp_path / "s")


def test_inconsistent_spacing_is_reported(tmp_path: Path) -> None:
    paths, _, affine = write_series(tmp_path / "s")
    ipp = np.array(pydicom.dcmread(paths[3]).ImagePositionPatient, dtype=float) + 0.3 * affine[:3, 2]
    edit(paths[3], ImagePositionPatient=[f"{v:.6f}" for v in ipp])
    with pytest.raises(DicomSeriesError, match=rf"{paths[3].name}: inconsistent slice spacing"):
        read_dicom_series(tmp_path / "s")


def test_inconsistent_orientation_is_reported(tmp_path: Path) -> None:
    paths, _, _ = write_series(tmp_path / "s")
    edit(paths[2], ImageOrientationPatient=["1", "0", "0", "0", "0.8", "0.6"])
    with pytest.raises(DicomSeriesError, match=rf"{paths[2].name}: ImageOrientationPatient differs"):
        read_dicom_series(tmp_path / "s")


def test_inconsistent_pixel_spacing_is_reported(tmp_path: Path) -> None:
    paths, _, _ = write_series(tmp_path / "s")
    edit(paths[4], PixelSpacing=["1.2", "0.9"])
    with pytest.raises(DicomSeriesError, match=rf"{paths[4].name}: PixelSpacing"):
        read_dicom_series(tmp_path / "s")


def test_unsupported_modality_is_reported(tmp_path: Path) -> None:
    paths, _, _ = write_series(tmp_path / "s")
    edit(paths[1], Modality="CT")
    with pytest.raises(DicomSeriesError, match=rf"{paths[1].name}: Modality 'CT' is not one of"):
        read_dicom_series(tmp_path / "s")


def test_non_dicom_file_is_reported(tmp_path: Path) -> None:
    write_series(tmp_path / "s")
    bad = tmp_path / "s" / "notes.txt"
    bad.write_bytes(b"this is not a DICOM file at all" * 10)
    with pytest.raises(DicomSeriesError, match=r"notes\.txt: not a DICOM file"):
        read_dicom_series(tmp_path / "s")


def test_truncated_dicom_file_is_reported(tmp_path: Path) -> None:
    paths, _, _ = write_series(tmp_path / "s", shape=(3, 16, 16))
    raw = paths[1].read_bytes()
    paths[1].write_bytes(raw[: len(raw) - 300])
    with pytest.raises(DicomSeriesError, match=rf"{paths[1].name}: slice 2 of 3 \(along the slice normal\) is truncated or corrupt"):
        read_dicom_series(tmp_path / "s")


def test_file_cut_inside_its_header_is_reported_by_position(tmp_path: Path) -> None:
    """pydicom reads a header cut short without error; the reader names the file's position, not a missing slice."""
    paths, _, _ = write_series(tmp_path / "s", shape=(5, 16, 16))
    series_uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
    paths[2].write_bytes(paths[2].read_bytes()[:300])
    with pytest.raises(DicomSeriesError, match=rf"1 of 5 files \(in name order\) are truncated or not readable DICOM: file 3 of 5, .*{paths[2].name}: truncated header"):
        read_dicom_series(tmp_path / "s", series_uid)


def test_mismatched_rows_columns_is_reported(tmp_path: Path) -> None:
    paths, _, _ = write_series(tmp_path / "s")
    ds = pydicom.dcmread(paths[3])
    ds.Rows, ds.Columns = 7, 6
    ds.save_as(paths[3])
    with pytest.raises(DicomSeriesError, match=rf"{paths[3].name}: Rows x Columns 7 x 6 differ from 6 x 7"):
        read_dicom_series(tmp_path / "s")


def test_missing_folder_and_empty_list() -> None:
    with pytest.raises(FileNotFoundError, match="no such DICOM file or folder"):
        read_dicom_series("/nonexistent/series")
    with pytest.raises(DicomSeriesError, match="no DICOM files given"):
        read_dicom_series([])
