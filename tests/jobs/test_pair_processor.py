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
    monkeypatch.setenv("MDAFUSE_INJECT_CRASH", "abc:/tmp/marker")
    assert crash_hook_from_env() == ("abc", "/tmp/marker")
    monkeypatch.setenv("MDAFUSE_INJECT_CRASH", "abc")
    with pytest.raises(ValueError, match="pair_id"):
        crash_hook_from_env()
