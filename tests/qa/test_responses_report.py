"""The HTML QA report of a tracking run: the per-subject response table beside the lesions table."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from mdafuse.longitudinal.track import RESPONSE_SCHEMA
from mdafuse.qa.collect import collect
from mdafuse.qa.html_report import render_html, write_html_report


def _tracking_run(out):
    lesions = pa.table({
        "subject": ["s1"] * 5,
        "track_id": pa.array([1, 2, 1, 2, 3], pa.int32()),
        "timepoint": pa.array([0, 0, 1, 1, 1], pa.int32()),
        "timepoint_label": ["ses-01", "ses-01", "ses-02", "ses-02", "ses-02"],
        "present": [True, True, True, False, True],
        "suv_peak": [9.0, 8.0, 9.5, None, 7.0],
        "status_at_timepoint": ["baseline", "baseline", "persisting", "resolved", "new"],
        "response": [None, None, "PMD", "PMD", "PMD"],
        "note": ["", "", "", "resolved: last seen at ses-01 (size 1.2 ml, SUVpeak 8)", ""],
        "status": ["ok"] * 5,
        "error": [""] * 5,
    })
    row = {name: None for name in RESPONSE_SCHEMA.names}
    row.update(subject="s1", timepoint=1, timepoint_label="ses-02", baseline_label="ses-01", response="PMD", response_reason="1 new lesion(s)",
               response_measure="SULpeak", baseline_peak=7.1, followup_peak=7.5, n_lesions_baseline=2, n_lesions=2, n_new_lesions=1,
               n_resolved_lesions=1, note="")
    responses = pa.Table.from_pylist([{**row, "status": "ok", "error": "", "warnings": "", "outputs_uri": ""}])
    for name, table in (("lesions", lesions), ("responses", responses)):
        folder = out / name / "cohort=c" / "run=r"
        folder.mkdir(parents=True)
        pq.write_table(table, folder / "part-0.parquet")
    runs = out / "runs" / "cohort=c" / "run=r"
    runs.mkdir(parents=True)
    (runs / "tracking-summary.json").write_text(json.dumps({"wall_s": 1.0}))


def test_response_table_in_the_html_report(tmp_path):
    _tracking_run(tmp_path / "out")
    data = collect(str(tmp_path / "out"))
    assert data.qa is None and [t.name for t in data.tables] == ["lesions", "responses"]
    lesions, responses = data.tables
    assert lesions.response_columns == ["cohort", "run", "subject", "ses-02"]
    assert lesions.responses == [{"cohort": "c", "run": "r", "subject": "s1", "ses-02": "PMD"}]
    assert responses.response_columns == [] and responses.n_rows == 1  # already one row per subject and follow-up
    assert responses.rows[0]["response_reason"] == "1 new lesion(s)" and responses.rows[0]["n_new_lesions"] == 1
    text = render_html(data)
    section = text.split('<section id="table-responses">', 1)[1].split("</section>", 1)[0]
    assert "1 new lesion(s)" in section and "SULpeak" in section and "Response per subject" not in section
    lesion_section = text.split('<section id="table-lesions">', 1)[1].split("</section>", 1)[0]
    assert "Response per subject" in lesion_section and "resolved: last seen at ses-01" in lesion_section
    path = tmp_path / "report.html"
    write_html_report(str(tmp_path / "out"), str(path))
    assert 'id="table-responses"' in path.read_text(encoding="utf-8")
