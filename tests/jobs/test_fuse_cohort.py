"""End-to-end tests of ``jobs.fuse_cohort`` on a tiny 2-D cohort (local disk and real S3).

One local Ray with 2 CPUs serves the session. The local run goes in three steps on the same run
id: 3 pairs with an injected worker crash, then all 7 pairs (resume), then again (nothing to do).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.fuse_cohort import build_parser, existing_pair_ids, main
from mdafuse import storage
from mdafuse.cohort import build_pair_table, pair_id
from mdafuse.io.images import read_image, read_pair
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
    expected = make_png_cohort(root / "cohort")
    out = str(root / "out")
    table = build_pair_table(root / "cohort", "tiny").table
    ids = table.column("pair_id").to_pylist()
    stems = {pair_id("tiny", stem, ""): stem for stem in expected}
    crash = next(p for p in ids[:3] if expected[stems[p]] == "ok")
    marker = root / "crash.marker"
    base = [str(root / "cohort"), "--out", out, "--cohort-name", "tiny", "--run-id", "r1", "--workers", "2", "-q"]
    crash_args = ["--inject-crash", crash, "--crash-marker", str(marker)]
    codes = [main(base + ["--limit", "3"] + crash_args)]
    summaries = [json.loads(Path(out, "runs/cohort=tiny/run=r1/summary.json").read_text())]
    for _ in range(2):
        codes.append(main(base + crash_args))
        summaries.append(json.loads(Path(out, "runs/cohort=tiny/run=r1/summary.json").read_text()))
    return {"root": root, "out": out, "expected": expected, "stems": stems, "crash": crash, "marker": marker, "codes": codes, "summaries": summaries}


def test_every_pair_once_with_status(local_job):
    rows = _rows(local_job["out"], "tiny", "r1")
    stems = local_job["stems"]
    assert local_job["codes"] == [0, 0, 0]
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
    assert local_job["marker"].is_file()  # the worker really died once on this pair
    rows = {r["pair_id"]: r for r in _rows(local_job["out"], "tiny", "r1")}
    assert rows[local_job["crash"]]["status"] == "ok"


def test_resume_skips_written_pairs(local_job):
    first, second, third = local_job["summaries"]
    assert (first["rows"], first["processed_this_attempt"], first["skipped_already_done"]) == (3, 3, 0)
    assert (second["rows"], second["processed_this_attempt"], second["skipped_already_done"]) == (7, 4, 3)
    assert (third["rows"], third["unique_pairs"], third["processed_this_attempt"], third["skipped_already_done"]) == (7, 7, 0, 7)
    assert (third["ok"], third["error"]) == (4, 3)
    assert existing_pair_ids(str(Path(local_job["out"], "metrics/cohort=tiny/run=r1")), None) == set(local_job["stems"])


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
        # the row scores the float image; the PNG is its 8-bit rounding, so luminance moves by < 1/255
        assert abs(rows[pid]["EN"] - en(mr, pet, fused)) < 0.02
        assert abs(rows[pid]["SD"] - sd(mr, pet, fused)) < 0.5
    names = [str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()]
    assert not any(".tmp-" in n for n in names)  # atomic writes leave no temporaries


def test_rows_hold_no_raw_identifiers(local_job):
    for r in _rows(local_job["out"], "tiny", "r1"):
        text = json.dumps({k: v for k, v in r.items() if isinstance(v, str)})
        assert "good" not in text and "nopet" not in text and "corrupt" not in text.replace("Corrupt", "")


def test_qa_report_local(local_job):
    rep = qa_report(local_job["out"], run="r1", metric="ssim", worst=2)
    assert {(c["status"], c["n"]) for c in rep.counts} == {("ok", 4), ("error", 3)}
    assert len(rep.worst) == 2 and len(rep.failed) == 3
    ssim_rows = sorted(r["SSIM"] for r in _rows(local_job["out"], "tiny", "r1") if r["status"] == "ok")
    assert rep.worst[0]["value"] == pytest.approx(ssim_rows[0], abs=1e-12)
    dist = next(d for d in rep.distributions if d["metric"] == "SSIM")
    assert dist["n"] == 4 and dist["mean"] == pytest.approx(float(np.mean(ssim_rows)), rel=1e-9, abs=1e-12)
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
    assert main(args) == 0
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
    assert main(args) == 0
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
    pq.write_table(pa.table({"pair_id": ["a", "b"]}), root / "good.parquet")
    (root / "torn.parquet").write_bytes(b"PAR1 truncated")
    assert existing_pair_ids(str(root), None) == {"a", "b"}
    assert sorted(p.name for p in root.iterdir()) == [".corrupt-torn.parquet", "good.parquet"]


class _FakeRay:
    def __init__(self, resources: dict) -> None:
        self.resources = resources

    def cluster_resources(self) -> dict:
        return self.resources


def test_worker_count_from_cluster():
    from jobs.fuse_cohort import _plan_workers

    parse = build_parser().parse_args
    # one CPU stays free for read/write tasks: (2 - 1) / 0.5 = 2 actors
    assert _plan_workers(_FakeRay({"CPU": 2.0}), 10, parse([])) == 2
    assert _plan_workers(_FakeRay({"CPU": 2.0}), 1, parse([])) == 1
    assert _plan_workers(_FakeRay({"CPU": 64.0, "GPU": 4.0}), 100, parse(["--num-gpus-per-worker", "0.5"])) == 8
    assert _plan_workers(_FakeRay({"CPU": 2.0}), 10, parse(["--smoke-test"])) == 1
    with pytest.raises(ValueError, match="cluster has 0 GPUs"):
        _plan_workers(_FakeRay({"CPU": 8.0}), 10, parse(["--num-gpus-per-worker", "1"]))
    with pytest.raises(ValueError, match="--workers must be >= 1"):
        _plan_workers(_FakeRay({"CPU": 8.0}), 10, parse(["--workers", "0"]))
