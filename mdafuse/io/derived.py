"""Write fused or enhanced results: PNG slices, a NIfTI volume, or a derived DICOM series.

The derived DICOM series (:func:`write_derived_dicom`) lies on the grid of its source MR series:

* RGB results are written as Secondary Capture Image Storage (``OT``, 8-bit RGB), grey results as
  MR Image Storage (16-bit, RescaleSlope ``1/65535`` so the rescaled values are the [0, 1] input);
* new Study (unless ``new_study=False``), Series and SOP Instance UIDs from
  :func:`pydicom.uid.generate_uid`; ImageType ``DERIVED\\SECONDARY``;
* geometry copied from the source volume (ImagePositionPatient per slice, ImageOrientationPatient,
  PixelSpacing, SliceThickness, FrameOfReferenceUID);
* provenance: ``SourceImageSequence`` (per slice: the source MR instance, purpose DCM 121322
  "Source image for image processing operation") and ``ReferencedSeriesSequence`` (the source MR
  series with all its instances, and any ``extra_sources`` such as the PET series). When the study
  is new, the same references are also given per study in
  ``StudiesContainingOtherReferencedInstancesSequence``.

Patient and study attributes are copied from the source header by whitelist only (never the
whole header). With ``deidentify=True`` PatientName and PatientID become the pseudonym
(:func:`mdafuse.privacy.pseudonym`), PatientBirthDate and the other identifying attributes of
the whitelist are emptied, and ``PatientIdentityRemoved = YES`` is set. Dates are kept (DICOM PS3.15
"Retain Longitudinal Temporal Information with Full Dates" option) because longitudinal tracking
needs intervals; UIDs in the provenance references are kept so results stay traceable, which makes
the output pseudonymous rather than anonymous.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, SecondaryCaptureImageStorage, generate_uid

from mdafuse.io.encode import to_uint8
from mdafuse.io.images import write_image
from mdafuse.io.nifti import write_nifti
from mdafuse.io.volume import Volume
from mdafuse.privacy import pseudonym

__all__ = [
    "DicomSource",
    "write_png_slices",
    "write_derived_nifti",
    "write_derived_dicom",
    "new_file_dataset",
    "IDENTIFYING_ATTRIBUTES",
]

logger = logging.getLogger(__name__)

#: Attributes emptied (Type 2) or removed by ``deidentify=True`` besides PatientName/PatientID.
IDENTIFYING_ATTRIBUTES = (
    "PatientBirthDate",
    "PatientBirthTime",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "MilitaryRank",
    "MedicalRecordLocator",
    "EthnicGroup",
    "PatientComments",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "OperatorsName",
    "PerformingPhysicianName",
    "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy",
    "RequestingPhysician",
    "DeviceSerialNumber",
)

_TYPE2_EMPTY = {"PatientBirthDate", "AccessionNumber", "ReferringPhysicianName", "StudyID"}

_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
    "PositionReferenceIndicator",
)

_MR_ATTRS = (
    ("ScanningSequence", "RM"),
    ("SequenceVariant", "NONE"),
    ("ScanOptions", ""),
    ("MRAcquisitionType", "3D"),
    ("RepetitionTime", None),
    ("EchoTime", None),
    ("EchoTrainLength", None),
    ("MagneticFieldStrength", None),
)

_SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")


def write_png_slices(images: np.ndarray, out_dir: str | Path, prefix: str = "slice", indices: Sequence[int] | None = None) -> list[Path]:
    """Write each slice of a stack as an 8-bit PNG (``{prefix}_{index:04d}.png``).

    Args:
        images: ``(Z, H, W)`` grey or ``(Z, H, W, 3)`` RGB float in [0, 1].
        out_dir: destination folder (created).
        prefix: file name prefix; must not hold identifying text.
        indices: slice numbers used in the file names (default ``0..Z-1``), e.g. from
            :func:`mdafuse.io.resample.select_slices`.

    Returns:
        The written paths, in slice order.
    """
    arr = np.asarray(images)
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[3] != 3):
        raise ValueError(f"images must have shape (Z, H, W) or (Z, H, W, 3); got {arr.shape}")
    idx = list(range(arr.shape[0])) if indices is None else [int(i) for i in indices]
    if len(idx) != arr.shape[0]:
        raise ValueError(f"indices has {len(idx)} entries for {arr.shape[0]} slices")
    out = Path(out_dir)
    return [write_image(out / f"{prefix}_{i:04d}.png", arr[n]) for n, i in enumerate(idx)]


def write_derived_nifti(images: np.ndarray, reference: Volume, path: str | Path) -> Path:
    """Write a ``(Z, Y, X)`` or ``(Z, Y, X, 3)`` result on ``reference``'s grid as NIfTI."""
    arr = np.asarray(images)
    if arr.shape[:3] != reference.shape:
        raise ValueError(f"images shape {arr.shape} does not match the reference grid {reference.shape}")
    return write_nifti(Volume(data=arr, affine=reference.affine, frame_of_reference_uid=reference.frame_of_reference_uid), path)


