"""The QA report as one self-contained HTML file: inline CSS, images as base64 PNG data URIs, no scripts.

Sections (each a ``<section id=...>``): ``runs`` (per run: rows by status, workers, nodes, devices,
weights, timings, from the tables and ``summary.json``), ``distributions`` (every metric per
cohort, one plot each), ``worst`` (the K worst pairs by one metric with MR, PET, fused and enhanced
thumbnails), ``registration`` (only when the rows record one), ``failed`` (every error row with its
reason) and ``table-<name>`` per extra table (the tracking job's ``lesions``, with a per-subject
``response`` table when that column exists, and its ``responses``: the PERCIST-style category per
subject and follow-up with its reason, the peaks compared and the new/resolved lesion counts). Nothing in the file refers to another resource.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence

from mdafuse import storage
from mdafuse.qa import _fmt
from mdafuse.qa.collect import THUMBNAILS, ReportData, collect
from mdafuse.qa.figures import ARROWS, distribution_png

__all__ = ["render_html", "write_html_report"]

_CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d232b;background:#f4f6f8;margin:0}
header{background:#1f3b57;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:2px 0;color:#d6e2ee;font-size:13px}
nav{margin-top:10px}
nav a{color:#fff;margin-right:14px;font-size:13px}
main{padding:8px 28px 28px}
section{background:#fff;border:1px solid #dde3e9;border-radius:6px;margin:18px 0;padding:14px 18px}
h2{font-size:18px;margin:0 0 10px;color:#1f3b57}
h3{font-size:15px;margin:16px 0 6px}
p.note{color:#5b6672;font-size:12.5px;margin:4px 0 8px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12.5px;margin:4px 0 8px}
th,td{border-bottom:1px solid #e5e9ee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef2f6;font-weight:600;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.err{color:#a11d1d;max-width:640px;word-break:break-word}
td.mono,span.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
td.mono{white-space:nowrap}
details{max-width:560px}
details summary{cursor:pointer;color:#1f3b57;font-size:12px}
details pre{white-space:pre-wrap;word-break:break-all;font-size:11.5px;margin:4px 0;background:#f6f8fa;padding:4px 6px;border-radius:3px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:10px}
figure{margin:0;text-align:center}
figure img{max-width:100%;height:auto}
img.thumb{width:128px;height:auto;display:block;background:#000;border-radius:3px}
.missing{display:inline-block;width:128px;color:#8a949e;font-size:11.5px;text-align:center}
.ok{color:#1d7a35;font-weight:600}.bad{color:#a11d1d;font-weight:600}
header .ok,header .bad{background:#fff;padding:0 6px;border-radius:3px}
"""


def _e(value) -> str:
    return html.escape(_fmt(value), quote=True)


