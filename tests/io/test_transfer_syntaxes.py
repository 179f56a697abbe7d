"""Every transfer syntax a PACS may export reads back through :func:`mdafuse.io.dicom.read_dicom_series`.

The demo series (:func:`mdafuse.synthetic.demo_cohort.write_demo_cohort`, one subject and session:
MR 16 x 128 x 128 unsigned with BitsStored 12, PT 12 x 64 x 64 signed int16 with BitsStored 16 and a
per-slice RescaleSlope) are written in Explicit VR Little Endian, re-encoded file by file into each
transfer syntax, written to disk and read back with the project's reader. Lossless syntaxes must
give the original voxels, affine and SUV factors exactly; lossy ones are checked against a tolerance.

Encoders: pydicom 3 (RLE, JPEG-LS, JPEG 2000 through pyjpegls / pylibjpeg-openjpeg / pylibjpeg-rle;
deflate, implicit VR and big endian by pydicom's writer) and, where python-gdcm is importable (it is
not a declared dependency), GDCM for the JPEG lossless (process 14) syntaxes that pydicom cannot
encode; those are also written by :func:`encode_lossless_jpeg` below, so they are covered without
GDCM. JPEG Baseline is written with Pillow from an 8-bit cut of the demo MR. Decoding uses only the declared decoders: the GDCM plugin is hidden from pydicom's decoders
for the whole module, so a pass here means pylibjpeg(-libjpeg, -openjpeg, -rle), pyjpegls, pillow or
pydicom itself decoded the file.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import uid as U
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder

from mdafuse.io.dicom import DicomSeriesError, read_dicom_series
from mdafuse.io.volume import Volume
from mdafuse.synthetic.demo_cohort import write_demo_cohort

ALL_DECODABLE = [
    U.RLELossless,
    U.JPEGLSLossless,
    U.JPEGLSNearLossless,
    U.JPEG2000Lossless,
    U.JPEG2000,
    U.HTJ2KLossless,
    U.HTJ2KLosslessRPCL,
    U.HTJ2K,
    U.JPEGBaseline8Bit,
    U.JPEGExtended12Bit,
    U.JPEGLossless,
    U.JPEGLosslessSV1,
]

# (transfer syntax, how it is produced); every one must read back bit-identical
LOSSLESS = [
    pytest.param(U.ExplicitVRLittleEndian, "native", id="ExplicitVRLittleEndian"),
    pytest.param(U.ImplicitVRLittleEndian, "native", id="ImplicitVRLittleEndian"),
    pytest.param(U.DeflatedExplicitVRLittleEndian, "native", id="DeflatedExplicitVRLittleEndian"),
    pytest.param(U.ExplicitVRBigEndian, "big-endian", id="ExplicitVRBigEndian"),
    pytest.param(U.RLELossless, "pydicom", id="RLELossless"),
    pytest.param(U.JPEGLSLossless, "pydicom", id="JPEGLSLossless"),
    pytest.param(U.JPEG2000Lossless, "pydicom", id="JPEG2000Lossless"),
    pytest.param(U.JPEGLosslessSV1, "ljpeg-1", id="JPEGLosslessSV1"),
    pytest.param(U.JPEGLossless, "ljpeg-6", id="JPEGLossless-predictor6"),
    pytest.param(U.JPEGLosslessSV1, "gdcm", id="JPEGLosslessSV1-gdcm"),
    pytest.param(U.JPEGLossless, "gdcm", id="JPEGLossless-gdcm"),
]


def encode_lossless_jpeg(img: np.ndarray, precision: int, predictor: int = 1) -> bytes:
    """A minimal lossless JPEG (ITU-T T.81 process 14, one component) encoder for one frame.

    pydicom cannot encode JPEG lossless. The Huffman table codes each of the 17 difference
    categories with 5 bits (valid, not optimal). ``img`` holds stored values; signed data is
    encoded as its two's complement bit pattern, as DICOM requires.
    """
    rows, cols = img.shape
    x = img.astype(np.int64) & ((1 << precision) - 1)
    ra, rb, rc = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    ra[:, 1:], rb[1:, :], rc[1:, 1:] = x[:, :-1], x[:-1, :], x[:-1, :-1]
    predictions = {1: ra, 2: rb, 3: rc, 4: ra + rb - rc, 5: ra + ((rb - rc) >> 1), 6: rb + ((ra - rc) >> 1), 7: (ra + rb) >> 1}
    pred = predictions[predictor].copy()
    pred[0, :] = ra[0, :]  # first line: predictor 1
    pred[1:, 0] = rb[1:, 0]  # first column: predictor 2
    pred[0, 0] = 1 << (precision - 1)
    diff = (x - pred) & 0xFFFF
    diff = np.where(diff >= 0x8000, diff - 0x10000, diff).ravel()  # modulo 2**16; -32768 is category 16
    mag = np.abs(diff)
    ssss = np.zeros(mag.shape, dtype=np.int64)
    ssss[mag > 0] = np.floor(np.log2(mag[mag > 0])).astype(np.int64) + 1
    n_extra = np.where(ssss == 16, 0, ssss)  # category 16 has no extra bits
    extra = np.where(diff >= 0, diff, diff - 1) & ((1 << n_extra) - 1)
    length = 5 + n_extra
    aligned = ((ssss << n_extra | extra) << (32 - length)).astype(">u4")
    bits = np.unpackbits(aligned.view(np.uint8).reshape(-1, 4), axis=1)[np.arange(32)[None, :] < length[:, None]]
    bits = np.concatenate([bits, np.ones((-bits.size) % 8, dtype=np.uint8)])  # pad with 1-bits
    scan = np.packbits(bits).tobytes().replace(b"\xff", b"\xff\x00")  # byte stuffing

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    sof3 = bytes([precision]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])
    dht = bytes([0x00]) + bytes([0, 0, 0, 0, 17] + [0] * 11) + bytes(range(17))
    sos = bytes([1, 1, 0x00, predictor, 0, 0])
    return b"\xff\xd8" + segment(0xC3, sof3) + segment(0xC4, dht) + segment(0xDA, sos) + scan + b"\xff\xd9"


def set_encapsulated(ds: pydicom.Dataset, frame: bytes, ts: U.UID) -> None:
    ds.file_meta.TransferSyntaxUID = ts
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


@pytest.fixture(scope="module", autouse=True)
def declared_decoders_only() -> Iterator[None]:
    """Hide the GDCM decoding plugin (python-gdcm is not a dependency) for this module."""
    hidden = []
    for uid in ALL_DECODABLE:
        decoder = get_decoder(uid)
        if "gdcm" in decoder._available:
            hidden.append((decoder, decoder._available.pop("gdcm")))
    yield
    for decoder, func in hidden:
        decoder._available["gdcm"] = func


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[Path], Volume]]:
    """The demo MR and PT series of one subject and session: (files in name order, volume read)."""
    root = tmp_path_factory.mktemp("demo")
    write_demo_cohort(root, subjects=1, timepoints=1, seed=0)
    out = {}
    for modality in ("MR", "PT"):
        files = sorted((root / "sub-001" / "ses-01" / modality).glob("*.dcm"))
        out[modality] = (files, read_dicom_series(files))
    return out


def _gdcm_encode(src: Path, dst: Path, ts: U.UID) -> None:
    gdcm = pytest.importorskip("gdcm", reason="python-gdcm (the only JPEG lossless process 14 encoder here) is not installed")
    syntaxes = {
        U.JPEGLosslessSV1: gdcm.TransferSyntax.JPEGLosslessProcess14_1,
        U.JPEGLossless: gdcm.TransferSyntax.JPEGLosslessProcess14,
    }
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read(), src
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(syntaxes[ts]))
    change.SetInput(reader.GetImage())
    assert change.Change(), f"GDCM cannot encode {src} as {ts.name}"
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write(), dst


def reencode(files: list[Path], out: Path, ts: U.UID, how: str, **options) -> list[Path]:
    """Write every file of ``files`` into ``out`` (same names) in transfer syntax ``ts``."""
    out.mkdir()
    written = []
    for src in files:
        dst = out / src.name
        if how == "gdcm":
            _gdcm_encode(src, dst, ts)
        else:
            ds = pydicom.dcmread(src)
            assert ds.file_meta.TransferSyntaxUID == U.ExplicitVRLittleEndian
            if how == "pydicom":
                ds.compress(ts, **options)
                ds.save_as(dst, enforce_file_format=True)
            elif how == "native":
                ds.file_meta.TransferSyntaxUID = ts
                ds.save_as(dst, enforce_file_format=True)
            elif how.startswith("ljpeg-"):
                set_encapsulated(ds, encode_lossless_jpeg(ds.pixel_array, ds.BitsStored, int(how[6:])), ts)
                ds.save_as(dst, enforce_file_format=True)
            elif how == "big-endian":
                # pydicom writes OW values as they are: swap the 16-bit samples by hand
                assert ds.BitsAllocated == 16
                ds.PixelData = np.frombuffer(ds.PixelData, dtype="<u2").byteswap().tobytes()
                ds.file_meta.TransferSyntaxUID = ts
                pydicom.dcmwrite(dst, ds, enforce_file_format=True)
            else:
                raise ValueError(how)
        back = pydicom.dcmread(dst, stop_before_pixels=True)
        assert back.file_meta.TransferSyntaxUID == ts, f"{dst} was written as {back.file_meta.TransferSyntaxUID.name}"
        written.append(dst)
    return written


def _check_encoding(path: Path, ts: U.UID) -> None:
    """The file really is in ``ts`` (not just labelled so)."""
    raw = path.read_bytes()
    ds = pydicom.dcmread(path)
    if ts == U.DeflatedExplicitVRLittleEndian:
        assert b"MdAFuse synthetic phantom" not in raw  # the dataset is deflated, header text included
    if ts == U.ExplicitVRBigEndian:
        assert ds.original_encoding == (False, False)
    if ts == U.ImplicitVRLittleEndian:
        assert ds.original_encoding == (True, True)
    if ts.is_encapsulated:
        assert ds["PixelData"].is_undefined_length
        assert len(ds.PixelData) < ds.Rows * ds.Columns * 2


@pytest.mark.parametrize("modality", ["MR", "PT"])
@pytest.mark.parametrize(("ts", "how"), LOSSLESS)
def test_lossless_syntax_reads_back_identical(demo, tmp_path: Path, ts: U.UID, how: str, modality: str) -> None:
    files, ref = demo[modality]
    written = reencode(files, tmp_path / ts.keyword, ts, how)
    _check_encoding(written[0], ts)

    vol = read_dicom_series(tmp_path / ts.keyword)

    assert vol.data.shape == ref.data.shape
    assert np.array_equal(vol.data, ref.data)
    assert np.array_equal(vol.affine, ref.affine)
    assert vol.modality == ref.modality and vol.units == ref.units
    assert vol.series_uid == ref.series_uid and vol.frame_of_reference_uid == ref.frame_of_reference_uid
    assert vol.warnings == ref.warnings
    assert [p.name for p in vol.source_files] == [p.name for p in ref.source_files]
    if modality == "PT":
        assert ref.units == "SUVbw"
        assert np.array_equal(vol.suv_factor, ref.suv_factor)
    # stored values, signedness and BitsStored survive the round trip
    for src, dst in zip(files, written):
        a, b = pydicom.dcmread(src), pydicom.dcmread(dst)
        assert (b.BitsAllocated, b.BitsStored, b.HighBit, b.PixelRepresentation) == (
            a.BitsAllocated, a.BitsStored, a.HighBit, a.PixelRepresentation
        )  # fmt: skip
        pa, pb = a.pixel_array, b.pixel_array
        # big endian comes back as '>u2' / '>i2': compare kind and size, not byte order
        assert (pb.dtype.kind, pb.dtype.itemsize) == (pa.dtype.kind, pa.dtype.itemsize) == ("u" if modality == "MR" else "i", 2)
        assert np.array_equal(pa, pb), dst


def test_demo_uses_the_expected_pixel_formats(demo) -> None:
    """The cases the lossless tests exercise: unsigned 12-bit MR, signed full-range 16-bit PET."""
    mr = pydicom.dcmread(demo["MR"][0][0])
    pt = pydicom.dcmread(demo["PT"][0][0])
    assert (mr.BitsAllocated, mr.BitsStored, mr.PixelRepresentation) == (16, 12, 0)
    assert (pt.BitsAllocated, pt.BitsStored, pt.PixelRepresentation) == (16, 16, 1)
    assert max(int(pydicom.dcmread(f).pixel_array.max()) for f in demo["PT"][0]) == 32767


# lossy syntaxes: (ts, options, modality, max error in stored units)
LOSSY = [
    pytest.param(U.JPEGLSNearLossless, {"jls_error": 2}, "MR", 2, id="JPEGLSNearLossless-MR"),
    pytest.param(
        U.JPEGLSNearLossless, {"jls_error": 2}, "PT", 2, id="JPEGLSNearLossless-PT",
        marks=pytest.mark.skip(
            reason="the demo PET uses the full int16 range; JPEG-LS near-lossless cannot encode signed values "
            "within jls_error of the range ends (pydicom refuses such arrays, and when compressing a dataset's "
            "own buffer it silently wraps 32767 to -32768)"
        ),
    ),  # fmt: skip
    pytest.param(U.JPEG2000, {"j2k_psnr": [80]}, "MR", 0.005, id="JPEG2000-MR"),
    pytest.param(U.JPEG2000, {"j2k_psnr": [80]}, "PT", 0.005, id="JPEG2000-PT"),
]


@pytest.mark.parametrize(("ts", "options", "modality", "tolerance"), LOSSY)
def test_lossy_syntax_reads_back_within_tolerance(demo, tmp_path: Path, ts: U.UID, options: dict, modality: str, tolerance: float) -> None:
    """Near-lossless JPEG-LS: every stored value within NEAR; lossy JPEG 2000: within ``tolerance`` of the range."""
    files, ref = demo[modality]
    written = reencode(files, tmp_path / ts.keyword, ts, "pydicom", **options)
    _check_encoding(written[0], ts)

    vol = read_dicom_series(tmp_path / ts.keyword)

    assert np.array_equal(vol.affine, ref.affine)
    assert vol.units == ref.units
    for src, dst in zip(files, written):
        a, b = pydicom.dcmread(src).pixel_array, pydicom.dcmread(dst).pixel_array
        assert b.dtype == a.dtype
        err = np.abs(b.astype(np.int64) - a.astype(np.int64)).max()
        limit = tolerance if ts == U.JPEGLSNearLossless else tolerance * (int(a.max()) - int(a.min()))
        assert err <= limit, f"{dst}: max stored error {err} > {limit}"
    # voxels: the stored error times each slice's slope (and SUV factor)
    scale = np.ones(ref.data.shape[0])
    slopes = {p.name: float(pydicom.dcmread(p, stop_before_pixels=True).get("RescaleSlope", 1) or 1) for p in files}
    scale *= np.array([slopes[p.name] for p in ref.source_files])
    if ref.suv_factor is not None:
        scale *= ref.suv_factor
    stored_limit = tolerance if ts == U.JPEGLSNearLossless else tolerance * 32767
    assert (np.abs(vol.data.astype(np.float64) - ref.data) <= stored_limit * scale[:, None, None] * (1 + 1e-5) + 1e-6).all()


def test_jpeg_baseline_8bit_reads_back_within_tolerance(demo, tmp_path: Path) -> None:
    """JPEG Baseline holds 8-bit samples only, and pydicom has no JPEG encoder: the demo MR is cut to
    8 bits (``stored >> 4``, RescaleSlope 16), encoded with Pillow at quality 95 and read back."""
    from PIL import Image

    files, ref = demo["MR"]
    out = tmp_path / "jpeg"
    out.mkdir()
    eight = {}
    for src in files:
        ds = pydicom.dcmread(src)
        px = (ds.pixel_array >> 4).astype(np.uint8)
        eight[src.name] = px
        buf = io.BytesIO()
        Image.fromarray(px).save(buf, format="JPEG", quality=95)
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.RescaleSlope, ds.RescaleIntercept = "16", "0"
        set_encapsulated(ds, buf.getvalue(), U.JPEGBaseline8Bit)
        ds.save_as(out / src.name, enforce_file_format=True)

    vol = read_dicom_series(out)

    assert np.array_equal(vol.affine, ref.affine)
    expected = np.stack([eight[p.name] for p in ref.source_files]).astype(np.float64) * 16
    err = np.abs(vol.data - expected) / 16  # in 8-bit stored units
    assert err.mean() < 2.5 and err.max() <= 16, (err.mean(), err.max())  # noisy phantom: about 1.3 and 10
    assert np.abs(vol.data - ref.data).mean() < 16 + 8  # close to the 12-bit original too


@pytest.mark.parametrize("ts", ALL_DECODABLE, ids=[ts.keyword for ts in ALL_DECODABLE])
def test_declared_decoders_cover_every_compressed_syntax(ts: U.UID) -> None:
    """Without GDCM, the declared decoders (pylibjpeg + plugins, pyjpegls, pillow) decode each syntax."""
    decoder = get_decoder(ts)
    assert decoder.is_available, f"{ts.name}: {decoder.missing_dependencies}"
    assert "gdcm" not in decoder.available_plugins


def test_jpeg_ls_demo_series_reads(demo, tmp_path: Path) -> None:
    """The reported failure: a demo series saved as JPEG-LS lossless raised 'all plugins are missing dependencies'."""
    files, ref = demo["PT"]
    reencode(files, tmp_path / "jls", U.JPEGLSLossless, "pydicom")
    assert np.array_equal(read_dicom_series(tmp_path / "jls").data, ref.data)


@pytest.fixture
def no_jpeg_ls_decoder() -> Iterator[None]:
    """Make pydicom's JPEG-LS Lossless decoder look as if no plugin were installed."""
    decoder = get_decoder(U.JPEGLSLossless)
    saved = decoder._available.copy(), decoder._unavailable.copy()
    decoder._available.clear()
    decoder._unavailable.update({"pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-libjpeg>=2.1"), "pyjpegls": ("pyjpegls>=1.2",)})
    yield
    decoder._available.clear()
    decoder._available.update(saved[0])
    decoder._unavailable.clear()
    decoder._unavailable.update(saved[1])


