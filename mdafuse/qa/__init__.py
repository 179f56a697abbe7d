"""Quality assurance of cohort-job results: counts, metric distributions, worst and failed pairs.

The metrics written by ``jobs/fuse_cohort.py`` live under ``OUT/metrics/cohort=C/run=R/*.parquet``
(one row per pair). :func:`open_metrics` opens them as a hive-partitioned ``pyarrow.dataset``
(local or S3, through :mod:`mdafuse.storage`); :func:`qa_report` registers the dataset as a
DuckDB view (DuckDB's own S3 extension is not needed) and answers with SQL. Other result tables
of the same layout (the tracking job's ``OUT/lesions``) open with :func:`open_table`; the HTML
report is :mod:`mdafuse.qa.html_report`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.dataset as pads

from mdafuse import storage

__all__ = ["NoRows", "QAReport", "metrics_root", "open_metrics", "open_table", "qa_report", "format_report", "format_sections", "FORMATS", "output_root"]

log = logging.getLogger(__name__)

FORMATS = ("table", "csv", "json")
_PARTITIONING = pads.partitioning(pa.schema([("cohort", pa.string()), ("run", pa.string())]), flavor="hive")


class NoRows(ValueError):
    """The results hold no row for the run/cohort asked for."""


@dataclass
class QAReport:
    """What :func:`qa_report` found.

    Attributes:
        metric: the metric used for the worst-pairs list.
        counts: one dict per (cohort, run, status) with ``n``.
        distributions: one dict per (cohort, metric) with n, mean, std, min, p25, median, p75, max over ok pairs.
        worst: the ``k`` ok pairs with the worst ``metric`` (pair_id, subject_id, session, value).
        failed: every error pair: cohort, run, pair_id, subject_id, session, error.
    """

    metric: str
    counts: list[dict] = field(default_factory=list)
    distributions: list[dict] = field(default_factory=list)
    worst: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)


def metrics_root(uri: str, endpoint: str | None = None) -> str:
    """The ``metrics`` folder of a job output root (or ``uri`` itself when it is that folder)."""
    text = str(uri).rstrip("/")
    if text.endswith("/metrics") or text == "metrics":
        return text
    candidate = storage.join(text, "metrics")
    if storage.exists(candidate, endpoint):
        return candidate
    raise FileNotFoundError(f"{uri}: no metrics/ folder: expected the --out location of a fuse_cohort run")


def output_root(uri: str) -> str:
    """The job's ``--out`` location of ``uri`` (``uri`` itself, or its parent when it names the ``metrics`` folder)."""
    text = str(uri).rstrip("/")
    if text.endswith("/metrics"):
        return text[: -len("/metrics")]
    return "." if text == "metrics" else text


def open_metrics(uri: str, endpoint: str | None = None) -> pads.Dataset:
    """All metrics rows under a job output root as a dataset with ``cohort`` and ``run`` columns."""
    return _dataset(metrics_root(uri, endpoint), endpoint)


def open_table(root: str, name: str, endpoint: str | None = None) -> pads.Dataset | None:
    """The rows of ``root/name/cohort=C/run=R/*.parquet`` (e.g. ``lesions``) as a dataset; None when there are none."""
    folder = storage.join(root, name)
    try:
        return _dataset(folder, endpoint)
    except FileNotFoundError:
        return None


