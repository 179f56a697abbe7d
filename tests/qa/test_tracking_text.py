"""Text QA of a tracking run: responses, lesions by status and failed subjects from the job's tables."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mdafuse.qa.tracking import tracking_report


def _write(root: Path, name: str, rows: list[dict]) -> None:
    folder = root / name / "cohort=c" / "run=r"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "part-0.parquet")


def _tracking_output(root: Path) -> None:
    lesion = {"subject": "s1", "track_id": 1, "timepoint": 0, "status_at_timepoint": "baseline", "volume_reliable": True, "status": "ok", "error": ""}
    _write(root, "lesions", [
        lesion,
        {**lesion, "timepoint": 1, "status_at_timepoint": "persisting", "volume_reliable": False},
        {**lesion, "track_id": 2, "timepoint": 1, "status_at_timepoint": "new"},
        {"subject": "s2", "track_id": None, "timepoint": None, "status_at_timepoint": None, "volume_reliable": None, "status": "error", "error": "baseline has no PET"},
    ])  # fmt: skip
    _write(root, "responses", [
        {"subject": "s1", "timepoint": 1, "timepoint_label": "ses-02", "response": "PMD", "response_reason": "1 new lesion(s)", "peak_change_pct": 12.34,
         "n_new_lesions": 1, "n_resolved_lesions": 0, "status": "ok"},
    ])  # fmt: skip


def test_tracking_report_counts_and_responses(tmp_path: Path) -> None:
    _tracking_output(tmp_path)
    report = tracking_report(str(tmp_path))
    assert report is not None
    assert report.responses == [{"cohort": "c", "run": "r", "subject": "s1", "timepoint_label": "ses-02", "response": "PMD", "peak_change_pct": 12.3, "n_new_lesions": 1, "n_resolved_lesions": 0, "reason": "1 new lesion(s)"}]
    by_status = {r["lesion_status"]: (r["n"], r["reliable_volumes"]) for r in report.lesions}
    assert by_status == {"baseline": (1, 1), "persisting": (1, 0), "new": (1, 1)}
    assert report.failed == [{"cohort": "c", "run": "r", "subject": "s2", "error": "baseline has no PET"}]
    assert tracking_report(str(tmp_path), run="other").responses == []
    assert tracking_report(str(tmp_path / "nothing")) is None


def test_qa_command_on_a_tracking_output(tmp_path: Path, capsys) -> None:
    from mdafuse.cli import main

    _tracking_output(tmp_path)
    assert main(["qa", str(tmp_path), "--format", "json"]) == 3  # a failed subject
    sections = json.loads(capsys.readouterr().out)
    assert sections["failed subjects"][0]["subject"] == "s2"
    assert [r["response"] for r in sections["response per follow-up (PERCIST 1.0 style, docs/longitudinal.md)"]] == ["PMD"]
    assert main(["qa", str(tmp_path / "empty")]) == 2


def test_qa_command_with_run_of_a_tracking_run_beside_fusion_runs(tmp_path: Path, capsys) -> None:
    """--run naming the tracking run of an output that also holds fusion metrics: the tracking report, not 'no rows'."""
    from mdafuse.cli import main

    _tracking_output(tmp_path)
    _write(tmp_path, "metrics", [{"pair_id": "p", "subject_id": "s", "session": "1", "status": "ok", "error": "", "SSIM": 1.0}])
    (tmp_path / "metrics/cohort=c/run=r").rename(tmp_path / "metrics/cohort=c/run=fusion")
    assert main(["qa", str(tmp_path), "--run", "r", "--format", "json"]) == 3
    assert "failed subjects" in json.loads(capsys.readouterr().out)
    assert main(["qa", str(tmp_path), "--run", "nothing"]) == 2  # no rows anywhere: still an error