def test_missing_decoder_is_one_line_naming_file_and_syntax(demo, tmp_path: Path, no_jpeg_ls_decoder: None) -> None:
    files, _ = demo["MR"]
    written = reencode(files[:3], tmp_path / "jls", U.JPEGLSLossless, "pydicom")

    with pytest.raises(DicomSeriesError) as info:
        read_dicom_series(tmp_path / "jls")

    msg = str(info.value)
    assert "\n" not in msg and "\t" not in msg
    assert msg.startswith(str(written[0]) + ": slice 1 of 3")
    assert "no decoder installed for transfer syntax JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)" in msg
    assert "pylibjpeg-libjpeg" in msg and "pyjpegls" in msg
    assert "corrupt" not in msg


def test_corrupt_compressed_slice_names_file_and_syntax(demo, tmp_path: Path) -> None:
    files, _ = demo["MR"]
    written = reencode(files[:3], tmp_path / "rle", U.RLELossless, "pydicom")
    ds = pydicom.dcmread(written[1])
    frame = encapsulate([b"\x00" * 64])  # an RLE header that declares no segments
    ds.PixelData = frame
    ds.save_as(written[1])

    with pytest.raises(DicomSeriesError) as info:
        read_dicom_series(tmp_path / "rle")

    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{written[1]}: slice 2 of 3 (along the slice normal) is truncated or corrupt")
    assert "RLE Lossless (1.2.840.10008.1.2.5)" in msg