def _dataset(folder: str, endpoint: str | None) -> pads.Dataset:
    fs, path = storage.filesystem(folder, endpoint)
    files = [storage.filesystem(f, endpoint)[1] for f in storage.list_files(folder, ".parquet", endpoint)]
    if not files:
        raise FileNotFoundError(f"{folder}: no Parquet files")
    return pads.dataset(files, filesystem=fs, format="parquet", partitioning=_PARTITIONING, partition_base_dir=path)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qa_report(
    uri: str,
    *,
    run: str | None = None,
    cohort: str | None = None,
    metric: str = "SSIM",
    worst: int = 5,
    endpoint: str | None = None,
    higher_is_better: bool | None = None,
) -> QAReport:
    """Summarise a job's results.

    Args:
        uri: the job's ``--out`` location (local or ``s3://``) or its ``metrics`` folder.
        run: keep only this run id.
        cohort: keep only this cohort.
        metric: metric column for the worst list (case-insensitive, e.g. ``ssim``).
        worst: how many worst pairs to list (>= 0).
        endpoint: S3 endpoint override.
        higher_is_better: direction of ``metric``; by default taken from
            :data:`mdafuse.metrics.METRICS` (``rSFe``: larger absolute value is worse).

    Raises:
        FileNotFoundError: no results at ``uri``.
        ValueError: unknown metric, negative ``worst``, or no rows for the run/cohort.
    """
    import duckdb

    if worst < 0:
        raise ValueError(f"worst must be >= 0; got {worst}")
    dataset = open_metrics(uri, endpoint)
    metric_cols = _metric_columns(dataset.schema)
    lookup = {m.lower(): m for m in metric_cols}
    if metric.lower() not in lookup:
        raise ValueError(f"unknown metric {metric!r}; the results hold {metric_cols}")
    metric = lookup[metric.lower()]
    better = _direction(metric) if higher_is_better is None else ("higher" if higher_is_better else "lower")
    con = duckdb.connect()
    try:
        con.register("metrics_all", dataset)
        where = []
        if run is not None:
            where.append(f"run = {_literal(run)}")
        if cohort is not None:
            where.append(f"cohort = {_literal(cohort)}")
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        con.execute(f"CREATE VIEW m AS SELECT * FROM metrics_all{clause}")
        if con.execute("SELECT count(*) FROM m").fetchone()[0] == 0:
            raise NoRows(f"{uri}: no rows" + (f" for run {run!r}" if run else "") + (f" in cohort {cohort!r}" if cohort else ""))
        report = QAReport(metric=metric)
        report.counts = _records(con.execute("SELECT cohort, run, status, count(*) AS n FROM m GROUP BY ALL ORDER BY cohort, run, status"))
        for m in metric_cols:
            q = _quote(m)
            report.distributions += _records(
                con.execute(
                    f"SELECT cohort, '{m}' AS metric, count({q}) AS n, avg({q}) AS mean, stddev_samp({q}) AS std, "
                    f"min({q}) AS min, quantile_cont({q}, 0.25) AS p25, median({q}) AS median, "
                    f"quantile_cont({q}, 0.75) AS p75, max({q}) AS max "
                    f"FROM m WHERE status = 'ok' AND NOT isnan({q}) GROUP BY cohort ORDER BY cohort"
                )
            )
        q = _quote(metric)
        order = {"higher": f"{q} ASC", "lower": f"{q} DESC", "abs_lower": f"abs({q}) DESC"}[better]
        report.worst = _records(
            con.execute(
                f"SELECT cohort, run, pair_id, subject_id, session, {q} AS value FROM m "
                f"WHERE status = 'ok' AND NOT isnan({q}) ORDER BY {order}, pair_id LIMIT {int(worst)}"
            )
        )
        report.failed = _records(con.execute("SELECT cohort, run, pair_id, subject_id, session, error FROM m WHERE status <> 'ok' ORDER BY cohort, run, pair_id"))
        return report
    finally:
        con.close()


def _literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _metric_columns(schema: pa.Schema) -> list[str]:
    from mdafuse.metrics import METRICS

    return [n for n in schema.names if n in METRICS and pa.types.is_floating(schema.field(n).type)]


def _direction(metric: str) -> str:
    from mdafuse.metrics import METRICS

    return METRICS[metric].better


def _records(result) -> list[dict]:
    cols = [d[0] for d in result.description]
    return [dict(zip(cols, _clean(row))) for row in result.fetchall()]


def _clean(row: tuple) -> list:
    out = []
    for v in row:
        if isinstance(v, float) and math.isnan(v):
            out.append(None)
        else:
            out.append(v)
    return out


def format_report(report: QAReport, fmt: str = "table") -> str:
    """Render a report as an aligned text table, CSV (sections separated by a blank line) or JSON."""
    if fmt == "json":
        return json.dumps(asdict(report), indent=2, default=str)
    sections = [
        ("counts by status", report.counts),
        ("metric distributions (ok pairs)", report.distributions),
        (f"worst pairs by {report.metric}", report.worst),
        ("failed pairs", report.failed),
    ]
    return format_sections(sections, fmt)


def format_sections(sections: list[tuple[str, list[dict]]], fmt: str = "table") -> str:
    """``(title, rows)`` sections as aligned text tables, CSV (separated by a blank line) or JSON (title -> rows)."""
    if fmt == "json":
        return json.dumps({title: rows for title, rows in sections}, indent=2, default=str)
    if fmt == "csv":
        parts = []
        for title, rows in sections:
            buf = io.StringIO()
            buf.write(f"# {title}\n")
            if rows:
                w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
                w.writeheader()
                w.writerows(rows)
            parts.append(buf.getvalue())
        return "\n".join(parts).rstrip("\n")
    if fmt == "table":
        return "\n\n".join(f"{title}:\n{_table(rows)}" for title, rows in sections).rstrip("\n")
    raise ValueError(f"format must be one of {FORMATS}; got {fmt!r}")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(rows: list[dict]) -> str:
    if not rows:
        return "  (none)"
    cols = list(rows[0])
    cells = [[_fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
