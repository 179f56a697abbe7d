"""What the HTML QA report shows, read from a job's output root (local folder or S3).

:func:`collect` reads the fusion job's ``metrics`` rows (through :func:`mdafuse.qa.qa_report`),
the ``summary.json`` of each run, the thumbnails of the worst pairs under ``images/``, and any other
result table of the same layout (the tracking job's ``lesions`` and ``responses``), and returns a :class:`ReportData`
that :mod:`mdafuse.qa.html_report` renders.
"""

from __future__ import annotations

import json
import logging
import math
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from mdafuse import storage
from mdafuse.qa import QAReport, _direction, _literal, _metric_columns, _quote, _records, open_table, output_root, qa_report

__all__ = ["ReportData", "TableSection", "Thumbnails", "collect", "TABLES", "THUMBNAILS"]

#: other result tables read besides ``metrics``: folder under OUT -> its run summary file under ``runs/``
TABLES: dict[str, str] = {"lesions": "tracking-summary.json", "responses": "tracking-summary.json"}
#: thumbnail columns of the worst pairs, in order
THUMBNAILS = ("MR", "PET", "fused", "enhanced")
log = logging.getLogger(__name__)
_FUSED = re.compile(r"^fused_(\d+)\.png$")
_ID_COLUMNS = ("subject", "subject_id", "pair_id", "session", "timepoint_label", "track_id", "timepoint")


@dataclass
class Thumbnails:
    """The images of one pair: PNG bytes per :data:`THUMBNAILS` name (None when the job wrote none)."""

    images: dict[str, bytes | None]
    slice_index: int | None = None
    slices_written: int = 0


@dataclass
class TableSection:
    """One extra result table (e.g. ``lesions``) as the report shows it.

    Attributes:
        name: the folder under OUT.
        columns: the columns of ``rows``, ``cohort`` and ``run`` first.
        rows: the first rows (at most ``max_rows`` of :func:`collect`).
        n_rows: all rows that match the filters.
        counts: rows per (cohort, run, status), when the table has ``status``.
        failed: rows whose status is not ok, with their ids and ``error``.
        responses: one row per subject with its response per time point, when the table has ``response``.
        response_columns: the columns of ``responses``.
    """

    name: str
    columns: list[str]
    rows: list[dict]
    n_rows: int
    counts: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    responses: list[dict] = field(default_factory=list)
    response_columns: list[str] = field(default_factory=list)


@dataclass
class ReportData:
    """Everything the HTML report shows.

    Attributes:
        source: the output root read.
        generated_at: UTC time of the report.
        filters: the ``run``/``cohort`` filters given.
        qa: the fusion QA (counts, distributions, worst, failed); None without fusion rows.
        better: the direction of ``qa.metric`` ("higher", "lower", "abs_lower").
        runs: one dict per (table, cohort, run): counts, workers, nodes, devices, weights and the run's summary file.
        timings: mean stage seconds per (table, cohort, run) over ok rows.
        values: metric -> cohort -> the metric's finite values over ok pairs.
        thumbnails: (cohort, run, pair_id) -> its :class:`Thumbnails`, for the worst pairs.
        registration: None when no row has a registration; else ``summary`` (per cohort, run and method),
            ``values`` (cohort -> qualities) and ``rows`` (the lowest qualities first).
        tables: the extra tables (e.g. ``lesions``).
    """

    source: str
    generated_at: str
    filters: dict[str, str]
    qa: QAReport | None = None
    better: str = ""
    runs: list[dict] = field(default_factory=list)
    timings: list[dict] = field(default_factory=list)
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    thumbnails: dict[tuple[str, str, str], Thumbnails] = field(default_factory=dict)
    registration: dict | None = None
    tables: list[TableSection] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        """Failed rows shown: fusion pairs plus the extra tables' error rows."""
        return (len(self.qa.failed) if self.qa else 0) + sum(len(t.failed) for t in self.tables)


