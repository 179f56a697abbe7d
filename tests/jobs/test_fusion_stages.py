"""The fusion job's stages without Ray: demo DICOM volume pairs, chunking, batching across pairs, bad pairs, resume records.

``run_stages`` composes the three stages exactly as the Ray pipeline does (load -> model -> outputs,
then :func:`finalize_pair` for pairs of several chunks), in this process.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mdafuse.cohort import build_pair_table
from mdafuse.jobs import fusion_stages
from mdafuse.jobs.fusion_rows import METRIC_NAMES, ROW_SCHEMA, normalise_row, rows_to_table
from mdafuse.jobs.fusion_stages import FuseChunks, FusionJobConfig, finalize_pair, finish_chunks, load_chunks, reused_row
from mdafuse.privacy import scrub_locations


def _batch(records: list[dict]) -> dict:
    return fusion_stages._columns(records)


def run_stages(pairs: list[dict], cfg: FusionJobConfig, model: FuseChunks, rows_per_call: int = 1) -> list[dict]:
    """Every pair through load -> model -> outputs (-> finalize); one row per pair, in pair order."""
    records = [rec for pair in pairs for rec in load_chunks(pair, cfg)]
    done: dict[str, dict] = {}
    pending: dict[str, list[dict]] = {}
    for start in range(0, len(records), rows_per_call):
        fused = model(_batch(records[start : start + rows_per_call]))
        for i in range(len(fused["pair_id"])):
            out = finish_chunks(_batch([{k: v[i] for k, v in fused.items()}]), cfg)
            rec = {k: v[0] for k, v in out.items()}
            if rec["status"] == "reused":
                done[rec["pair_id"]] = reused_row(rec)
            elif rec["row"]:
                done[rec["pair_id"]] = normalise_row(json.loads(rec["row"]))
            else:
                chunks = pending.setdefault(rec["pair_id"], [])
                chunks.append(rec)
                if len(chunks) == rec["n_chunks"]:
                    done[rec["pair_id"]] = finalize_pair(pending.pop(rec["pair_id"]), cfg)
    assert not pending
    return [done[p["pair_id"]] for p in pairs]


class CountingModel(FuseChunks):
    """The real model stage, counting network calls and the pairs seen in each."""

    def __init__(self, config: FusionJobConfig) -> None:
        super().__init__(config)
        self.calls: list[int] = []
        self.pairs_per_call: list[int] = []

    def fuser_for(self, key: str):
        fuser = super().fuser_for(key)
        if not getattr(fuser, "_counted", False):
            inner = fuser.fuse_luminance

            def counted(mr, fy):
                self.calls.append(int(mr.shape[0]))
                return inner(mr, fy)

            fuser.fuse_luminance = counted
            fuser._counted = True
        return fuser

    def __call__(self, batch: dict) -> dict:
        self.pairs_per_call.append(len(set(batch["pair_id"])))
        return super().__call__(batch)


def _config(out: Path, run: str = "r", **kw) -> FusionJobConfig:
    from mdafuse.jobs.fuse_cohort import _expected_sha

    return FusionJobConfig(out=str(out), cohort="demo", run_id=run, expected_sha=_expected_sha(kw.get("weights"), kw.get("modality")), **kw)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from mdafuse.synthetic.demo_cohort import write_demo_cohort

    root = tmp_path_factory.mktemp("demo")
    write_demo_cohort(root / "cohort", 1, 1, 0)
    return root


@pytest.fixture(scope="module")
def volume_result(demo):
    cfg = _config(demo / "out", batch_size=5, chunk_slices=64)
    model = CountingModel(cfg)
    pair = build_pair_table(demo / "cohort", "demo").table.to_pylist()[0]
    row = run_stages([pair], cfg, model)[0]
    return {"cfg": cfg, "model": model, "pair": pair, "row": row}


def test_volume_pair_outputs(volume_result):
    from mdafuse.io.nifti import read_nifti

    row, cfg, pair = volume_result["row"], volume_result["cfg"], volume_result["pair"]
    assert row["status"] == "ok", row["error"]
    assert (row["n_slices"], row["height"], row["width"]) == (16, 128, 128)
    assert 1 <= row["n_scored"] <= 16
    assert volume_result["model"].calls == [5, 5, 5, 1]  # 16 slices in network batches of 5
    assert all(np.isfinite(row[m]) for m in METRIC_NAMES)
    assert row["worker"] and row["t_total_s"] == pytest.approx(sum(row[t] for t in ("t_read_s", "t_fuse_s", "t_enhance_s", "t_metrics_s", "t_write_s")))
    folder = Path(cfg.images.root) / pair["pair_id"]
    fused = read_nifti(folder / "fused.nii.gz")
    assert fused.data.shape == (16, 128, 128, 3)
    enhanced = read_nifti(folder / "enhanced.nii.gz")
    assert enhanced.data.shape == (16, 128, 128, 3)
    assert np.allclose(enhanced.affine, fused.affine, atol=1e-6, rtol=0)
    assert 0.0 <= float(enhanced.data.min()) and float(enhanced.data.max()) <= 1.0
    assert len(list(folder.glob("fused_*.png"))) == row["n_scored"] == len(list(folder.glob("enhanced_*.png")))
    assert json.loads((folder / "done.json").read_text())["pair_id"] == pair["pair_id"]
    assert not Path(cfg.parts(pair["pair_id"]).root).exists()


def test_fused_volume_equals_the_library_path(volume_result):
    """The staged path (torch colour on the model's device) gives the library's ``Fuser.fuse_slices`` image."""
    from mdafuse.fusion.pipeline import Fuser
    from mdafuse.io.encode import to_uint8
    from mdafuse.io.nifti import read_nifti
    from mdafuse.io.pair import load_pair

    pair, cfg = volume_result["pair"], volume_result["cfg"]
    prepared = load_pair(pair["mr"], pair["pet"], "volume", mr_series_uid=pair["mr_series_uid"], functional_series_uid=pair["pet_series_uid"])
    reference = to_uint8(Fuser().fuse_slices(prepared.mr, prepared.functional, batch_size=16))
    staged = np.asarray(read_nifti(Path(cfg.images.root) / pair["pair_id"] / "fused.nii.gz").data * 255.0 + 0.5, dtype=np.int64)
    diff = np.abs(staged - reference.astype(np.int64))
    assert diff.max() <= 1 and np.mean(diff > 0) < 1e-3  # float32 colour maths on two paths: rare 1/255 rounding flips


def test_volume_metrics_are_slice_means(volume_result):
    """The row's metrics are the means over the brain slices of the float64 reference metrics."""
    from mdafuse.fusion.pipeline import Fuser
    from mdafuse.io.pair import load_pair
    from mdafuse.metrics import compute_all

    row, pair = volume_result["row"], volume_result["pair"]
    prepared = load_pair(pair["mr"], pair["pet"], "volume", mr_series_uid=pair["mr_series_uid"], functional_series_uid=pair["pet_series_uid"])
    fused = Fuser().fuse_slices(prepared.mr, prepared.functional)
    assert prepared.score_slices.size == row["n_scored"]
    ref = [compute_all(prepared.mr[k], prepared.functional[k], fused[k]) for k in prepared.score_slices]
    for m in METRIC_NAMES:
        want = float(np.mean([r[m] for r in ref]))
        assert abs(row[m] - want) <= 2e-3 * max(abs(want), 1e-2), m


def test_chunked_pair_equals_the_whole_pair(volume_result, tmp_path):
    """16 slices in chunks of 5: parts joined by finalize_pair give the same volumes and metrics."""
    from mdafuse.io.nifti import read_nifti

    pair = volume_result["pair"]
    cfg = _config(tmp_path / "out", batch_size=8, chunk_slices=5)
    model = CountingModel(cfg)
    records = load_chunks(pair, cfg)
    assert [r["mr"].shape[0] for r in records] == [5, 5, 5, 1] and {r["n_chunks"] for r in records} == {4}
    row = run_stages([pair], cfg, model, rows_per_call=2)[0]
    assert row["status"] == "ok", row["error"]
    whole = volume_result["row"]
    for m in METRIC_NAMES:
        assert row[m] == pytest.approx(whole[m], rel=1e-5), m
    assert row["n_scored"] == whole["n_scored"] and row["n_slices"] == 16
    for name in ("fused", "enhanced"):
        a = read_nifti(Path(cfg.images.root) / pair["pair_id"] / f"{name}.nii.gz").data
        b = read_nifti(Path(volume_result["cfg"].images.root) / pair["pair_id"] / f"{name}.nii.gz").data
        assert np.array_equal(a, b)
    folder = Path(cfg.images.root) / pair["pair_id"]
    assert not Path(cfg.parts(pair["pair_id"]).root).exists() and json.loads((folder / "done.json").read_text())["status"] == "ok"
    assert sorted(p.name for p in folder.glob("fused_*.png")) == sorted(p.name for p in (Path(volume_result["cfg"].images.root) / pair["pair_id"]).glob("fused_*.png"))


def test_model_batches_slices_across_pairs(tmp_path):
    """Six 2-D pairs (one slice each) in one model call are fused in two network batches of 4 + 2."""
    from tests.jobs.cohorts import make_png_cohort

    make_png_cohort(tmp_path / "c", n_good=6)
    pairs = [p for p in build_pair_table(tmp_path / "c", "png").table.to_pylist() if p["pet"] and "good" in p["mr"]]
    cfg = FusionJobConfig(out=str(tmp_path / "out"), cohort="png", run_id="b", batch_size=4)
    model = CountingModel(cfg)
    rows = run_stages(pairs, cfg, model, rows_per_call=6)
    assert [r["status"] for r in rows] == ["ok"] * 6
    assert model.calls == [4, 2] and model.pairs_per_call == [6]
    # the same pairs one at a time give the same metrics
    single = run_stages(pairs, FusionJobConfig(out=str(tmp_path / "out1"), cohort="png", run_id="b", batch_size=4), CountingModel(cfg))
    for a, b in zip(rows, single):
        for m in METRIC_NAMES:
            assert a[m] == pytest.approx(b[m], rel=1e-5, abs=1e-7), m


def test_done_record_is_reused(volume_result):
    cfg, pair = volume_result["cfg"], volume_result["pair"]
    records = load_chunks(pair, cfg)
    assert [r["status"] for r in records] == ["reused"]
    again = reused_row(records[0])
    assert again["finished_at"] == volume_result["row"]["finished_at"]
    table = rows_to_table([again])
    assert table.schema == ROW_SCHEMA and table.num_rows == 1
    # other weights: the record is not reused
    other = FusionJobConfig(**{**cfg.__dict__, "expected_sha": (("", "0" * 64),)})
    assert load_chunks(pair, other)[0]["status"] == "ok"


def test_bad_volume_pairs_become_error_rows(demo, volume_result, tmp_path):
    pair = dict(volume_result["pair"])
    cfg = _config(tmp_path / "out", run="bad")
    broken = tmp_path / "PT"
    shutil.copytree(pair["pet"], broken)
    victim = sorted(broken.iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:300])
    bad = [
        {**pair, "pair_id": "corrupt0000000000", "pet": str(broken)},
        {**pair, "pair_id": "nopet00000000000", "pet": ""},
        {**pair, "pair_id": "nomr000000000000", "mr": str(tmp_path / "gone")},
    ]
    rows = run_stages(bad, cfg, volume_result["model"])
    assert [r["status"] for r in rows] == ["error"] * 3
    assert "DicomSeriesError" in rows[0]["error"] and str(broken) not in rows[0]["error"]
    assert "missing PET" in rows[1]["error"]
    assert rows[2]["error"] == "FileNotFoundError: <mr>: no such file or folder"
    assert "file 4 of" in rows[0]["error"] or "slice" in rows[0]["error"]  # the bad file is named by its position
    for r in rows:
        assert (tmp_path / "out/images/cohort=demo/run=bad" / r["pair_id"] / "done.json").is_file()
        assert all(np.isnan(r[m]) for m in METRIC_NAMES)


