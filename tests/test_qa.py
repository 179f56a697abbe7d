"""mdafuse.qa and the ``mdafuse qa`` / ``mdafuse run`` commands on hand-made metrics tables."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mdafuse import storage
from mdafuse.cli import build_parser, main
from mdafuse.qa import format_report, open_metrics, qa_report

NAN = float("nan")


def _table(rows: list[tuple]) -> pa.Table:
    """rows of (pair_id, status, SSIM, MSE, rSFe, error)."""
    cols = list(zip(*rows))
    return pa.table(
        {
            "pair_id": list(cols[0]),
            "subject_id": [f"s{p}" for p in cols[0]],
            "session": ["ses-01"] * len(rows),
            "status": list(cols[1]),
            "SSIM": pa.array(cols[2], pa.float64()),
            "MSE": pa.array(cols[3], pa.float64()),
            "rSFe": pa.array(cols[4], pa.float64()),
            "error": list(cols[5]),
        }
    )


def _write(out: str, cohort: str, run: str, part: str, table: pa.Table, endpoint: str | None = None) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes(storage.join(out, "metrics", f"cohort={cohort}", f"run={run}", part), buf.getvalue(), endpoint)


def _populate(out: str, endpoint: str | None = None) -> None:
    _write(out, "a", "r1", "part-0.parquet", _table([("p1", "ok", 1.2, 0.01, -0.30, ""), ("p2", "ok", 0.9, 0.05, 0.10, "")]), endpoint)
    _write(out, "a", "r1", "part-1.parquet", _table([("p3", "ok", 1.5, 0.02, 0.05, ""), ("p4", "error", NAN, NAN, NAN, "ValueError: missing PET location")]), endpoint)
    _write(out, "b", "r2", "part-0.parquet", _table([("q1", "ok", 0.5, 0.09, 0.0, "")]), endpoint)


@pytest.fixture()
def out(tmp_path):
    root = str(tmp_path / "out")
    _populate(root)
    return root


def test_counts_distributions_worst_failed(out):
    rep = qa_report(out, run="r1", metric="ssim", worst=2)
    assert rep.metric == "SSIM"
    assert rep.counts == [{"cohort": "a", "run": "r1", "status": "error", "n": 1}, {"cohort": "a", "run": "r1", "status": "ok", "n": 2 + 1}]
    ssim = next(d for d in rep.distributions if d["metric"] == "SSIM")
    vals = np.array([1.2, 0.9, 1.5])
    assert ssim["n"] == 3
    assert ssim["mean"] == pytest.approx(vals.mean(), abs=1e-12)
    assert ssim["std"] == pytest.approx(vals.std(ddof=1), abs=1e-12)
    assert (ssim["min"], ssim["median"], ssim["max"]) == pytest.approx((0.9, 1.2, 1.5), abs=1e-12)
    assert ssim["p25"] == pytest.approx(np.percentile(vals, 25), abs=1e-12)
    assert [w["pair_id"] for w in rep.worst] == ["p2", "p1"]  # SSIM: higher is better
    assert rep.failed == [{"cohort": "a", "run": "r1", "pair_id": "p4", "subject_id": "sp4", "session": "ses-01", "error": "ValueError: missing PET location"}]


def test_worst_follows_metric_direction(out):
    assert [w["pair_id"] for w in qa_report(out, metric="MSE", worst=2).worst] == ["q1", "p2"]  # lower is better
    assert [w["pair_id"] for w in qa_report(out, run="r1", metric="rSFe", worst=1).worst] == ["p1"]  # |rSFe|
    assert [w["pair_id"] for w in qa_report(out, cohort="b", metric="SSIM", worst=5).worst] == ["q1"]


def test_dataset_has_partition_columns(out):
    table = open_metrics(out).to_table()
    assert table.num_rows == 5
    assert sorted(set(zip(table.column("cohort").to_pylist(), table.column("run").to_pylist()))) == [("a", "r1"), ("b", "r2")]


def test_formats(out):
    rep = qa_report(out, metric="SSIM", worst=1)
    data = json.loads(format_report(rep, "json"))
    assert data["metric"] == "SSIM" and len(data["failed"]) == 1
    csv_text = format_report(rep, "csv")
    assert "# failed pairs\ncohort,run,pair_id,subject_id,session,error\na,r1,p4" in csv_text
    table = format_report(rep, "table")
    assert "worst pairs by SSIM" in table and "missing PET" in table
    with pytest.raises(ValueError, match="format must be one of"):
        format_report(rep, "xml")


def test_bad_queries(out, tmp_path):
    with pytest.raises(ValueError, match="unknown metric 'VIFF'"):
        qa_report(out, metric="VIFF")
    with pytest.raises(ValueError, match="worst must be >= 0"):
        qa_report(out, worst=-1)
    with pytest.raises(ValueError, match="no rows for run 'r9'"):
        qa_report(out, run="r9")
    with pytest.raises(FileNotFoundError, match="no metrics/ folder"):
        qa_report(str(tmp_path / "empty"))


def test_qa_command(out, capsys):
    assert main(["qa", out, "--run", "r1", "--metric", "SSIM", "--worst", "1", "--format", "json"]) == 3  # r1 has a failed pair
    data = json.loads(capsys.readouterr().out)
    assert data["worst"][0]["pair_id"] == "p2" and math.isclose(data["worst"][0]["value"], 0.9)
    assert main(["qa", out, "--metric", "nope"]) == 2


def test_run_command_has_the_jobs_options():
    """`mdafuse run` parses exactly the job's options (one list, no copies) and calls it in this process."""
    from mdafuse.jobs.fuse_cohort import build_parser as job_parser

    argv = ["m.csv", "--out", "s3://b/o", "--run-id", "r1", "--num-gpus-per-worker", "1", "--batch-size", "64", "--score-every", "2", "--shared-fs"]
    ours = vars(build_parser().parse_args(["run", *argv]))
    theirs = vars(job_parser().parse_args(argv))
    assert {k: ours[k] for k in theirs} == theirs
    run_actions = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["run"]._actions}
    assert {a.dest for a in job_parser()._actions} <= run_actions
    assert job_parser().parse_args(["c/", "--out", "o", "--modality", "spect"]).modality == "SPECT"
    with pytest.raises(SystemExit):
        job_parser().parse_args(["c/", "--out", "o", "--modality", "MRI"])


def test_qa_on_s3(s3_server, monkeypatch):
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    out = f"s3://{s3_server.bucket}/qa-test"
    _populate(out)
    rep = qa_report(out, metric="SSIM", worst=1)
    assert sum(c["n"] for c in rep.counts) == 5 and rep.worst[0]["pair_id"] == "q1"


def test_run_command_runs_the_job(tmp_path, capfd):
    """`mdafuse run` runs the job in this process and passes its exit status on."""
    assert main(["run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "fuse_cohort: error:" in capfd.readouterr().err