def _img(png: bytes, alt: str, cls: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    klass = f' class="{cls}"' if cls else ""
    return f'<img{klass} alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{data}">'


def _table(rows: Sequence[dict], columns: Sequence[str] | None = None, *, numeric: Iterable[str] = (), error: Iterable[str] = ("error",), mono: Iterable[str] = ()) -> str:
    if not rows:
        return '<p class="note">(none)</p>'
    columns = list(columns or rows[0])
    numeric, error, mono = set(numeric), set(error), set(mono)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            cls = "num" if c in numeric or (isinstance(v, (int, float)) and not isinstance(v, bool)) else "err" if c in error else "mono" if c in mono else ""
            cells.append(f'<td class="{cls}">{_e(v)}</td>' if cls else f"<td>{_e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>{body}</section>'


def _runs_section(data: ReportData) -> str:
    rows = []
    for r in data.runs:
        s = r.get("summary") or {}
        plan = s.get("pool_plan") or {}
        rows.append({
            "table": r["table"], "cohort": r["cohort"], "run": r["run"], "rows": r["rows"], "ok": r["ok"], "error": r["error"],
            "workers used": len(r["workers"]), "nodes used": len(r["nodes"]), "devices": ", ".join(r["devices"]) or None,
            "pool planned": plan.get("max_workers"), "weights": "; ".join(r["weights"]) or None,
            "wall s": s.get("wall_s"), "units/s": s.get("pairs_per_s"), "finished": s.get("finished_at"),
        })
    parts = [_table(rows, mono=("weights",)),
             '<p class="note">Counts, workers, nodes and devices come from the rows; planned pool, wall time, throughput and finish time '
             "from each run's summary file (blank when it has none). Weights: model version and the first 12 hex digits of its sha256.</p>"]
    details = [{"table": r["table"], "cohort": r["cohort"], "run": r["run"], "workers": ", ".join(r["workers"]) or None, "nodes": ", ".join(n[:12] for n in r["nodes"]) or None} for r in data.runs]
    parts.append("<h3>Workers and nodes that wrote rows</h3>" + _table(details, mono=("workers", "nodes")))
    if data.timings:
        parts.append("<h3>Mean seconds per stage (ok rows)</h3>" + _table(data.timings))
    return _section("runs", "Run summary", "".join(parts))


def _distributions_section(data: ReportData) -> str:
    from mdafuse.qa import _direction

    figures = []
    for metric, by_cohort in data.values.items():
        better = _direction(metric)
        png = distribution_png(by_cohort, metric, ARROWS[better])
        figures.append(f"<figure>{_img(png, f'{metric} per cohort ({ARROWS[better]})')}</figure>")
    stats = [d for d in data.qa.distributions] if data.qa else []
    body = (
        '<p class="note">Ok pairs only; one box per cohort, every pair a point.</p>'
        f'<div class="grid">{"".join(figures)}</div><h3>Statistics</h3>{_table(stats)}'
    )
    return _section("distributions", "Metric distributions per cohort", body)


def _worst_section(data: ReportData) -> str:
    qa = data.qa
    head = "".join(f"<th>{c}</th>" for c in ("#", "cohort", "run", "pair_id", "subject_id", "session", qa.metric, *THUMBNAILS))
    rows = []
    for i, w in enumerate(qa.worst, 1):
        th = data.thumbnails.get((w["cohort"], w["run"], w["pair_id"]))
        cells = [f'<td class="num">{i}</td>'] + [f"<td>{_e(w.get(c))}</td>" for c in ("cohort", "run")]
        cells += [f'<td class="mono">{_e(w.get(c))}</td>' for c in ("pair_id", "subject_id", "session")] + [f'<td class="num">{_e(w["value"])}</td>']
        for key in THUMBNAILS:
            png = th.images.get(key) if th else None
            alt = f"{key} of pair {w['pair_id']}"
            cells.append(f"<td>{_img(png, alt, 'thumb')}</td>" if png else '<td><span class="missing">not written</span></td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    note = (f'<p class="note">{html.escape(ARROWS[data.better])}; ok pairs only. Thumbnails: the middle slice the job wrote as PNG '
            "(MR and PET previews of the same slice, the fused and the enhanced image).</p>")
    table = f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>' if rows else '<p class="note">(none)</p>'
    return _section("worst", f"The {len(qa.worst)} worst pairs by {qa.metric}", note + table)


def _registration_section(data: ReportData) -> str:
    reg = data.registration
    parts = ['<p class="note">From the rows\' <span class="mono">registration</span>, <span class="mono">registration_quality</span> and '
             '<span class="mono">registration_transform</span> columns. Quality: normalised mutual information of MR and registered PET '
             'over the MR head mask (1 to 2, higher is better); pairs that were not registered have none.</p>', _table(reg["summary"])]
    if reg["values"]:
        png = distribution_png(reg["values"], "registration_quality", ARROWS["higher"])
        parts.append(f'<div class="grid"><figure>{_img(png, "registration quality per cohort")}</figure></div>')
    if reg["rows"]:
        columns = [c for c in reg["rows"][0] if c != "registration_transform"]
        head = "".join(f"<th>{html.escape(c)}</th>" for c in (*columns, "transform"))
        body = []
        for r in reg["rows"]:
            cells = [f'<td class="{"mono" if c in ("pair_id", "subject_id", "session", "shift_mm") else "num" if isinstance(r[c], float) else ""}">{_e(r[c])}</td>' for c in columns]
            text = r.get("registration_transform") or ""
            cells.append(f"<td><details><summary>JSON</summary><pre>{html.escape(text)}</pre></details></td>" if text else "<td>-</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("<h3>Lowest registration quality first</h3>"
                     f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')
    return _section("registration", "Registration", "".join(parts))


def _failed_section(data: ReportData) -> str:
    parts = []
    if data.qa is not None:
        parts.append(f"<h3>Fusion pairs ({len(data.qa.failed)})</h3>" + _table(data.qa.failed, mono=("pair_id", "subject_id", "session")))
    for t in data.tables:
        parts.append(f"<h3>{html.escape(t.name)} ({len(t.failed)})</h3>" + _table(t.failed, mono=("subject", "subject_id", "pair_id")))
    return _section("failed", "Failed rows and their reasons", "".join(parts))


def _table_sections(data: ReportData) -> list[str]:
    out = []
    for t in data.tables:
        parts = []
        if t.counts:
            parts.append("<h3>Rows by status</h3>" + _table(t.counts))
        if t.response_columns:
            parts.append("<h3>Response per subject</h3>" + _table(t.responses, t.response_columns, mono=(t.response_columns[2],)))
        shown = f"all {t.n_rows}" if len(t.rows) == t.n_rows else f"the first {len(t.rows)} of {t.n_rows}"
        parts.append(f'<h3>Rows ({shown})</h3>' + _table(t.rows, t.columns, mono=("subject", "subject_id", "pair_id")))
        out.append(_section(f"table-{t.name}", f"Table: {t.name}", "".join(parts)))
    return out


def render_html(data: ReportData) -> str:
    """The report as one HTML document (a string), with no reference to any other resource."""
    sections = [_runs_section(data)]
    if data.qa is not None:
        sections += [_distributions_section(data), _worst_section(data)]
        if data.registration:
            sections.append(_registration_section(data))
    sections.append(_failed_section(data))
    sections += _table_sections(data)
    ids = [s.split('"', 2)[1] for s in sections]
    titles = [s.split("<h2>", 1)[1].split("</h2>", 1)[0] for s in sections]
    nav = "".join(f'<a href="#{i}">{t}</a>' for i, t in zip(ids, titles))
    filters = ", ".join(f"{k} {v}" for k, v in data.filters.items()) or "all runs and cohorts"
    counts = (f'{sum(r["rows"] for r in data.runs)} rows in {len(data.runs)} run(s); '
              + (f'<span class="bad">{data.n_failed} failed</span>' if data.n_failed else '<span class="ok">none failed</span>'))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>MdAFuse QA: {html.escape(data.source)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>MdAFuse QA report</h1><p>{html.escape(data.source)} &middot; {html.escape(filters)} &middot; {counts}</p>"
        f"<p>generated {html.escape(data.generated_at)} by mdafuse qa --html</p><nav>{nav}</nav></header>"
        f"<main>{''.join(sections)}</main></body></html>\n"
    )


def write_html_report(
    uri: str,
    path: str,
    *,
    run: str | None = None,
    cohort: str | None = None,
    metric: str = "SSIM",
    worst: int = 5,
    endpoint: str | None = None,
) -> ReportData:
    """Read a job's results (local or ``s3://``) and write the self-contained HTML report to ``path``.

    Args:
        uri: the job's ``--out`` location (or its ``metrics`` folder).
        path: where the HTML goes (a local path or ``s3://``).
        run: keep only this run id.
        cohort: keep only this cohort.
        metric: metric for the worst pairs (its direction from :data:`mdafuse.metrics.METRICS`).
        worst: how many worst pairs, with thumbnails.
        endpoint: S3 endpoint override.

    Returns:
        What the report shows (``n_failed`` gives the failed rows).
    """
    data = collect(uri, run=run, cohort=cohort, metric=metric, worst=worst, endpoint=endpoint)
    storage.write_bytes(path, render_html(data).encode("utf-8"), endpoint)
    return data