def collect(
    uri: str,
    *,
    run: str | None = None,
    cohort: str | None = None,
    metric: str = "SSIM",
    worst: int = 5,
    endpoint: str | None = None,
    tables: Mapping[str, str] | None = None,
    max_rows: int = 200,
) -> ReportData:
    """Read what the HTML report shows from a job's output root.

    Args:
        uri: the job's ``--out`` location (local or ``s3://``), or its ``metrics`` folder.
        run: keep only this run id.
        cohort: keep only this cohort.
        metric: metric for the worst pairs (as :func:`mdafuse.qa.qa_report`).
        worst: how many worst pairs (and lowest registration qualities) to show.
        endpoint: S3 endpoint override.
        tables: extra tables to read (folder -> run summary file); default :data:`TABLES`.
        max_rows: most rows of each extra table shown.

    Raises:
        FileNotFoundError: no result table under ``uri``.
        ValueError: no rows for the run/cohort, an unknown metric or a negative ``worst``.
    """
    import duckdb

    if worst < 0:
        raise ValueError(f"worst must be >= 0; got {worst}")
    root = output_root(uri)
    tables = TABLES if tables is None else tables
    data = ReportData(source=root, generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                      filters={k: v for k, v in (("run", run), ("cohort", cohort)) if v is not None})
    where = [f"{c} = {_literal(v)}" for c, v in (("run", run), ("cohort", cohort)) if v is not None]
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    con = duckdb.connect()
    try:
        found: dict = {}
        present: list[str] = []
        summaries: dict[str, dict | None] = {}
        for name in ("metrics", *tables):
            dataset = open_table(root, name, endpoint)
            if dataset is None:
                continue
            found[name] = dataset
            con.register(f"{name}_all", dataset)
            con.execute(f"CREATE VIEW {_quote(name)} AS SELECT * FROM {_quote(name + '_all')}{clause}")
            if con.execute(f"SELECT count(*) FROM {_quote(name)}").fetchall()[0][0]:
                present.append(name)
        if not found:
            raise FileNotFoundError(f"{uri}: no metrics/ or {'/, '.join(tables)}/ tables: expected the --out location of a job")
        if not present:
            raise ValueError(f"{uri}: no rows" + (f" for run {run!r}" if run else "") + (f" in cohort {cohort!r}" if cohort else ""))
        for name in present:
            cols = _columns(con, name)
            summary_file = "summary.json" if name == "metrics" else tables[name]
            data.runs += _runs(con, name, cols, root, summary_file, endpoint, summaries)
            data.timings += _timings(con, name, cols)
        if "metrics" in present:
            data.qa = qa_report(root, run=run, cohort=cohort, metric=metric, worst=worst, endpoint=endpoint)
            data.better = _direction(data.qa.metric)
            data.values = _metric_values(con, _metric_columns(found["metrics"].schema))
            for w in data.qa.worst:
                data.thumbnails[(w["cohort"], w["run"], w["pair_id"])] = thumbnails(root, w["cohort"], w["run"], w["pair_id"], endpoint)
            data.registration = _registration(con, _columns(con, "metrics"), worst)
        data.tables = [_table_section(con, name, max_rows) for name in present if name != "metrics"]
        return data
    finally:
        con.close()


def _columns(con, view: str) -> list[str]:
    return [d[0] for d in con.execute(f"SELECT * FROM {_quote(view)} LIMIT 0").description]


def _split(values) -> list[str]:
    return sorted({part for v in values if v for part in str(v).split(",") if part})


def _runs(con, view: str, cols: list[str], root: str, summary_file: str, endpoint: str | None, summaries: dict[str, dict | None]) -> list[dict]:
    """Per (cohort, run): row counts by status, the workers, nodes and devices that wrote rows, weights, summary.

    ``summaries`` caches the summary files read (path -> content), so tables sharing one are read once.
    """
    v = _quote(view)
    ok = "status = 'ok'" if "status" in cols else "TRUE"
    out = []
    for r in _records(con.execute(f"SELECT cohort, run, count(*) AS n, count_if({ok}) AS ok FROM {v} GROUP BY ALL ORDER BY cohort, run")):
        sel = f"cohort = {_literal(r['cohort'])} AND run = {_literal(r['run'])}"
        info = {"table": view, "cohort": r["cohort"], "run": r["run"], "rows": r["n"], "ok": r["ok"], "error": r["n"] - r["ok"]}
        for col, key in (("worker", "workers"), ("node_id", "nodes"), ("device", "devices")):
            info[key] = _split(x[0] for x in con.execute(f"SELECT DISTINCT {_quote(col)} FROM {v} WHERE {sel}").fetchall()) if col in cols else []
        info["weights"] = []
        if {"model_version", "weights_sha256"} <= set(cols):
            pairs = con.execute(f"SELECT DISTINCT model_version, weights_sha256 FROM {v} WHERE {sel} AND {ok} ORDER BY ALL").fetchall()
            info["weights"] = [f"{m} ({str(h)[:12]})" for m, h in pairs if h]
        path = storage.join(root, "runs", f"cohort={r['cohort']}", f"run={r['run']}", summary_file)
        if path not in summaries:
            try:
                summaries[path] = json.loads(storage.read_bytes(path, endpoint))
            except (FileNotFoundError, ValueError):
                summaries[path] = None
        info["summary"] = summaries[path]
        out.append(info)
    return out


