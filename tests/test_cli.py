"""The mdafuse command line: --help, fuse one pair, fuse a folder."""

from __future__ import annotations

import numpy as np
import pytest

from mdafuse.cli import main
from mdafuse.io.images import read_image, write_image


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name, _ in __import__("mdafuse.cli", fromlist=["COMMANDS"]).COMMANDS:
        assert name in out


def _pair(folder, name, rng, size=(40, 44), functional="PET"):
    write_image(folder / "MR" / name, rng.random(size))
    pet = np.zeros((*size, 3))
    pet[10:20, 10:20] = [1.0, 0.4, 0.0]
    write_image(folder / functional / name, pet)


def test_fuse_single_pair(tmp_path, capsys):
    rng = np.random.default_rng(0)
    _pair(tmp_path, "a.png", rng)
    out = tmp_path / "fused.png"
    assert main(["fuse", str(tmp_path / "MR" / "a.png"), str(tmp_path / "PET" / "a.png"), "-o", str(out)]) == 0
    fused = read_image(out)
    assert fused.shape == (40, 44, 3)
    # the hot square of the PET keeps its red hue in the fused image
    assert fused[12:18, 12:18, 0].mean() > fused[12:18, 12:18, 2].mean() + 0.3


def test_fuse_folder_and_bad_pair(tmp_path, capsys):
    rng = np.random.default_rng(1)
    _pair(tmp_path, "a.png", rng)
    _pair(tmp_path, "b.png", rng)
    write_image(tmp_path / "MR" / "c.png", rng.random((40, 44)))
    write_image(tmp_path / "PET" / "c.png", rng.random((20, 20, 3)))  # size mismatch
    code = main(["fuse", "--pairs", str(tmp_path), "-o", str(tmp_path / "out")])
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    assert "skipped c.png" in capsys.readouterr().out


def test_fuse_modality_picks_the_shipped_weights(tmp_path):
    """A SPECT/ folder (or --modality SPECT) fuses with the SPECT weights, --modality PET with the default."""
    from mdafuse.fusion.pipeline import fuse_pair

    _pair(tmp_path, "a.png", np.random.default_rng(2), functional="SPECT")
    mr, spect = read_image(tmp_path / "MR" / "a.png"), read_image(tmp_path / "SPECT" / "a.png")
    assert main(["fuse", "--pairs", str(tmp_path), "-o", str(tmp_path / "auto")]) == 0
    assert main(["fuse", str(tmp_path / "MR" / "a.png"), str(tmp_path / "SPECT" / "a.png"), "--modality", "pet", "-o", str(tmp_path / "pet.png")]) == 0
    expected = {m: np.rint(255 * fuse_pair(mr, spect, modality=m)) for m in ("SPECT", "PET")}
    np.testing.assert_array_equal(np.rint(255 * read_image(tmp_path / "auto" / "a.png")), expected["SPECT"])
    np.testing.assert_array_equal(np.rint(255 * read_image(tmp_path / "pet.png")), expected["PET"])
    assert not np.array_equal(expected["SPECT"], expected["PET"])


def test_fuse_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["fuse", str(tmp_path / "no.png"), str(tmp_path / "no2.png"), "-o", str(tmp_path / "f.png")]) == 2
    assert "no.png: no such image file" in capsys.readouterr().err



def test_train_has_one_weight_option_per_loss_term(capsys):
    from dataclasses import fields

    from mdafuse.commands.train import LOSS_TERMS
    from mdafuse.train.losses import LossWeights

    assert list(LOSS_TERMS) == [f.name for f in fields(LossWeights)]
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--w-mse-cap" in out and "--w-ssim-functional" in out


def test_fuse_volume_pair_with_scores(tmp_path, capsys):
    """Two DICOM series of the demo cohort: NIfTI volumes on the MR grid, PNG slices and the pair's metrics."""
    import json

    from mdafuse.synthetic.demo_cohort import write_demo_cohort
    from mdafuse.io.nifti import read_nifti

    write_demo_cohort(tmp_path / "c", 1, 1, 0)
    mr_dir, pt_dir = (next(p for p in (tmp_path / "c").rglob(name) if p.is_dir()) for name in ("MR", "PT"))
    out = tmp_path / "out"
    assert main(["fuse", str(mr_dir), str(pt_dir), "-o", str(out), "--enhance", "--score", "--slice-images", "brain"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    scores = json.loads(printed[-1])
    assert 1 <= scores["n_scored"] <= 16 and 0 < scores["SSIM"] < 2 and np.isfinite(scores["VIF"])
    fused = read_nifti(out / "fused.nii.gz")
    assert fused.data.shape == (16, 128, 128, 3) and read_nifti(out / "enhanced.nii.gz").data.shape == (16, 128, 128, 3)
    assert len(list(out.glob("fused_*.png"))) == scores["n_scored"] == len(list(out.glob("enhanced_*.png")))


def test_fuse_volume_writes_a_deidentified_dicom_series(tmp_path, capsys):
    """--dicom: the series opens in pydicom, references its MR sources, and carries no source name, ID or birth date."""
    import pydicom

    from mdafuse.synthetic.demo_cohort import write_demo_cohort

    write_demo_cohort(tmp_path / "c", 1, 1, 0)
    mr_dir, pt_dir = (next(p for p in (tmp_path / "c").rglob(name) if p.is_dir()) for name in ("MR", "PT"))
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(mr_dir.iterdir())]
    name, pid, birth = str(sources[0].PatientName), str(sources[0].PatientID), str(sources[0].get("PatientBirthDate", ""))
    assert name and pid and birth
    assert main(["fuse", str(mr_dir), str(pt_dir), "-o", str(tmp_path / "out"), "--dicom"]) == 0
    files = sorted((tmp_path / "out/dicom").glob("*.dcm"))
    assert len(files) == len(sources)
    source_uids = {str(s.SOPInstanceUID) for s in sources}
    for f in files:
        ds = pydicom.dcmread(f)
        assert ds.pixel_array.shape == (128, 128, 3) and ds.Modality == "OT" and ds.PatientIdentityRemoved == "YES"
        assert str(ds.PatientName) != name and str(ds.PatientID) != pid and not ds.get("PatientBirthDate")
        assert str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID) in source_uids
        assert str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID) == str(sources[0].SeriesInstanceUID)
        raw = f.read_bytes()
        assert name.encode() not in raw and pid.encode() not in raw and birth.encode() not in raw
    kept = tmp_path / "kept"
    assert main(["fuse", str(mr_dir), str(pt_dir), "-o", str(kept), "--dicom", "--keep-identity"]) == 0
    assert str(pydicom.dcmread(sorted((kept / "dicom").glob("*.dcm"))[0]).PatientID) == pid