def test_config_validation():
    with pytest.raises(ValueError, match="run_id must be"):
        FusionJobConfig(out="/tmp/x", cohort="c", run_id="a/b")
    with pytest.raises(ValueError, match="slice_images"):
        FusionJobConfig(out="/tmp/x", cohort="c", run_id="r", slice_images="some")
    with pytest.raises(ValueError, match="unknown functional modality 'MRI'"):
        FusionJobConfig(out="/tmp/x", cohort="c", run_id="r", modality="MRI")
    with pytest.raises(ValueError, match="score_every must be >= 1"):
        FusionJobConfig(out="/tmp/x", cohort="c", run_id="r", score_every=0)


def test_config_hash_is_stable():
    """Settings that do not change results leave the hash as runs before the staged pipeline wrote it."""
    import hashlib

    plain = FusionJobConfig(out="/tmp/x", cohort="c", run_id="r")
    settings = {"weights": None, "batch_size": 4, "slice_images": "brain"}
    assert plain.hash() == hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    assert FusionJobConfig(out="/tmp/y", cohort="c", run_id="r", batch_size=64, chunk_slices=8).hash() == plain.hash()
    spect = FusionJobConfig(out="/tmp/x", cohort="c", run_id="r", modality="SPECT")
    assert spect.hash() not in (plain.hash(), FusionJobConfig(out="/tmp/x", cohort="c", run_id="r", modality="PET").hash())
    assert FusionJobConfig(out="/tmp/x", cohort="c", run_id="r", score_every=2).hash() != plain.hash()


