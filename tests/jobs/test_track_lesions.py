"""``jobs.track_lesions`` on the demo cohort: one subject tracked, one failing subject, resume."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.track_lesions import main, subject_table
from mdafuse.cohort import build_pair_table


def test_track_job(ray_local, tmp_path):
    from mdafuse.io.demo_cohort import write_demo_cohort

    cohort = tmp_path / "cohort"
    write_demo_cohort(cohort, 1, 2, 0)
    with open(cohort / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows.append({**rows[0], "subject": "lonely", "session": "ses-01"})  # one time point only
    with open(cohort / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    subjects = subject_table(build_pair_table(cohort / "manifest.csv", "t").table)
    assert subjects.num_rows == 2
    assert sorted(len(json.loads(t)) for t in subjects.column("timepoints").to_pylist()) == [1, 2]

    out = tmp_path / "out"
    args = [str(cohort / "manifest.csv"), "--out", str(out), "--cohort-name", "t", "--run-id", "r", "--no-fuse", "--workers", "2", "-q"]
    assert main(args) == 0
    files = sorted((out / "lesions/cohort=t/run=r").glob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    by_status: dict[str, list[dict]] = {}
    for r in table.to_pylist():
        by_status.setdefault(r["status"], []).append(r)
    assert len(by_status["error"]) == 1 and "need at least 2 time points" in by_status["error"][0]["error"]
    ok = by_status["ok"]
    assert {r["timepoint"] for r in ok} == {0, 1} and all(r["track_id"] >= 1 for r in ok)
    assert all(r["size_unit"] and r["n_timepoints"] == 2 for r in ok)
    subject = ok[0]["subject"]
    assert len(subject) == 16 and "sub-" not in subject  # pseudonymous key
    assert (out / "tracking/cohort=t/run=r" / subject / "tracking.png").is_file()
    first = json.loads((out / "runs/cohort=t/run=r/tracking-summary.json").read_text())
    assert (first["ok"], first["error"], first["processed_this_attempt"]) == (1, 1, 2)

    assert main(args) == 0  # resume: nothing left to do
    again = json.loads((out / "runs/cohort=t/run=r/tracking-summary.json").read_text())
    assert (again["skipped_already_done"], again["processed_this_attempt"], again["subjects_written"]) == (2, 0, 2)
    assert sum(pq.read_table(f).num_rows for f in (out / "lesions/cohort=t/run=r").glob("*.parquet")) == table.num_rows
