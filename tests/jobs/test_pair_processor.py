"""Per-pair work of the cohort job without Ray: DICOM volume pairs from the demo cohort, bad pairs, resume records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from jobs.common import METRIC_NAMES, ROW_SCHEMA, JobConfig, PairProcessor, crash_hook_from_env, normalise_row, rows_to_table
from mdafuse.cohort import build_pair_table


class CountingFuser:
    """The real Fuser, counting its calls."""

    def __init__(self) -> None:
        from mdafuse.fusion.pipeline import Fuser

        self.inner = Fuser()
        self.weights_sha256 = self.inner.weights_sha256
        self.model_version = self.inner.model_version
        self.calls = 0

    def fuse(self, mr, fn):
        self.calls += 1
        return self.inner.fuse(mr, fn)

    def fuse_batch(self, mr, fy):
        self.calls += 1
        return self.inner.fuse_batch(mr, fy)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from mdafuse.io.demo_cohort import write_demo_cohort

    root = tmp_path_factory.mktemp("demo")
    write_demo_cohort(root / "cohort", 1, 1, 0)
    return root


@pytest.fixture(scope="module")
def volume_result(demo):
    cfg = JobConfig(out=str(demo / "out"), cohort="demo", run_id="r", batch_size=5)
    fuser = CountingFuser()
    proc = PairProcessor(cfg, fuser=fuser)
    pair = build_pair_table(demo / "cohort", "demo").table.to_pylist()[0]
    row = proc.process(pair)
    return {"cfg": cfg, "proc": proc, "fuser": fuser, "pair": pair, "row": row}


def test_volume_pair_outputs(volume_result):
    from mdafuse.io.nifti import read_nifti

    row, cfg, pair = volume_result["row"], volume_result["cfg"], volume_result["pair"]
    assert row["status"] == "ok", row["error"]
    assert (row["n_slices"], row["height"], row["width"]) == (16, 128, 128)
    assert 1 <= row["n_scored"] <= 16
    assert volume_result["fuser"].calls == 4  # ceil(16 / batch_size 5) network calls
    assert all(np.isfinite(row[m]) for m in METRIC_NAMES)
    folder = Path(cfg.images_root) / pair["pair_id"]
    fused = read_nifti(folder / "fused.nii.gz")
    assert fused.data.shape == (16, 128, 128, 3)
    enhanced = read_nifti(folder / "enhanced.nii.gz")
    assert enhanced.data.shape == (16, 128, 128, 3)
    assert np.allclose(enhanced.affine, fused.affine, atol=1e-6, rtol=0)
    assert 0.0 <= float(enhanced.data.min()) and float(enhanced.data.max()) <= 1.0
    pngs = sorted(p.name for p in folder.glob("fused_*.png"))
    assert len(pngs) == row["n_scored"] and len(list(folder.glob("enhanced_*.png"))) == row["n_scored"]
    assert json.loads((folder / "done.json").read_text())["pair_id"] == pair["pair_id"]


def test_volume_metrics_are_slice_means(volume_result, demo):
    """Recompute SD and EN from the written NIfTI (8-bit RGB) over the same brain slices."""
    from mdafuse.io.dicom import read_dicom_series
    from mdafuse.io.nifti import read_nifti
    from mdafuse.io.resample import resample_to, select_slices
    from mdafuse.io.windows import normalise_mr, pet_colormap, window_suv
    from mdafuse.metrics import compute_all

    row, pair = volume_result["row"], volume_result["pair"]
    mr = read_dicom_series(pair["mr"])
    pet = resample_to(read_dicom_series(pair["pet"]), mr)
    mr_n, pet_rgb = normalise_mr(mr.data), pet_colormap(window_suv(pet.data, 0, 8))
    fused = read_nifti(Path(volume_result["cfg"].images_root) / pair["pair_id"] / "fused.nii.gz").data
    brain = select_slices(mr, "brain")
    assert brain.size == row["n_scored"]
    ref = [compute_all(mr_n[k], pet_rgb[k], fused[k], names=["SD", "EN"]) for k in brain]
    assert abs(row["SD"] - np.mean([r["SD"] for r in ref])) < 0.5
    assert abs(row["EN"] - np.mean([r["EN"] for r in ref])) < 0.05


def test_done_record_is_reused(volume_result):
    proc, fuser = volume_result["proc"], volume_result["fuser"]
    before = fuser.calls
    again = proc.process(volume_result["pair"])
    assert fuser.calls == before
    assert again["finished_at"] == volume_result["row"]["finished_at"]
    table = rows_to_table([normalise_row(again)])
    assert table.schema == ROW_SCHEMA and table.num_rows == 1


def test_bad_volume_pairs_become_error_rows(demo, volume_result, tmp_path):
    pair = dict(volume_result["pair"])
    proc = PairProcessor(JobConfig(out=str(tmp_path / "out"), cohort="demo", run_id="bad"), fuser=volume_result["fuser"])
    broken = tmp_path / "PT"
    shutil.copytree(pair["pet"], broken)
    victim = sorted(broken.iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:300])
    rows = [
        proc.process({**pair, "pair_id": "corrupt0000000000", "pet": str(broken)}),
        proc.process({**pair, "pair_id": "nopet00000000000", "pet": ""}),
        proc.process({**pair, "pair_id": "nomr000000000000", "mr": str(tmp_path / "gone")}),
    ]
    assert [r["status"] for r in rows] == ["error"] * 3
    assert "DicomSeriesError" in rows[0]["error"] and str(broken) not in rows[0]["error"]
    assert "missing PET" in rows[1]["error"]
    assert rows[2]["error"] == "FileNotFoundError: <mr>: no such file or folder"
    for r in rows:
        assert (tmp_path / "out/images/cohort=demo/run=bad" / r["pair_id"] / "done.json").is_file()


def test_dicom_tree_discovery_pairs_series(demo, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(demo / "cohort", tree, ignore=shutil.ignore_patterns("*.csv"))
    table = build_pair_table(tree, "demo").table
    assert table.num_rows == 1
    row = table.to_pylist()[0]
    assert row["session"] == "ses-01" and row["mr_series_uid"] and row["pet_series_uid"]
    assert row["mr"].endswith("MR") and row["pet"].endswith("PT")
    shutil.rmtree(Path(row["pet"]))
    lonely = build_pair_table(tree, "demo").table.to_pylist()[0]
    assert lonely["pet"] == "" and lonely["pair_id"] == row["pair_id"]


def test_config_validation_and_crash_hook(monkeypatch):
    with pytest.raises(ValueError, match="run_id must be"):
        JobConfig(out="/tmp/x", cohort="c", run_id="a/b")
    with pytest.raises(ValueError, match="slice_images"):
        JobConfig(out="/tmp/x", cohort="c", run_id="r", slice_images="some")
    with pytest.raises(ValueError, match="unknown functional modality 'MRI'"):
        JobConfig(out="/tmp/x", cohort="c", run_id="r", modality="MRI")
    monkeypatch.setenv("MDAFUSE_INJECT_CRASH", "abc:/tmp/marker")
    assert crash_hook_from_env() == ("abc", "/tmp/marker")
    monkeypatch.setenv("MDAFUSE_INJECT_CRASH", "abc")
    with pytest.raises(ValueError, match="pair_id"):
        crash_hook_from_env()


def test_config_hash_modality():
    """The modality changes the hash only when set, so runs started before the option still resume."""
    import hashlib
    import json

    plain = JobConfig(out="/tmp/x", cohort="c", run_id="r")
    settings = {"weights": None, "batch_size": 4, "slice_images": "brain"}
    assert plain.hash() == hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    spect = JobConfig(out="/tmp/x", cohort="c", run_id="r", modality="SPECT")
    assert spect.hash() not in (plain.hash(), JobConfig(out="/tmp/x", cohort="c", run_id="r", modality="PET").hash())


def test_processor_picks_weights_by_modality(tmp_path):
    """Without --weights/--modality each pair gets the shipped weights of its own modality."""
    from mdafuse.model.weights import default_weights_path, file_sha256

    spect_sha, default_sha = file_sha256(default_weights_path("SPECT")), file_sha256(default_weights_path())
    pet_pair = next(p for p in _png_pair(tmp_path) if p["pet"] and "good0" in p["pet"])
    assert pet_pair["modality"] == "PET"
    spect_pair = {**pet_pair, "pair_id": pet_pair["pair_id"] + "s", "modality": "SPECT"}
    proc = PairProcessor(JobConfig(out=str(tmp_path / "out"), cohort="png", run_id="m"))
    rows = [proc.process(p) for p in (pet_pair, spect_pair, {**pet_pair, "pair_id": "unknown", "modality": ""})]
    assert [r["status"] for r in rows] == ["ok"] * 3, [r["error"] for r in rows]
    assert [r["weights_sha256"] for r in rows] == [default_sha, spect_sha, default_sha]
    assert rows[1]["model_version"] == default_weights_path("SPECT").stem
    # a configured modality (or weights file) is used for every pair
    fixed = PairProcessor(JobConfig(out=str(tmp_path / "out2"), cohort="png", run_id="m", modality="NM"))
    assert fixed.fuser_for(pet_pair).weights_sha256 == fixed.fuser_for(spect_pair).weights_sha256 == spect_sha


def _png_pair(tmp_path):
    from tests.jobs.cohorts import make_png_cohort

    make_png_cohort(tmp_path / "c", n_good=1)
    return build_pair_table(tmp_path / "c", "png").table.to_pylist()


def test_done_record_storage_errors_do_not_escape(volume_result, tmp_path, monkeypatch):
    """A failing done.json read recomputes; a failing write leaves an ok row with a warning; nothing raises."""
    import jobs.common as common

    pair = next(p for p in _png_pair(tmp_path) if p["pet"] and "good0" in p["pet"])
    proc = PairProcessor(JobConfig(out=str(tmp_path / "out"), cohort="png", run_id="s"), fuser=volume_result["fuser"])
    real_write, real_read = common.storage.write_bytes, common.storage.read_bytes

    def failing_write(uri, data, endpoint=None):
        if str(uri).endswith("done.json"):
            raise OSError(f"S3 PUT failed for {pair['mr']}")
        return real_write(uri, data, endpoint)

    def failing_read(uri, endpoint=None):
        if str(uri).endswith("done.json"):
            raise RuntimeError("connection reset")
        return real_read(uri, endpoint)

    monkeypatch.setattr(common.storage, "write_bytes", failing_write)
    row = proc.process(pair)
    assert row["status"] == "ok", row["error"]
    assert "done record not written (OSError: S3 PUT failed for <mr>)" in row["warnings"]
    monkeypatch.setattr(common.storage, "write_bytes", real_write)
    monkeypatch.setattr(common.storage, "read_bytes", failing_read)
    calls = volume_result["fuser"].calls
    again = proc.process(pair)
    assert again["status"] == "ok" and volume_result["fuser"].calls == calls + 1  # recomputed, not raised


def test_error_done_records_are_not_reused(volume_result, tmp_path):
    """A pair whose earlier attempt failed is recomputed (and can now succeed); ok records are reused."""
    pair = next(p for p in _png_pair(tmp_path) if "good0" in p["mr"])
    proc = PairProcessor(JobConfig(out=str(tmp_path / "out"), cohort="png", run_id="e"), fuser=volume_result["fuser"])
    failed = proc.process({**pair, "pet": ""})
    assert failed["status"] == "error"
    calls = volume_result["fuser"].calls
    ok = proc.process(pair)
    assert ok["status"] == "ok" and volume_result["fuser"].calls == calls + 1
    assert proc.process(pair)["finished_at"] == ok["finished_at"] and volume_result["fuser"].calls == calls + 1


def test_scrub_locations_pseudonymises_uids():
    from jobs.common import scrub_locations
    from mdafuse.io.volume import pseudonym

    series = "1.2.826.0.1.3680043.8.498.12345678901234567890"
    other = "1.3.6.1.4.1.9590.100.1.2.999"
    pair = {"mr": "/data/DOE_JOHN/MR", "pet": "", "mr_series_uid": series, "pet_series_uid": ""}
    msg = scrub_locations(f"series {series} in /data/DOE_JOHN/MR/x.dcm; study {other}; version 2.60.0, value 1.5", pair, "/tmp/w")
    assert series not in msg and other not in msg and "DOE_JOHN" not in msg
    assert f"<uid:{pseudonym('uid|' + series, length=8)}>" in msg
    assert f"<uid:{pseudonym('uid|' + other, length=8)}>" in msg
    assert "<mr>/x.dcm" in msg and "version 2.60.0, value 1.5" in msg
    assert scrub_locations(msg, pair, "/tmp/w") == msg  # idempotent