def test_model_picks_weights_by_modality(tmp_path):
    """Without --weights/--modality each pair gets the shipped weights of its own modality."""
    from mdafuse.model.weights import default_weights_path, file_sha256
    from tests.jobs.cohorts import make_png_cohort

    make_png_cohort(tmp_path / "c", n_good=1)
    pet_pair = next(p for p in build_pair_table(tmp_path / "c", "png").table.to_pylist() if p["pet"] and "good0" in p["pet"])
    assert pet_pair["modality"] == "PET"
    spect_sha, default_sha = file_sha256(default_weights_path("SPECT")), file_sha256(default_weights_path())
    cfg = FusionJobConfig(out=str(tmp_path / "out"), cohort="png", run_id="m")
    pairs = [pet_pair, {**pet_pair, "pair_id": "s" * 16, "modality": "SPECT"}, {**pet_pair, "pair_id": "u" * 16, "modality": ""}]
    rows = run_stages(pairs, cfg, FuseChunks(cfg), rows_per_call=3)
    assert [r["status"] for r in rows] == ["ok"] * 3, [r["error"] for r in rows]
    assert [r["weights_sha256"] for r in rows] == [default_sha, spect_sha, default_sha]
    assert rows[1]["model_version"] == default_weights_path("SPECT").stem
    fixed = FusionJobConfig(out=str(tmp_path / "out2"), cohort="png", run_id="m", modality="NM")
    assert {r["weights_sha256"] for r in run_stages(pairs, fixed, FuseChunks(fixed), rows_per_call=3)} == {spect_sha}


