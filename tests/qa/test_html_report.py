"""``mdafuse qa URI --html FILE`` on real job output (a tiny 2-D cohort run in-process, local and S3).

The fusion job runs once on a PNG cohort with three bad pairs and one degraded pair (lowest SSIM).
A copy of that output gains the columns of newer runs (``registration*``) and a tracking job's
``lesions`` table, so both the old layout (no registration section) and the new one are rendered.
The HTML is checked for self-containment (every image a ``data:`` PNG, links only to anchors),
its sections, the worst pairs against the Parquet rows, thumbnails against the PNGs the job wrote,
the failed pairs and their reasons; then headless Chromium renders it (screenshot not blank, every
image decoded). Without Chromium those checks skip, or fail under ``MDAFUSE_REQUIRE_DATA=1``.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mdafuse import storage
from mdafuse.cli import main as cli_main
from mdafuse.qa.html_report import write_html_report
from tests.jobs.cohorts import make_png_cohort

COHORT, RUN = "tiny", "r1"
FUSION_SECTIONS = ("runs", "distributions", "worst", "failed")


def _require() -> bool:
    return os.environ.get("MDAFUSE_REQUIRE_DATA", "") not in ("", "0", "false")


def _rows(out: str, name: str = "metrics", endpoint: str | None = None) -> list[dict]:
    rows = []
    for uri in storage.list_files(storage.join(out, name), ".parquet", endpoint):
        rows += pq.read_table(io.BytesIO(storage.read_bytes(uri, endpoint))).to_pylist()
    return rows


class _Page(HTMLParser):
    """Every tag and src/href seen, and each section's tables (by section id) as header + rows of cells."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.tables: dict[str, list[dict]] = {}  # section id -> [{"head": [...], "rows": [[cell, ...], ...]}]
        self._section: str | None = None
        self._row: list[dict] | None = None
        self._cell: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        for k in ("src", "href", "srcset", "poster", "data", "action"):
            if k in attrs:
                self.refs.append((tag, k, attrs[k] or ""))
        if tag == "section":
            self._section = attrs.get("id")
            self.tables[self._section] = []
        elif tag == "table" and self._section:
            self.tables[self._section].append({"head": [], "rows": []})
        elif tag == "tr" and self._section:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"text": "", "imgs": [], "th": tag == "th"}
        elif tag == "img" and self._cell is not None:
            self._cell["imgs"].append(attrs.get("src") or "")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._cell["text"] = self._cell["text"].strip()
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            table = self.tables[self._section][-1]
            if self._row and all(c["th"] for c in self._row):
                table["head"] = [c["text"] for c in self._row]
            else:
                table["rows"].append(self._row)
            self._row = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    @property
    def sections(self) -> set[str]:
        return set(self.tables)

    def table(self, section: str, index: int = 0, text: bool = True) -> list[dict]:
        """One table of a section as dicts header -> cell text (or the cell itself)."""
        t = self.tables[section][index]
        return [dict(zip(t["head"], [c["text"] if text else c for c in row])) for row in t["rows"]]


def _parse(html_text: str) -> _Page:
    page = _Page()
    page.feed(html_text)
    page.close()
    return page


def _decode_png(src: str):
    from PIL import Image

    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:60]
    raw = base64.b64decode(src[len(prefix):], validate=True)
    img = Image.open(io.BytesIO(raw))
    img.load()
    return raw, img


def _assert_self_contained(html_text: str, page: _Page) -> None:
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    for tag, attr, value in page.refs:
        if attr == "href":
            assert value.startswith("#"), (tag, value)
        else:
            assert value.startswith("data:image/png;base64,"), (tag, attr, value[:60])
    lowered = html_text.lower()
    assert "@import" not in lowered and "url(" not in lowered
    for scheme in ("http://", "https://", "//"):
        assert f'src="{scheme}' not in lowered and f"href=\"{scheme}" not in lowered


# --- the job's output -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def job(ray_local, tmp_path_factory):
    from jobs.fuse_cohort import main

    root = tmp_path_factory.mktemp("qa_html")
    expected = make_png_cohort(root / "cohort", n_good=3, degraded=True)
    out = str(root / "out")
    code = main([str(root / "cohort"), "--out", out, "--cohort-name", COHORT, "--run-id", RUN, "--workers", "1", "-q"])
    assert code == 3  # the planted bad pairs
    rows = _rows(out)
    assert len(rows) == len(expected)
    return {"root": root, "out": out, "rows": rows}


