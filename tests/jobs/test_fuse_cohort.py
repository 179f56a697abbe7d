"""End-to-end tests of ``jobs.fuse_cohort`` on a tiny 2-D cohort (local disk and real S3).

One local Ray with 2 CPUs serves the session. The local run goes in three steps on the same run
id: 3 pairs in one block with an injected worker crash on the middle pair, then all 8 pairs
(resume), then again after the missing PET of ``nopet`` was added (the error pairs are retried,
``nopet`` becomes ok, the ok pairs are skipped).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.fuse_cohort import build_parser, main
from mdafuse import storage
from mdafuse.jobs import runtime
from mdafuse.storage import Store
from mdafuse.cohort import build_pair_table, pair_id
from mdafuse.io.images import read_image, read_pair, write_image
from mdafuse.metrics import en, sd
from mdafuse.qa import format_report, qa_report
from tests.jobs.cohorts import make_png_cohort


def _rows(out: str, cohort: str, run: str, endpoint: str | None = None) -> list[dict]:
    root = storage.join(out, "metrics", f"cohort={cohort}", f"run={run}")
    rows = []
    for uri in storage.list_files(root, ".parquet", endpoint):
        rows += pq.read_table(io.BytesIO(storage.read_bytes(uri, endpoint))).to_pylist()
    return rows


@pytest.fixture(scope="module")
def local_job(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("job")
    expected = make_png_cohort(root / "cohort", degraded=True)
    out = str(root / "out")
    table = build_pair_table(root / "cohort", "tiny").table
    ids = table.column("pair_id").to_pylist()
    stems = {pair_id("tiny", stem, ""): stem for stem in expected}
    crash = ids[1]  # a pair of the first attempt, which runs on a single model actor
    marker = root / "crash.marker"
    base = [str(root / "cohort"), "--out", out, "--cohort-name", "tiny", "--run-id", "r1", "-q"]
    crash_args = ["--inject-crash", crash, "--crash-marker", str(marker)]
    summary_file = Path(out, "runs/cohort=tiny/run=r1/summary.json")
    codes = [main(base + ["--limit", "3", "--workers", "1"] + crash_args)]
    summaries = [json.loads(summary_file.read_text())]
    first_rows = _rows(out, "tiny", "r1")
    codes.append(main(base + ["--workers", "2"] + crash_args))
    summaries.append(json.loads(summary_file.read_text()))
    blob = read_image(root / "cohort/PET/good0.png")
    write_image(root / "cohort/PET/nopet.png", blob)  # the missing PET turns up: the retry must succeed
    expected_before = dict(expected)
    expected["nopet"] = "ok"
    codes.append(main(base + ["--workers", "2"] + crash_args))
    summaries.append(json.loads(summary_file.read_text()))
    return {
        "root": root, "out": out, "expected": expected, "expected_before": expected_before, "stems": stems, "ids": ids, "crash": crash,
        "marker": marker, "codes": codes, "summaries": summaries, "first_rows": first_rows,
    }


def test_every_pair_once_with_status(local_job):
    rows = _rows(local_job["out"], "tiny", "r1")
    stems = local_job["stems"]
    assert local_job["codes"] == [3, 3, 3]  # every attempt finishes with the planted error rows: exit status 3
    assert sorted(r["pair_id"] for r in rows) == sorted(stems)  # each pair exactly once
    for r in rows:
        want = local_job["expected"][stems[r["pair_id"]]]
        if want == "ok":
            assert r["status"] == "ok", r["error"]
            assert r["error"] == ""
            assert all(np.isfinite(r[m]) for m in ("EN", "MI", "SD", "VIF", "SSIM", "SCD", "CC", "MSE", "rSFe", "Qabf", "SF", "AG", "PSNR"))
            assert len(r["weights_sha256"]) == 64 and r["model_version"]
            assert r["t_total_s"] > 0 and (r["height"], r["width"]) == (48, 48)
        else:
            assert r["status"] == "error"
            assert want in r["error"]
            assert np.isnan(r["SSIM"])


def test_injected_crash_was_retried(local_job):
    """The worker died in the middle of a 3-pair block; after that attempt each pair has exactly one row."""
    assert local_job["marker"].is_file()  # the worker really died once on this pair
    assert "crashed on " + local_job["crash"] in local_job["marker"].read_text()
    first = local_job["first_rows"]
    assert sorted(r["pair_id"] for r in first) == sorted(local_job["ids"][:3])
    want = local_job["expected_before"][local_job["stems"][local_job["crash"]]]
    row = next(r for r in first if r["pair_id"] == local_job["crash"])
    assert row["status"] == ("ok" if want == "ok" else "error")


def test_resume_skips_ok_pairs_and_retries_errors(local_job):
    first, second, third = local_job["summaries"]
    before = local_job["expected_before"]
    ok_first = sum(before[local_job["stems"][p]] == "ok" for p in local_job["ids"][:3])
    err_first = 3 - ok_first
    assert (first["rows"], first["processed_this_attempt"], first["skipped_already_done"]) == (3, 3, 0)
    assert (second["rows"], second["unique_pairs"], second["processed_this_attempt"], second["skipped_already_done"], second["retried_errors"]) == (8, 8, 8 - ok_first, ok_first, err_first)
    assert (second["ok"], second["error"]) == (5, 3)
    # third attempt: the three error pairs are retried (nopet now succeeds), the five ok pairs skipped
    assert (third["rows"], third["unique_pairs"], third["processed_this_attempt"], third["skipped_already_done"], third["retried_errors"]) == (8, 8, 3, 5, 3)
    assert (third["ok"], third["error"]) == (6, 2)
    assert set(runtime.existing_status(Store(str(Path(local_job["out"], "metrics/cohort=tiny/run=r1"))))) == set(local_job["stems"])
    assert third["salt_is_default"] is True


def test_metric_files_are_whole_part_files(local_job):
    """The driver writes the rows as atomic part files: no staging folder, no temporaries, one row per pair."""
    metrics = Path(local_job["out"], "metrics/cohort=tiny/run=r1")
    files = sorted(metrics.glob("*.parquet"))
    assert files and all(f.name.startswith("part-") for f in files)
    assert not [p for p in metrics.rglob("*") if p.name.startswith(("_", "."))]


def test_outputs_and_metrics_match_the_written_images(local_job):
    out, root = Path(local_job["out"]), local_job["root"]
    rows = {r["pair_id"]: r for r in _rows(str(out), "tiny", "r1")}
    for pid, stem in local_job["stems"].items():
        folder = out / "images/cohort=tiny/run=r1" / pid
        done = json.loads((folder / "done.json").read_text())
        assert done["status"] == rows[pid]["status"]
        if rows[pid]["status"] != "ok":
            assert not (folder / "fused_000.png").exists()
            continue
        fused = read_image(folder / "fused_000.png")
        assert fused.shape == (48, 48, 3) and read_image(folder / "enhanced_000.png").shape == (48, 48, 3)
        mr, pet = read_pair(root / "cohort/MR" / f"{stem}.png", root / "cohort/PET" / f"{stem}.png")
        # The row scores the float image; the PNG is its 8-bit rounding, so luminance moves by < 1/255,
        # which on 48x48 = 2304 pixels moves some pixels across histogram bins: a few hundredths of a bit.
        assert abs(rows[pid]["EN"] - en(mr, pet, fused)) < 0.05
        assert abs(rows[pid]["SD"] - sd(mr, pet, fused)) < 0.5
    names = [str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()]
    assert not any(".tmp-" in n for n in names)  # atomic writes leave no temporaries


def test_rows_hold_no_raw_identifiers(local_job):
    for r in _rows(local_job["out"], "tiny", "r1"):
        text = json.dumps({k: v for k, v in r.items() if isinstance(v, str)})
        assert "good" not in text and "nopet" not in text and "corrupt" not in text.replace("Corrupt", "")


def _assert_no_raw_names(out: Path, needles: list[str]) -> None:
    """No file under ``out`` (any format, raw bytes) contains any of ``needles``."""
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files
    for f in files:
        data = f.read_bytes()
        for n in needles:
            assert n.encode() not in data, f"{n!r} found in {f.relative_to(out)}"


def test_no_file_under_out_holds_raw_names(local_job):
    """Work tables (pairs.parquet, attempts) and every other output are free of input names and locations."""
    out = Path(local_job["out"])
    assert (out / "runs/cohort=tiny/run=r1/pairs.parquet").is_file() and list((out / "runs/cohort=tiny/run=r1/attempts").glob("*.parquet"))
    needles = [str(local_job["root"] / "cohort"), "good0", "good1", "good2", "good3", "nopet", "mismatch", "degraded", "/MR/", "/PET/"]
    _assert_no_raw_names(out, needles)


def test_qa_report_local(local_job):
    rep = qa_report(local_job["out"], run="r1", metric="ssim", worst=2)
    assert {(c["status"], c["n"]) for c in rep.counts} == {("ok", 6), ("error", 2)}
    assert len(rep.worst) == 2 and len(rep.failed) == 2
    assert local_job["stems"][rep.worst[0]["pair_id"]] == "degraded"  # the planted noise-MR pair is the worst
    ssim_rows = sorted(r["SSIM"] for r in _rows(local_job["out"], "tiny", "r1") if r["status"] == "ok")
    assert rep.worst[0]["value"] == pytest.approx(ssim_rows[0], abs=1e-12)
    assert ssim_rows[1] - ssim_rows[0] > 0.01
    dist = next(d for d in rep.distributions if d["metric"] == "SSIM")
    assert dist["n"] == 6 and dist["mean"] == pytest.approx(float(np.mean(ssim_rows)), rel=1e-9, abs=1e-12)
    for fmt in ("table", "csv", "json"):
        assert "failed" in format_report(rep, fmt)


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--batch-size", "x"])
    assert main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "-q"]) == 2
    assert main([str(tmp_path), "-q"]) == 2  # COHORT without --out


def test_job_on_s3(ray_local, s3_server, tmp_path, monkeypatch):
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    expected = make_png_cohort(tmp_path / "cohort", n_good=2)
    client = s3_server.client()
    lines = ["subject,session,mr,pet"]
    for stem in expected:
        for mod in ("MR", "PET"):
            f = tmp_path / "cohort" / mod / f"{stem}.png"
            if f.is_file():
                client.put_object(Bucket=s3_server.bucket, Key=f"in/{mod}/{stem}.png", Body=f.read_bytes())
        pet = f"PET/{stem}.png" if (tmp_path / "cohort/PET" / f"{stem}.png").is_file() else ""
        lines.append(f"{stem},ses-01,MR/{stem}.png,{pet}")
    client.put_object(Bucket=s3_server.bucket, Key="in/manifest.csv", Body="\n".join(lines).encode())
    out = f"s3://{s3_server.bucket}/out"
    args = [f"s3://{s3_server.bucket}/in/manifest.csv", "--out", out, "--run-id", "s1", "--workers", "2", "-q"]
    assert main(args) == 3  # 3 error pairs
    rows = _rows(out, "manifest", "s1")
    assert len(rows) == len(expected) == len({r["pair_id"] for r in rows})
    assert sorted(r["status"] for r in rows) == ["error"] * 3 + ["ok"] * 2
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=s3_server.bucket, Prefix="out/")["Contents"]}
    for r in rows:
        assert f"out/images/cohort=manifest/run=s1/{r['pair_id']}/done.json" in keys
        if r["status"] == "ok":
            assert f"out/images/cohort=manifest/run=s1/{r['pair_id']}/fused_000.png" in keys
    assert "out/runs/cohort=manifest/run=s1/summary.json" in keys
    rep = qa_report(out, run="s1", metric="MI", worst=1)
    assert sum(c["n"] for c in rep.counts) == 5 and len(rep.failed) == 3
    # rerun: resumes, nothing duplicated
    assert main(args) == 3
    assert len(_rows(out, "manifest", "s1")) == 5


def test_demo_smoke_test_on_s3(ray_local, s3_server, monkeypatch):
    """The built-in demo (DICOM volumes) with its input and outputs on S3."""
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    out = f"s3://{s3_server.bucket}/demo"
    assert main(["--smoke-test", "--out", out, "-q"]) == 0
    rows = _rows(out, "demo", "demo")
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    assert all(r["kind"] == "volume" and r["n_slices"] == 16 for r in rows)
    summary = json.loads(storage.read_bytes(f"{out}/runs/cohort=demo/run=demo/summary.json"))
    assert summary["ok"] == 2 and summary["weights_sha256"] == [rows[0]["weights_sha256"]]
    assert storage.exists(f"{out}/demo-input/manifest.csv")
    assert storage.exists(f"{out}/images/cohort=demo/run=demo/{rows[0]['pair_id']}/fused.nii.gz")


def test_unreadable_metrics_file_is_set_aside(tmp_path):
    import pyarrow as pa

    root = tmp_path / "metrics/cohort=c/run=r"
    root.mkdir(parents=True)
    pq.write_table(pa.table({"pair_id": ["a", "b"], "status": ["ok", "error"]}), root / "good.parquet")
    (root / "torn.parquet").write_bytes(b"PAR1 truncated")
    assert set(runtime.existing_status(Store(str(root)))) == {"a", "b"}
    assert sorted(p.name for p in root.iterdir()) == [".corrupt-torn.parquet", "good.parquet"]


def test_dedupe_sets_an_unreadable_file_aside_too(tmp_path):
    """The first read of a resumed run (dedupe) meets the torn file before existing_status does."""
    import pyarrow as pa

    root = tmp_path / "metrics/cohort=c/run=r"
    root.mkdir(parents=True)
    rows = {"pair_id": ["a", "a"], "status": ["error", "ok"], "finished_at": ["1", "2"]}
    pq.write_table(pa.table(rows), root / "good.parquet")
    (root / "torn.parquet").write_bytes(b"PAR1 truncated")
    assert runtime.dedupe_rows(Store(str(root))) == 1
    assert sorted(p.name for p in root.iterdir()) == [".corrupt-torn.parquet", "good.parquet"]
    assert pq.read_table(root / "good.parquet").column("status").to_pylist() == ["ok"]


def test_supersede_rows_removes_only_retried_error_rows(tmp_path):
    import pyarrow as pa

    root = tmp_path / "m"
    root.mkdir()
    pq.write_table(pa.table({"pair_id": ["a", "b", "c"], "status": ["ok", "error", "error"], "SSIM": [1.0, None, None]}), root / "one.parquet")
    pq.write_table(pa.table({"pair_id": ["d"], "status": ["error"], "SSIM": [None]}), root / "two.parquet")
    store = Store(str(root))
    assert runtime.existing_status(store) == {"a": "ok", "b": "error", "c": "error", "d": "error"}
    # "a" is ok: never removed even when asked; "c" is not retried this time: kept
    assert runtime.supersede_rows(store, {"a", "b", "d"}) == 2
    assert sorted(p.name for p in root.iterdir()) == ["one.parquet"]  # two.parquet had nothing left
    assert pq.read_table(root / "one.parquet").to_pydict() == {"pair_id": ["a", "c"], "status": ["ok", "error"], "SSIM": [1.0, None]}
    assert runtime.supersede_rows(store, set()) == 0


def test_table_writer_flushes_whole_files_and_drops_duplicates(tmp_path):
    import pyarrow as pa

    from mdafuse.qa import open_metrics

    schema = pa.schema([("pair_id", pa.string()), ("status", pa.string()), ("SSIM", pa.float64())])
    root = Store(str(tmp_path / "metrics/cohort=c/run=r"))
    writer = runtime.TableWriter(root, schema, "att1", flush_rows=2, flush_s=3600)
    assert writer.add([{"pair_id": "a", "status": "ok", "SSIM": 0.5}]) == 1
    writer.maybe_flush()
    assert root.list_files(suffix=".parquet") == []  # below flush_rows: nothing written yet
    assert writer.add([{"pair_id": "a", "status": "ok", "SSIM": 0.7}]) == 0 and writer.duplicates == 1
    writer.add([{"pair_id": "b", "status": "error", "SSIM": None}])
    writer.maybe_flush()
    writer.add([{"pair_id": "c", "status": "ok", "SSIM": 0.9}])
    writer.flush()
    writer.flush()  # nothing left: no empty file
    assert [Path(u).name for u in root.list_files(suffix=".parquet")] == ["part-att1-00000.parquet", "part-att1-00001.parquet"]
    t = open_metrics(str(tmp_path)).to_table()
    assert sorted(t.column("pair_id").to_pylist()) == ["a", "b", "c"] and t.filter(pa.compute.equal(t.column("pair_id"), "a")).column("SSIM").to_pylist() == [0.5]


def test_pool_plan():
    plan = runtime.plan_pool
    # CPU actors: one CPU stays free for the decode/write tasks: (2 - 1) / 0.5 = 2 actors, fixed
    p = plan({"CPU": 2.0}, None, 10)
    assert (p.min_workers, p.max_workers, p.source, p.fixed) == (2, 2, "resources", True)
    assert plan({"CPU": 2.0}, None, 1).max_workers == 1  # never more actors than work units
    assert plan({"CPU": 64.0, "GPU": 4.0}, None, 100, gpus_per_worker=0.5).max_workers == 8
    assert plan({"CPU": 2.0}, None, 10, smoke_test=True).max_workers == 1
    # --workers: a fixed pool of exactly N, even beyond what is up now (the autoscaler must provide it)
    p = plan({"CPU": 8.0, "GPU": 1.0}, None, 100, workers=3, gpus_per_worker=1)
    assert (p.min_workers, p.max_workers, p.source) == (3, 3, "--workers")
    # the autoscaler may grow the GPU group to 8: the pool starts with the 2 GPUs up and may grow to 8
    p = plan({"CPU": 8.0, "GPU": 2.0}, {"CPU": 72.0, "GPU": 8.0}, 100, gpus_per_worker=1)
    assert (p.min_workers, p.max_workers, p.source, p.fixed) == (2, 8, "autoscaler", False)
    # a GPU group scaled to zero: start one actor (the pending actor asks the autoscaler for a node)
    p = plan({"CPU": 2.0}, {"CPU": 66.0, "GPU": 8.0}, 100, gpus_per_worker=1)
    assert (p.min_workers, p.max_workers) == (1, 8)
    # no GPUs now and no autoscaler: one actor, which waits (bounded by --wait-for-workers)
    assert plan({"CPU": 8.0}, None, 10, gpus_per_worker=1).max_workers == 1
    with pytest.raises(ValueError, match="--workers must be >= 1"):
        plan({"CPU": 8.0}, None, 10, workers=0)


def test_dicom_cohort_with_corrupt_slice(ray_local, tmp_path):
    """Local Ray run over DICOM volume pairs: a truncated PET slice gives one error row, the good pair is ok,
    and no file under OUT holds subject names, input locations or series UIDs."""
    import csv

    import pydicom

    from mdafuse.synthetic.demo_cohort import write_demo_cohort

    write_demo_cohort(tmp_path / "in", 2, 1, 0)
    with open(tmp_path / "in/manifest.csv", newline="") as f:
        manifest = list(csv.DictReader(f))
    bad = manifest[1]
    pet_dir = (tmp_path / "in" / bad["pet"]).resolve()
    victim = sorted(pet_dir.iterdir())[5]
    victim.write_bytes(victim.read_bytes()[:400])
    uids = set()
    for m in manifest:
        for key in ("mr", "pet"):
            first = next(p for p in sorted((tmp_path / "in" / m[key]).resolve().iterdir()) if p != victim)
            ds = pydicom.dcmread(first, stop_before_pixels=True)
            uids.update({str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID), str(ds.PatientID)})
    out = tmp_path / "out"
    assert main([str(tmp_path / "in/manifest.csv"), "--out", str(out), "--run-id", "d1", "--workers", "1", "--slice-images", "none", "-q"]) == 3
    rows = {r["subject_id"]: r for r in _rows(str(out), "manifest", "d1")}
    assert len(rows) == 2
    statuses = sorted(r["status"] for r in rows.values())
    assert statuses == ["error", "ok"]
    err = next(r for r in rows.values() if r["status"] == "error")
    # reported as a truncated file by its position in the series, not as a missing slice
    assert "DicomSeriesError" in err["error"] and "file 6 of 12" in err["error"] and "truncated" in err["error"]
    ok = next(r for r in rows.values() if r["status"] == "ok")
    assert (out / "images/cohort=manifest/run=d1" / ok["pair_id"] / "enhanced.nii.gz").is_file()
    needles = [str(tmp_path / "in"), *uids, *(m["subject"] for m in manifest)]
    _assert_no_raw_names(out, needles)


def test_salt_warning(monkeypatch, caplog):
    monkeypatch.delenv("MDAFUSE_PSEUDONYM_SALT", raising=False)
    with caplog.at_level("WARNING", logger="mdafuse.jobs.runtime"):
        assert runtime.salt_is_default(demo=True) is True
    assert not caplog.records  # the synthetic demo needs no secret
    with caplog.at_level("WARNING", logger="mdafuse.jobs.runtime"):
        assert runtime.salt_is_default(demo=False) is True
    assert any("MDAFUSE_PSEUDONYM_SALT is not set" in r.getMessage() for r in caplog.records)
    caplog.clear()
    monkeypatch.setenv("MDAFUSE_PSEUDONYM_SALT", "s3cret")
    with caplog.at_level("WARNING", logger="mdafuse.jobs.runtime"):
        assert runtime.salt_is_default(demo=False) is False
    assert not caplog.records