def new_file_dataset(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """An empty dataset with file meta information (explicit VR little endian) and SOP UIDs."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.SpecificCharacterSet = "ISO_IR 100"
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _series_reference(vol: Volume | DicomSource) -> Dataset:
    item = Dataset()
    item.SeriesInstanceUID = vol.series_uid
    refs = []
    for uid in vol.source_sop_uids:
        ref = Dataset()
        ref.ReferencedSOPClassUID = vol.sop_class_uid
        ref.ReferencedSOPInstanceUID = uid
        refs.append(ref)
    item.ReferencedInstanceSequence = DicomSequence(refs)
    return item


@dataclass(frozen=True)
class DicomSource:
    """What a derived series needs of its source MR series, without its pixels or files (picklable).

    Attributes:
        shape: ``(Z, Y, X)`` of the source grid.
        affine: its voxel-to-LPS affine.
        series_uid, sop_class_uid, frame_of_reference_uid: the source series' UIDs.
        source_sop_uids: SOPInstanceUID of each source slice, in slice order.
        header: the first source file's header (no pixels), serialised as DICOM bytes; it holds
            the patient module, so it stays in memory and never reaches an output as it is.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    series_uid: str
    sop_class_uid: str
    frame_of_reference_uid: str
    source_sop_uids: tuple[str, ...]
    header: bytes

    @classmethod
    def from_volume(cls, volume: Volume) -> "DicomSource":
        """The reference of a volume read by :func:`mdafuse.io.dicom.read_dicom_series`.

        Raises:
            ValueError: the volume does not come from a single-frame DICOM series.
        """
        if not volume.series_uid or len(volume.source_files) != volume.shape[0] or len(volume.source_sop_uids) != volume.shape[0]:
            raise ValueError("source must be a single-frame DICOM series read with read_dicom_series (series UID, files and SOP UIDs per slice)")
        import io

        header = pydicom.dcmread(volume.source_files[0], stop_before_pixels=True)
        buf = io.BytesIO()
        header.save_as(buf, enforce_file_format=False)
        return cls(tuple(volume.shape), np.asarray(volume.affine, dtype=np.float64), str(volume.series_uid), str(volume.sop_class_uid or ""),
                   str(volume.frame_of_reference_uid or ""), tuple(volume.source_sop_uids), buf.getvalue())

    @property
    def spacing(self) -> tuple[float, float, float]:
        """``(dz, dy, dx)`` in mm, from the affine's columns."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(norms[2]), float(norms[1]), float(norms[0])

    def read_header(self) -> Dataset:
        import io

        return pydicom.dcmread(io.BytesIO(self.header), force=True)


def write_derived_dicom(
    images: np.ndarray,
    source: Volume | DicomSource,
    out_dir: str | Path,
    *,
    slice_indices: Sequence[int] | None = None,
    series_description: str = "MdAFuse fused MR-PET",
    series_number: int = 1001,
    deidentify: bool = False,
    salt: str | None = None,
    new_study: bool = True,
    extra_sources: Sequence[Volume] = (),
    prefix: str = "IMG",
) -> list[Path]:
    """Write a derived DICOM series on the grid of the source MR series.

    Args:
        images: ``(N, Y, X)`` grey or ``(N, Y, X, 3)`` RGB float in [0, 1] on the source grid
            (``N`` slices, the source slices ``slice_indices``).
        source: the source MR volume as returned by :func:`mdafuse.io.dicom.read_dicom_series`
            (it must carry ``source_files``, ``source_sop_uids``, ``series_uid``), or its
            :class:`DicomSource` (what a worker that no longer has the files keeps of it).
        out_dir: destination folder (created); files are ``{prefix}_{k:04d}.dcm``.
        slice_indices: source slice of each image (default ``0..Z-1``, then ``N`` must equal Z).
        series_description: SeriesDescription of the derived series.
        series_number: SeriesNumber of the derived series.
        deidentify: replace PatientName/PatientID with the pseudonym and empty the identifying
            attributes (see module docstring).
        salt: pseudonymisation salt.
        new_study: give the derived series a new StudyInstanceUID (default); False keeps the
            source study, as a PACS would expect for a derived series of the same visit.
        extra_sources: further series used to make the result (e.g. the PET), referenced in
            ReferencedSeriesSequence.
        prefix: file name prefix (must not hold identifying text).

    Returns:
        The written files, in slice order.

    Raises:
        ValueError: bad shape or range, or a source without DICOM provenance.
    """
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[3] != 3):
        raise ValueError(f"images must have shape (N, Y, X) or (N, Y, X, 3); got {arr.shape}")
    if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError("images must hold finite values in [0, 1]")
    idx = list(range(source.shape[0])) if slice_indices is None else [int(i) for i in slice_indices]
    if len(idx) != arr.shape[0]:
        raise ValueError(f"{arr.shape[0]} images for {len(idx)} slice indices")
    if arr.shape[1:3] != source.shape[1:]:
        raise ValueError(f"images are {arr.shape[1]}x{arr.shape[2]} but the source grid is {source.shape[1]}x{source.shape[2]}")
    if any(not 0 <= i < source.shape[0] for i in idx):
        raise ValueError(f"slice_indices must lie in 0..{source.shape[0] - 1}")
    if not isinstance(source, DicomSource):
        source = DicomSource.from_volume(source)
    for extra in extra_sources:
        if not extra.series_uid:
            raise ValueError("every extra source must carry its series_uid")

    header = source.read_header()
    key = pseudonym(str(header.get("PatientID", "")), salt)
    rgb = arr.ndim == 4
    study_uid = generate_uid() if new_study else str(header.StudyInstanceUID)
    series_uid = generate_uid()
    now = datetime.now()
    rows, cols = source.shape[1:]
    row_dir = source.affine[:3, 0] / np.linalg.norm(source.affine[:3, 0])
    col_dir = source.affine[:3, 1] / np.linalg.norm(source.affine[:3, 1])
    dz, dy, dx = source.spacing
    thickness = header.get("SliceThickness") or dz

    references = [_series_reference(source)] + [_series_reference(v) for v in extra_sources]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for n, k in enumerate(idx):
        sop_uid = generate_uid()
        ds = new_file_dataset(SecondaryCaptureImageStorage if rgb else MRImageStorage, sop_uid)
        for name in _PATIENT_STUDY:
            if name in header:
                setattr(ds, name, header.data_element(name).value)
        for name in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"):
            if name not in ds:
                setattr(ds, name, "")
        if deidentify:
            ds.PatientName = key
            ds.PatientID = key
            for name in IDENTIFYING_ATTRIBUTES:
                if name in ds:
                    if name in _TYPE2_EMPTY:
                        setattr(ds, name, "")
                    else:
                        delattr(ds, name)
            ds.PatientIdentityRemoved = "YES"
            ds.DeidentificationMethod = "MdAFuse: whitelist copy, salted sha256 pseudonym, dates kept"
            ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = source.frame_of_reference_uid or str(header.get("FrameOfReferenceUID", ""))
        ds.SeriesNumber = series_number
        ds.InstanceNumber = n + 1
        ds.SeriesDescription = series_description
        ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.Manufacturer = "MdAFuse"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.DerivationDescription = series_description
        if rgb:
            ds.Modality = "OT"
            ds.ConversionType = "WSD"
            ds.SamplesPerPixel = 3
            ds.PhotometricInterpretation = "RGB"
            ds.PlanarConfiguration = 0
            ds.BitsAllocated = ds.BitsStored = 8
            ds.HighBit = 7
            pixels = to_uint8(arr[n])
        else:
            ds.Modality = "MR"
            for name, default in _MR_ATTRS:
                if name in header:
                    setattr(ds, name, header.data_element(name).value)
                elif default is not None:
                    setattr(ds, name, default)
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 16
            ds.HighBit = 15
            ds.RescaleSlope = f"{1.0 / 65535.0:.10g}"
            ds.RescaleIntercept = "0"
            ds.RescaleType = "US"
            ds.WindowCenter = "0.5"
            ds.WindowWidth = "1"
            pixels = np.clip(np.rint(arr[n] * 65535.0), 0, 65535).astype(np.uint16)
        ds.PixelRepresentation = 0
        ds.Rows, ds.Columns = rows, cols
        ds.PixelSpacing = [f"{dy:.6g}", f"{dx:.6g}"]
        ds.SliceThickness = f"{float(thickness):.6g}"
        ds.SpacingBetweenSlices = f"{dz:.6g}"
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
        position = source.affine @ np.array([0.0, 0.0, float(k), 1.0])
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position[:3]]
        ds.SliceLocation = f"{float(position[:3] @ np.cross(row_dir, col_dir)):.6f}"
        src = Dataset()
        src.ReferencedSOPClassUID = source.sop_class_uid
        src.ReferencedSOPInstanceUID = source.source_sop_uids[k]
        src.PurposeOfReferenceCodeSequence = DicomSequence([_code(*_SOURCE_PURPOSE)])
        ds.SourceImageSequence = DicomSequence([src])
        ds.ReferencedSeriesSequence = DicomSequence(references)
        if new_study:
            study_ref = Dataset()
            study_ref.StudyInstanceUID = str(header.StudyInstanceUID)
            study_ref.ReferencedSeriesSequence = DicomSequence([_series_reference(source)] + [_series_reference(v) for v in extra_sources])
            ds.StudiesContainingOtherReferencedInstancesSequence = DicomSequence([study_ref])
        ds.PixelData = pixels.tobytes()
        path = out / f"{prefix}_{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    logger.info("wrote %d derived %s DICOM instances to %s", len(written), "RGB" if rgb else "grey", out)
    return written