def test_done_record_storage_errors_do_not_escape(volume_result, tmp_path, monkeypatch):
    """A failing done.json read recomputes; a failing write leaves an ok row with a warning; nothing raises."""
    from mdafuse import storage
    from tests.jobs.cohorts import make_png_cohort

    make_png_cohort(tmp_path / "c", n_good=1)
    pair = next(p for p in build_pair_table(tmp_path / "c", "png").table.to_pylist() if p["pet"] and "good0" in p["pet"])
    cfg = FusionJobConfig(out=str(tmp_path / "out"), cohort="png", run_id="s", expected_sha=_config(tmp_path).expected_sha)
    real_write, real_read = storage.write_bytes, storage.read_bytes

    def failing_write(uri, data, endpoint=None):
        if str(uri).endswith("done.json"):
            raise OSError(f"S3 PUT failed for {pair['mr']}")
        return real_write(uri, data, endpoint)

    def failing_read(uri, endpoint=None):
        if str(uri).endswith("done.json"):
            raise RuntimeError("connection reset")
        return real_read(uri, endpoint)

    monkeypatch.setattr(storage, "write_bytes", failing_write)
    row = run_stages([pair], cfg, volume_result["model"])[0]
    assert row["status"] == "ok", row["error"]
    assert "done record not written (OSError)" in row["warnings"] and pair["mr"] not in row["warnings"]
    monkeypatch.setattr(storage, "write_bytes", real_write)
    run_stages([pair], cfg, volume_result["model"])  # writes the record
    monkeypatch.setattr(storage, "read_bytes", failing_read)
    assert load_chunks(pair, cfg)[0]["status"] == "ok"  # recomputed, not raised