def _timings(con, view: str, cols: list[str]) -> list[dict]:
    """Mean seconds of each ``t_*_s`` column per (cohort, run), over ok rows."""
    times = [c for c in cols if c.startswith("t_") and c.endswith("_s")]
    if not times:
        return []
    ok = " WHERE status = 'ok'" if "status" in cols else ""
    means = ", ".join(f"avg({_quote(c)}) AS {_quote(c)}" for c in times)
    return [{"table": view, **r} for r in _records(con.execute(f"SELECT cohort, run, count(*) AS n, {means} FROM {_quote(view)}{ok} GROUP BY ALL ORDER BY cohort, run"))]


def _metric_values(con, metrics: list[str]) -> dict[str, dict[str, list[float]]]:
    values: dict[str, dict[str, list[float]]] = {m: {} for m in metrics}
    cohorts = [c for (c,) in con.execute("SELECT DISTINCT cohort FROM metrics ORDER BY cohort").fetchall()]
    if not metrics:
        return values
    rows = con.execute(f"SELECT cohort, {', '.join(_quote(m) for m in metrics)} FROM metrics WHERE status = 'ok'").fetchall()
    for m in metrics:
        for c in cohorts:
            values[m][c] = []
    for row in rows:
        for m, x in zip(metrics, row[1:]):
            if x is not None and math.isfinite(x):
                values[m][row[0]].append(float(x))
    return values