@pytest.fixture(scope="module")
def newer(job):
    """A copy of the run as a newer job writes it: registration columns and a tracking ``lesions`` table."""
    out = job["root"] / "newer"
    shutil.copytree(job["out"], out)
    (part,) = (out / "metrics" / f"cohort={COHORT}" / f"run={RUN}").glob("*.parquet")
    table = pq.read_table(part, partitioning=None)  # the file alone, without cohort/run from its path
    ids = table.column("pair_id").to_pylist()
    ok = [s == "ok" for s in table.column("status").to_pylist()]
    order = sorted(i for i, good in zip(ids, ok) if good)
    quality = {pid: 0.2 + 0.2 * k for k, pid in enumerate(order)}  # the first ok pair registers worst
    method = ["rigid-mi" if good else "" for good in ok]  # error rows record no registration, as the job writes them
    method[ids.index(order[-1])] = "none"  # one ok pair was not registered
    q = [quality[p] if m == "rigid-mi" else math.nan for p, m in zip(ids, method)]
    transform = [json.dumps({"matrix": [[1.0, 0.0, 1.234567], [0.0, 1.0, -0.5]], "angle_deg": 4.349079, "translation_mm": [-4.0093, 2.884, -4.1608]}) if m == "rigid-mi" else "" for m in method]
    for name, values in (("registration", pa.array(method)), ("registration_quality", pa.array(q, pa.float64())), ("registration_transform", pa.array(transform))):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, values) if i >= 0 else table.append_column(name, values)
    pq.write_table(table, part)
    lesions = pa.table({
        "subject": ["s1", "s1", "s1", "s1", "s2"],
        "track_id": pa.array([1, 1, 2, 2, None], pa.int32()),
        "timepoint": pa.array([0, 1, 0, 1, None], pa.int32()),
        "timepoint_label": ["baseline", "week6", "baseline", "week6", None],
        "size": [120.0, 80.0, 30.0, 0.0, None],
        "response": ["PR", "PR", "PR", "PR", None],
        "status": ["ok", "ok", "ok", "ok", "error"],
        "error": ["", "", "", "", "RegistrationError: follow-up does not overlap the baseline"],
        "worker": ["w1"] * 5,
        "node_id": ["n1"] * 5,
        "t_total_s": [1.5] * 5,
    })
    folder = out / "lesions" / f"cohort={COHORT}" / "run=t1"
    folder.mkdir(parents=True)
    pq.write_table(lesions, folder / "part-0.parquet")
    runs = out / "runs" / f"cohort={COHORT}" / "run=t1"
    runs.mkdir(parents=True)
    (runs / "tracking-summary.json").write_text(json.dumps({"wall_s": 3.25, "finished_at": "2026-01-01T00:00:00Z"}))
    return {"out": str(out), "quality": quality, "method": dict(zip(ids, method))}


@pytest.fixture(scope="module")
def older(job):
    """A copy of the run without the columns older jobs did not write (registration, worker, node, device, weights)."""
    out = job["root"] / "older"
    shutil.copytree(job["out"], out)
    (part,) = (out / "metrics" / f"cohort={COHORT}" / f"run={RUN}").glob("*.parquet")
    table = pq.read_table(part, partitioning=None)
    gone = ("registration", "registration_quality", "registration_transform", "worker", "node_id", "device", "gpu_ids", "model_version", "weights_sha256")
    pq.write_table(table.drop_columns([c for c in gone if c in table.column_names]), part)
    (out / "runs" / f"cohort={COHORT}" / f"run={RUN}" / "summary.json").unlink()
    return {"out": str(out)}


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    msg = "chromium not installed (Debian: apt-get install chromium): the HTML is not rendered"
    if _require():
        pytest.fail(msg + " (MDAFUSE_REQUIRE_DATA is set, so this is an error)")
    pytest.skip(msg)