def test_error_done_records_are_not_reused(volume_result, tmp_path):
    """A pair whose earlier attempt failed is recomputed (and can now succeed); ok records are reused."""
    from tests.jobs.cohorts import make_png_cohort

    make_png_cohort(tmp_path / "c", n_good=1)
    pair = next(p for p in build_pair_table(tmp_path / "c", "png").table.to_pylist() if "good0" in p["mr"])
    cfg = FusionJobConfig(out=str(tmp_path / "out"), cohort="png", run_id="e", expected_sha=_config(tmp_path).expected_sha)
    failed = run_stages([{**pair, "pet": ""}], cfg, volume_result["model"])[0]
    assert failed["status"] == "error"
    assert load_chunks(pair, cfg)[0]["status"] == "ok"
    ok = run_stages([pair], cfg, volume_result["model"])[0]
    assert ok["status"] == "ok" and load_chunks(pair, cfg)[0]["status"] == "reused"


def test_scrub_locations_pseudonymises_uids():
    from mdafuse.privacy import pseudonym

    series = "1.2.826.0.1.3680043.8.498.12345678901234567890"
    other = "1.3.6.1.4.1.9590.100.1.2.999"
    msg = scrub_locations(f"series {series} in /data/DOE_JOHN/MR/x.dcm; study {other}; version 2.60.0, value 1.5", {"mr": "/data/DOE_JOHN/MR", "pet": ""}, "/tmp/w", (series,))
    assert series not in msg and other not in msg and "DOE_JOHN" not in msg
    assert f"<uid:{pseudonym('uid|' + series, length=8)}>" in msg
    assert f"<uid:{pseudonym('uid|' + other, length=8)}>" in msg
    assert "<mr>/<file>" in msg and "x.dcm" not in msg and "version 2.60.0, value 1.5" in msg
    assert scrub_locations(msg, {"mr": "/data/DOE_JOHN/MR"}, "/tmp/w") == msg  # idempotent


def test_score_every_scores_every_kth_brain_slice(volume_result, tmp_path):
    pair = volume_result["pair"]
    cfg = _config(tmp_path / "out", score_every=3)
    records = load_chunks(pair, cfg)
    brain = np.flatnonzero(load_chunks(pair, _config(tmp_path / "o2"))[0]["score"])
    assert np.array_equal(np.flatnonzero(records[0]["score"]), brain[::3])
