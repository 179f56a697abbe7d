"""Text QA of a tracking run: response per subject and follow-up, lesions by status, failed subjects.

The tracking job (``mdafuse track COHORT --out OUT``) writes ``OUT/lesions`` (one row per lesion
track and time point) and ``OUT/responses`` (one row per subject and follow-up, PERCIST-style);
:func:`tracking_report` reads both like :func:`mdafuse.qa.qa_report` reads the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TrackingReport", "tracking_report", "tracking_sections"]


@dataclass
class TrackingReport:
    """What :func:`tracking_report` found.

    Attributes:
        responses: per subject and follow-up: cohort, run, subject, timepoint_label, response, reason,
            peak change (%), new and resolved lesions.
        lesions: per (cohort, run, status_at_timepoint): lesion rows, and how many volumes are reliable.
        failed: subjects whose tracking failed: cohort, run, subject, error.
    """

    responses: list[dict] = field(default_factory=list)
    lesions: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)


def tracking_report(uri: str, *, run: str | None = None, cohort: str | None = None, endpoint: str | None = None) -> TrackingReport | None:
    """The tracking tables under a job output root; None when it holds none."""
    import duckdb

    from mdafuse.qa import _literal, _records, open_table, output_root

    root = output_root(uri)
    lesions, responses = open_table(root, "lesions", endpoint), open_table(root, "responses", endpoint)
    if lesions is None and responses is None:
        return None
    where = [f"{k} = {_literal(v)}" for k, v in (("run", run), ("cohort", cohort)) if v is not None]
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    report = TrackingReport()
    con = duckdb.connect()
    try:
        if responses is not None:
            con.register("responses_all", responses)
            cols = set(responses.schema.names)
            change = "round(peak_change_pct, 1) AS peak_change_pct, " if "peak_change_pct" in cols else ""
            counts = "n_new_lesions, n_resolved_lesions, " if {"n_new_lesions", "n_resolved_lesions"} <= cols else ""
            ok = ("status = 'ok'" if "status" in cols else "true") + (" AND " + " AND ".join(where) if where else "")
            report.responses = _records(
                con.execute(
                    f"SELECT cohort, run, subject, timepoint_label, response, {change}{counts}response_reason AS reason "
                    f"FROM responses_all WHERE {ok} ORDER BY cohort, run, subject, timepoint"
                )
            )
        if lesions is not None:
            con.register("lesions_all", lesions)
            cols = set(lesions.schema.names)
            con.execute(f"CREATE VIEW l AS SELECT * FROM lesions_all{clause}")
            if "status_at_timepoint" in cols:
                reliable = "count(*) FILTER (WHERE volume_reliable) AS reliable_volumes, " if "volume_reliable" in cols else ""
                report.lesions = _records(
                    con.execute(
                        f"SELECT cohort, run, status_at_timepoint AS lesion_status, count(*) AS n, {reliable}"
                        "count(DISTINCT subject) AS subjects FROM l WHERE status = 'ok' GROUP BY ALL ORDER BY cohort, run, lesion_status"
                    )
                )
            report.failed = _records(con.execute("SELECT DISTINCT cohort, run, subject, error FROM l WHERE status <> 'ok' ORDER BY cohort, run, subject"))
        return report
    finally:
        con.close()


def tracking_sections(report: TrackingReport) -> list[tuple[str, list[dict]]]:
    """``(title, rows)`` sections for :func:`mdafuse.qa.format_report`'s renderers."""
    return [
        ("response per follow-up (PERCIST 1.0 style, docs/longitudinal.md)", report.responses),
        ("lesions by status", report.lesions),
        ("failed subjects", report.failed),
    ]