def _headless(browser: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--hide-scrollbars", f"--user-data-dir={cwd / 'chromium-profile'}", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=180)


# --- tests --------------------------------------------------------------------------------------
def test_cli_writes_a_self_contained_report(job, tmp_path, capsys):
    path = tmp_path / "report.html"
    code = cli_main(["qa", job["out"], "--html", str(path), "--metric", "SSIM", "--worst", "3"])
    assert code == 3  # failed rows are listed
    assert "3 failed" in capsys.readouterr().out
    text = path.read_text(encoding="utf-8")
    page = _parse(text)
    _assert_self_contained(text, page)
    assert set(FUSION_SECTIONS) <= page.sections
    assert "registration" not in page.sections  # no pair registered (2-D pairs)
    assert not [s for s in page.sections if s.startswith("table-")]
    for _, attr, value in page.refs:
        if attr == "href":
            assert value[1:] in page.sections  # the navigation points at sections that exist


def test_older_runs_without_the_newer_columns(older, tmp_path):
    path = tmp_path / "report.html"
    assert cli_main(["qa", older["out"], "--html", str(path)]) == 3
    text = path.read_text(encoding="utf-8")
    page = _parse(text)
    _assert_self_contained(text, page)
    assert set(FUSION_SECTIONS) <= page.sections and "registration" not in page.sections
    (run,) = page.table("runs")
    assert run["rows"] == "7" and run["workers used"] == "0" and run["weights"] == "-" and run["wall s"] == "-"
    assert len(page.table("worst")) == 4 and len(page.table("failed")) == 3


def test_worst_pairs_and_thumbnails_match_the_rows(job, tmp_path):
    path = tmp_path / "report.html"
    data = write_html_report(job["out"], str(path), metric="SSIM", worst=3)
    page = _parse(path.read_text(encoding="utf-8"))
    ok = sorted((r for r in job["rows"] if r["status"] == "ok"), key=lambda r: (r["SSIM"], r["pair_id"]))
    worst = page.table("worst", text=False)
    assert [w["pair_id"]["text"] for w in worst] == [r["pair_id"] for r in ok[:3]]  # lowest SSIM first
    assert float(worst[0]["SSIM"]["text"]) == pytest.approx(ok[0]["SSIM"], rel=1e-3)
    assert len(data.qa.worst) == 3
    images = Path(job["out"], "images", f"cohort={COHORT}", f"run={RUN}")
    files = {"MR": "mr_preview.png", "PET": "pet_preview.png", "fused": "fused_000.png", "enhanced": "enhanced_000.png"}
    for w in worst:
        for key, name in files.items():
            (src,) = w[key]["imgs"]
            raw, img = _decode_png(src)
            assert img.size == (48, 48)  # small images are embedded unchanged
            assert raw == (images / w["pair_id"]["text"] / name).read_bytes()
            assert np.asarray(img).std() > 0, (w["pair_id"]["text"], key)


def test_failed_pairs_with_reasons(job, tmp_path):
    path = tmp_path / "report.html"
    write_html_report(job["out"], str(path))
    page = _parse(path.read_text(encoding="utf-8"))
    shown = {r["pair_id"]: r["error"] for r in page.table("failed")}
    failed = {r["pair_id"]: r["error"] for r in job["rows"] if r["status"] != "ok"}
    assert shown == failed and len(failed) == 3
    reasons = " | ".join(shown.values())
    for reason in ("missing PET", "cannot decode", "differs from MR"):
        assert reason in reasons


def test_distributions_one_plot_per_metric(job, tmp_path):
    path = tmp_path / "report.html"
    data = write_html_report(job["out"], str(path))
    text = path.read_text(encoding="utf-8")
    section = text.split('<section id="distributions">', 1)[1].split("</section>", 1)[0]
    plots = [s.split('"', 1)[0] for s in section.split('src="')[1:]]
    assert len(plots) == len(data.values) >= 10  # every metric of the rows
    for src in plots:
        _, img = _decode_png(src)
        assert img.size[0] > 200 and np.asarray(img.convert("L")).std() > 5
    (first,) = _parse(text).table("runs")
    assert [first[c] for c in ("table", "cohort", "run", "rows", "ok", "error", "workers used")] == ["metrics", COHORT, RUN, "7", "4", "3", "1"]


def test_registration_and_lesions_of_newer_runs(newer, tmp_path):
    path = tmp_path / "report.html"
    code = cli_main(["qa", newer["out"], "--html", str(path), "--worst", "2"])
    assert code == 3
    text = path.read_text(encoding="utf-8")
    page = _parse(text)
    _assert_self_contained(text, page)
    assert {"registration", "table-lesions", *FUSION_SECTIONS} <= page.sections
    by_method = {r["registration"]: r for r in page.table("registration", 0)}
    assert by_method["rigid-mi"]["pairs"] == "3" and by_method["rigid-mi"]["n_quality"] == "3"
    assert by_method["none"]["pairs"] == "1" and by_method["none"]["n_quality"] == "0"
    lowest = min((q, p) for p, q in newer["quality"].items() if newer["method"][p] == "rigid-mi")
    rows = page.table("registration", 1)
    assert len(rows) == 2  # --worst 2
    assert rows[0]["pair_id"] == lowest[1] and float(rows[0]["registration_quality"]) == pytest.approx(lowest[0])
    assert "1.235" in rows[0]["transform"]  # the JSON with shortened numbers
    assert rows[0]["angle_deg"] == "4.349" and rows[0]["shift_mm"] == "(-4.01, 2.88, -4.16)"
    lesion_text = text.split('<section id="table-lesions">', 1)[1].split("</section>", 1)[0]
    assert "week6" in lesion_text and "PR" in lesion_text
    failed = text.split('<section id="failed">', 1)[1].split("</section>", 1)[0]
    assert "follow-up does not overlap the baseline" in failed
    assert "3.25" in text.split('<section id="runs">', 1)[1].split("</section>", 1)[0]  # the tracking summary's wall time


def test_report_renders_in_headless_chromium(newer, tmp_path):
    browser = _chromium()
    path = tmp_path / "report.html"
    write_html_report(newer["out"], str(path), worst=3)
    shot = tmp_path / "report.png"
    done = _headless(browser, f"--screenshot={shot}", "--window-size=1280,4000", path.as_uri(), cwd=tmp_path)
    assert shot.is_file() and shot.stat().st_size > 10_000, done.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert pixels.shape[:2] == (4000, 1280)
    assert pixels.std() > 20  # not blank
    header = pixels[:60, :, :].reshape(-1, 3)
    assert (np.abs(header - (0x1F, 0x3B, 0x57)).max(axis=1) < 8).mean() > 0.5  # the inline CSS applied (dark header)
    # every embedded image decodes in the browser: a copy of the page reports what it loaded
    probe = tmp_path / "probe.html"
    script = ("<script>window.addEventListener('load',function(){var i=Array.prototype.slice.call(document.images);"
              "document.body.setAttribute('data-probe',i.filter(function(x){return x.complete&&x.naturalWidth>0}).length+'/'+i.length);});</script>")
    probe.write_text(path.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    dom = _headless(browser, "--dump-dom", "--virtual-time-budget=5000", probe.as_uri(), cwd=tmp_path).stdout
    loaded, total = dom.split('data-probe="', 1)[1].split('"', 1)[0].split("/")
    assert int(total) >= 10 + 4 * 3 and loaded == total


def test_report_of_a_run_on_s3(ray_local, s3_server, tmp_path, monkeypatch):
    from jobs.fuse_cohort import main

    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    expected = make_png_cohort(tmp_path / "cohort", n_good=2)
    client = s3_server.client()
    good = [s for s, want in expected.items() if want == "ok"]
    lines = ["subject,session,mr,pet"]
    for stem in good:
        for mod in ("MR", "PET"):
            client.put_object(Bucket=s3_server.bucket, Key=f"qa-in/{mod}/{stem}.png", Body=(tmp_path / "cohort" / mod / f"{stem}.png").read_bytes())
        lines.append(f"{stem},ses-01,MR/{stem}.png,PET/{stem}.png")
    client.put_object(Bucket=s3_server.bucket, Key="qa-in/manifest.csv", Body="\n".join(lines).encode())
    out = f"s3://{s3_server.bucket}/qa-out"
    assert main([f"s3://{s3_server.bucket}/qa-in/manifest.csv", "--out", out, "--run-id", "s1", "--workers", "1", "-q"]) == 0
    report = f"{out}/reports/s1.html"
    assert cli_main(["qa", out, "--html", report, "--run", "s1", "--worst", "2"]) == 0  # no failed rows
    text = storage.read_bytes(report).decode("utf-8")
    page = _parse(text)
    _assert_self_contained(text, page)
    rows = sorted(_rows(out), key=lambda r: (r["SSIM"], r["pair_id"]))
    worst = page.table("worst", text=False)
    assert [w["pair_id"]["text"] for w in worst] == [r["pair_id"] for r in rows]
    for w in worst:
        for key in ("MR", "PET", "fused", "enhanced"):
            _decode_png(w[key]["imgs"][0])
    assert page.tables["failed"] == []  # no table, "(none)"
    assert "(none)" in text.split('<section id="failed">', 1)[1]