def thumbnails(root: str, cohort: str, run: str, pair_id: str, endpoint: str | None = None, max_side: int = 256) -> Thumbnails:
    """The MR, PET, fused and enhanced images of one pair: the middle fused slice the job wrote and its sources.

    The job writes ``fused_###.png``/``enhanced_###.png`` per written slice and ``mr_preview.png``/
    ``pet_preview.png`` of the middle written slice under ``images/cohort=C/run=R/<pair_id>/``.
    """
    from mdafuse.qa.figures import thumbnail_png

    folder = storage.join(root, "images", f"cohort={cohort}", f"run={run}", pair_id)
    names = {posixpath.basename(f) for f in storage.list_files(folder, ".png", endpoint)}
    fused = sorted((int(m.group(1)), n) for n in names if (m := _FUSED.match(n)))
    z = fused[len(fused) // 2][0] if fused else None
    wanted = {"MR": "mr_preview.png", "PET": "pet_preview.png"}
    if z is not None:
        wanted.update(fused=f"fused_{z:03d}.png", enhanced=f"enhanced_{z:03d}.png")
    images: dict[str, bytes | None] = {}
    for key in THUMBNAILS:
        name = wanted.get(key)
        images[key] = None
        if name in names:
            try:
                images[key] = thumbnail_png(storage.read_bytes(storage.join(folder, name), endpoint), max_side)
            except Exception as exc:  # noqa: BLE001 - an unreadable image is shown as missing, not a failed report
                log.warning("thumbnail %s: %s: %s", storage.join(folder, name), type(exc).__name__, exc)
    return Thumbnails(images=images, slice_index=z, slices_written=len(fused))


def _registration(con, cols: list[str], limit: int) -> dict | None:
    """Registration of the pairs, when some row has a ``registration`` other than ``none``.

    The summary counts every method (``none`` included); qualities are those that are not NaN.
    """
    if "registration" not in cols:
        return None
    has = "registration IS NOT NULL AND CAST(registration AS VARCHAR) <> ''"
    registered = f"{has} AND lower(CAST(registration AS VARCHAR)) <> 'none'"
    if not con.execute(f"SELECT count(*) FROM metrics WHERE {registered}").fetchall()[0][0]:
        return None  # older runs without the column, or no pair registered
    quality = "registration_quality" in cols
    q = "CASE WHEN isnan(registration_quality) THEN NULL ELSE registration_quality END" if quality else "NULL"
    stats = f"count({q}) AS n_quality, min({q}) AS min, median({q}) AS median, avg({q}) AS mean, max({q}) AS max"
    summary = _records(con.execute(f"SELECT cohort, run, registration, count(*) AS pairs, {stats} FROM metrics WHERE {has} GROUP BY ALL ORDER BY cohort, run, registration"))
    values: dict[str, list[float]] = {}
    rows: list[dict] = []
    if quality:
        for c, x in con.execute(f"SELECT cohort, {q} FROM metrics WHERE {has} AND {q} IS NOT NULL ORDER BY cohort").fetchall():
            values.setdefault(c, []).append(float(x))
        transform = "registration_transform" if "registration_transform" in cols else "NULL"
        ids = ", ".join(c for c in ("subject_id", "session") if c in cols)
        rows = _records(con.execute(
            f"SELECT cohort, run, pair_id, {ids + ', ' if ids else ''}registration, {q} AS registration_quality, {transform} AS registration_transform "
            f"FROM metrics WHERE {has} AND {q} IS NOT NULL ORDER BY registration_quality ASC, pair_id LIMIT {int(limit)}"
        ))
        for r in rows:
            raw = r.pop("registration_transform")
            r.update(transform_summary(raw))
            r["registration_transform"] = transform_text(raw, limit=2000)
    return {"summary": summary, "values": values, "rows": rows}


def transform_summary(value) -> dict:
    """``angle_deg`` and ``shift_mm`` (text) of a rigid transform's JSON; None where it does not say."""
    out = {"angle_deg": None, "shift_mm": None}
    try:
        obj = json.loads(value) if isinstance(value, str) and value else value
    except ValueError:
        return out
    if not isinstance(obj, dict):
        return out
    angle = obj.get("angle_deg")
    if isinstance(angle, (int, float)) and not isinstance(angle, bool):
        out["angle_deg"] = float(angle)
    shift = obj.get("translation_mm")
    if isinstance(shift, list) and shift and all(isinstance(x, (int, float)) for x in shift):
        out["shift_mm"] = "(" + ", ".join(f"{x:.2f}" for x in shift) + ")"
    return out


def transform_text(value, limit: int = 240) -> str:
    """A registration transform (JSON text) shown compactly: numbers to 4 significant digits."""
    if value is None or value == "":
        return ""
    try:
        obj = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return str(value)[:limit]

    def short(x):
        if isinstance(x, float):
            return float(f"{x:.4g}")
        if isinstance(x, list):
            return [short(v) for v in x]
        if isinstance(x, dict):
            return {k: short(v) for k, v in x.items()}
        return x

    text = json.dumps(short(obj), separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: what a reader looks at first in a wide table (the Parquet keeps every column): the tracking
#: job's lesion table without centroids, registration parameters and timings
_READING_COLUMNS: dict[str, tuple[str, ...]] = {
    "lesions": (
        "subject", "track_id", "timepoint_label", "status_at_timepoint", "size", "size_unit", "max_suv", "suv_peak", "sul_peak",
        "mtv_ml", "tlg", "size_change_pct", "volume_reliable", "response", "note", "status", "error",
    ),
}


def _table_section(con, name: str, max_rows: int) -> TableSection:
    v = _quote(name)
    cols = _columns(con, name)
    body = [c for c in _READING_COLUMNS.get(name, cols) if c in cols and c not in ("cohort", "run")]
    keys = [c for c in _ID_COLUMNS if c in cols]
    order = ", ".join(["cohort", "run", *(_quote(k) for k in keys)])
    section = TableSection(
        name=name, columns=["cohort", "run", *body], n_rows=con.execute(f"SELECT count(*) FROM {v}").fetchall()[0][0],
        rows=_records(con.execute(f"SELECT cohort, run, {', '.join(_quote(c) for c in body)} FROM {v} ORDER BY {order} LIMIT {int(max_rows)}")),
    )
    if "status" in cols:
        section.counts = _records(con.execute(f"SELECT cohort, run, status, count(*) AS n FROM {v} GROUP BY ALL ORDER BY cohort, run, status"))
        ids = [c for c in ("subject", "subject_id", "pair_id", "session") if c in cols]
        err = ", error" if "error" in cols else ""
        section.failed = _records(con.execute(
            f"SELECT DISTINCT cohort, run{''.join(', ' + _quote(c) for c in ids)}{err} FROM {v} WHERE status <> 'ok' ORDER BY ALL"
        ))
    if "response" in cols and name != "responses":  # the responses table is itself one row per subject and follow-up
        section.response_columns, section.responses = _responses(con, name, cols)
    return section


def _responses(con, name: str, cols: list[str]) -> tuple[list[str], list[dict]]:
    """One row per subject with its response per time point (``response`` values joined when they differ)."""
    subject = next((c for c in ("subject", "subject_id", "pair_id") if c in cols), None)
    tp = next((c for c in ("timepoint_label", "session", "timepoint") if c in cols), None)
    if subject is None:
        return [], []
    order = "min(timepoint)" if "timepoint" in cols else "NULL"
    tp_sel = f"CAST({_quote(tp)} AS VARCHAR)" if tp else "'response'"
    found = con.execute(
        f"SELECT cohort, run, {_quote(subject)}, {tp_sel} AS tp, {order} AS o, string_agg(DISTINCT CAST(response AS VARCHAR), ' / ') "
        f"FROM {_quote(name)} WHERE response IS NOT NULL GROUP BY cohort, run, {_quote(subject)}, tp ORDER BY o, tp"
    ).fetchall()
    tps = list(dict.fromkeys(r[3] for r in found))
    by_subject: dict[tuple, dict] = {}
    for c, r, s, t, _, value in found:
        by_subject.setdefault((c, r, s), {"cohort": c, "run": r, subject: s})[t] = value
    rows = [by_subject[k] for k in sorted(by_subject, key=lambda k: tuple(str(x) for x in k))]
    return ["cohort", "run", subject, *tps], [{k: row.get(k) for k in ["cohort", "run", subject, *tps]} for row in rows]
