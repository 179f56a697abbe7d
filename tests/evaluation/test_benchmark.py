"""Tests of the benchmark (mdafuse.evaluation: run, statistics, report, plots) and the ``mdafuse benchmark`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mdafuse.baselines import fuse_color
from mdafuse.evaluation.report import summarise
from mdafuse.evaluation.run import _example_indices, resolve_pairs, run_benchmark
from mdafuse.evaluation.statistics import best_methods, normalised_scores, paired_difference, paired_margins
from research.common import relative_margin
from mdafuse.color import luminance
from mdafuse.io.images import read_pair
from mdafuse.metrics import METRICS, SEED_METRICS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _make_dataset(root: Path, n: int = 3, size: int = 64, modality: str = "PET") -> Path:
    """A tiny MR-PET (or MR-SPECT) folder: grey MR disks with texture, RGB blobs (red/yellow on black)."""
    folder = root / f"MR-{modality}"
    (folder / "MR").mkdir(parents=True)
    (folder / modality).mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        head = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.16).astype(float)
        mr = head * (0.5 + 0.3 * np.sin(20 * xx + i) * np.cos(15 * yy)) + 0.03 * rng.random((size, size))
        blob = np.exp(-((xx - 0.4 - 0.1 * i) ** 2 + (yy - 0.5) ** 2) / 0.01)
        rgb = np.stack([np.clip(2 * blob, 0, 1), np.clip(2 * blob - 0.8, 0, 1), 0.2 * blob], axis=-1)
        name = f"30{i:03d}.png"
        Image.fromarray(np.uint8(np.rint(255 * np.clip(mr, 0, 1)))).save(folder / "MR" / name)
        Image.fromarray(np.uint8(np.rint(255 * rgb))).save(folder / modality / name)
    return folder


def _mdafuse_weights(tmp_path: Path) -> Path | None:
    """Randomly initialised MdAFuse weights (the shipped weights may not exist yet), or None without the model."""
    try:
        import torch

        from mdafuse.model.config import MdAFuseConfig
        from mdafuse.model.network import MdAFuseNet
        from mdafuse.model.weights import save_weights
    except ImportError:
        return None
    torch.manual_seed(0)
    path = tmp_path / "random.safetensors"
    save_weights(MdAFuseNet(MdAFuseConfig()).eval(), path, version="test-random")
    return path


def test_run_benchmark_writes_everything(tmp_path):
    folder = _make_dataset(tmp_path / "data")
    weights = _mdafuse_weights(tmp_path)
    methods = ["average", "gff"] + (["mdafuse"] if weights is not None else [])
    out = tmp_path / "out"
    table = run_benchmark(folder, out, methods=methods, weights=weights)

    assert table.num_rows == 3 * len(methods)
    stored = pq.read_table(out / "metrics.parquet")
    assert stored.num_rows == 3 * len(methods)
    expected_cols = {"dataset", "pair", "series", "method", "seconds", "weights_sha256", *METRICS}
    assert expected_cols <= set(stored.column_names)
    rows = stored.to_pylist()
    assert {(r["pair"], r["method"]) for r in rows} == {(f"30{i:03d}", m) for i in range(3) for m in methods}
    assert {r["dataset"] for r in rows} == {"MR-PET"} and {r["series"] for r in rows} == {"30"}
    for r in rows:
        assert r["seconds"] >= 0
        assert all(np.isfinite(r[k]) for k in SEED_METRICS)
        assert (r["weights_sha256"] is not None) == (r["method"] == "mdafuse")
    # Average fusion of Y: every metric is a deterministic function of the images; check one by hand.
    mr, fn = read_pair(folder / "MR" / "30001.png", folder / "PET" / "30001.png")
    fused_y = luminance(fuse_color("average", mr, fn))
    row = next(r for r in rows if r["pair"] == "30001" and r["method"] == "average")
    assert row["MSE"] == pytest.approx(METRICS["MSE"].func(mr, luminance(fn), fused_y), rel=1e-6)

    summary = (out / "summary.md").read_text()
    assert "| method |" in summary and "GFF" in summary
    if weights is not None:
        assert "Only" not in summary and "MdAFuse is best on" in summary and f"of {len(SEED_METRICS)} seed metrics" in summary
        from mdafuse.model.weights import file_sha256

        assert f"MdAFuse weights: test-random (sha256 {file_sha256(weights)[:12]}...)" in summary
    for name in ("comparison.png", "metrics_chart.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC
        with Image.open(out / name) as img:
            assert img.width > 300 and img.height > 200


def test_run_benchmark_jobs_give_the_same_table(tmp_path, monkeypatch):
    """Two worker processes score the same pairs to the same values, in the same row order."""
    folder = _make_dataset(tmp_path / "data", n=3, size=48)
    weights = _mdafuse_weights(tmp_path)
    methods = ["maximum", "laplacian"] + (["mdafuse"] if weights is not None else [])
    one = run_benchmark(folder, tmp_path / "one", methods=methods, weights=weights)
    two = run_benchmark(folder, tmp_path / "two", methods=methods, weights=weights, jobs=2)
    for col in ("pair", "method", "weights_sha256"):
        assert two.column(col).to_pylist() == one.column(col).to_pylist()
    for name in METRICS:
        np.testing.assert_allclose(two.column(name).to_numpy(), one.column(name).to_numpy(), rtol=1e-5, atol=1e-7, err_msg=name)
    assert (tmp_path / "two" / "comparison.png").read_bytes()[:8] == PNG_MAGIC
    # one untimed warm-up call per method and process, not one per pair
    import mdafuse.baselines as baselines

    calls = []
    real = baselines.fuse_color
    monkeypatch.setattr(baselines, "fuse_color", lambda m, a, b: calls.append(m) or real(m, a, b))
    run_benchmark(folder, tmp_path / "count", methods=["average"])
    assert calls == ["average"] * 4
    # a bad pair in a worker stops the run with the reader's message naming the file
    (folder / "PET" / "30001.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="30001.png"):
        run_benchmark(folder, tmp_path / "broken", methods=["average"], jobs=2)
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        run_benchmark(folder, tmp_path / "bad", methods=["average"], jobs=0)


@pytest.mark.parametrize("modality", ["PET", "SPECT"])
def test_benchmark_default_weights_follow_the_modality(tmp_path, modality):
    pytest.importorskip("torch")
    from mdafuse.model.weights import default_weights_path, file_sha256

    folder = _make_dataset(tmp_path / "data", n=1, size=48, modality=modality)
    table = run_benchmark(folder, tmp_path / "out", methods=["mdafuse"])
    assert table.column("weights_sha256").to_pylist() == [file_sha256(default_weights_path(modality))]
    assert f"MdAFuse weights: {default_weights_path(modality).stem}" in (tmp_path / "out" / "summary.md").read_text()


def test_run_benchmark_limit_and_bad_input(tmp_path):
    folder = _make_dataset(tmp_path / "data", n=3, size=48)
    table = run_benchmark(folder, tmp_path / "out", methods=["maximum"], limit=2)
    assert table.num_rows == 2
    assert table.column("pair").to_pylist() == ["30000", "30001"]
    with pytest.raises(ValueError, match="methods must be"):
        run_benchmark(folder, tmp_path / "o2", methods=["nope"])
    with pytest.raises(ValueError, match="limit must be"):
        run_benchmark(folder, tmp_path / "o2", methods=["average"], limit=0)
    with pytest.raises(ValueError, match="split must be"):
        run_benchmark(folder, tmp_path / "o2", methods=["average"], split="val")
    with pytest.raises(FileNotFoundError, match="expected a dataset folder"):
        run_benchmark(tmp_path, tmp_path / "o2", methods=["average"])


def test_resolve_shared_split(harvard_root):
    from mdafuse.data import load_split

    name, pairs = resolve_pairs(harvard_root / "MR-PET", "test")
    assert name == "MR-PET" and pairs
    assert {p.series for p in pairs} <= set(load_split()["MR-PET"]["test"])
    _, all_pairs = resolve_pairs(harvard_root / "MR-PET", "all")
    _, train = resolve_pairs(harvard_root / "MR-PET", "train")
    assert len(pairs) + len(train) <= len(all_pairs)
    assert not {p.name for p in pairs} & {p.name for p in train}


def _hand_table() -> pa.Table:
    # Per-method values (two pairs each); means: EN a=5, b=6, c=4; MSE a=0.02, b=0.01, c=0.03;
    # rSFe a=-0.1, b=0.3, c=0.2 (best |mean| is a); SSIM all 1.0 (a tie: every method bold).
    rows = {
        "mdafuse": {"EN": [5, 5], "MSE": [0.01, 0.03], "rSFe": [-0.2, 0.0], "SSIM": [1.0, 1.0]},
        "average": {"EN": [6, 6], "MSE": [0.01, 0.01], "rSFe": [0.3, 0.3], "SSIM": [1.0, 1.0]},
        "dwt": {"EN": [3, 5], "MSE": [0.03, 0.03], "rSFe": [0.2, 0.2], "SSIM": [1.0, 1.0]},
    }
    cols: dict[str, list] = {"dataset": [], "pair": [], "method": [], "EN": [], "MSE": [], "rSFe": [], "SSIM": [], "seconds": []}
    for m, vals in rows.items():
        for j in range(2):
            cols["dataset"].append("MR-PET")
            cols["pair"].append(f"p{j}")
            cols["method"].append(m)
            for k in ("EN", "MSE", "rSFe", "SSIM"):
                cols[k].append(float(vals[k][j]))
            cols["seconds"].append({"mdafuse": 0.5, "average": 0.01, "dwt": 0.02}[m])
    return pa.Table.from_pydict(cols)


def test_summarise_marks_best_by_direction():
    text = summarise(_hand_table())
    lines = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in text.splitlines() if ln.startswith("| ") and "method" not in ln}
    header = next(ln for ln in text.splitlines() if ln.startswith("| method"))
    names = [c.strip().split(" ")[0] for c in header.split("|")[2:-1]]
    assert names == ["EN", "SSIM", "MSE", "rSFe", "seconds"]
    cell = {(m, n): v for m, vals in lines.items() for n, v in zip(names, vals)}
    bold = {k for k, v in cell.items() if v.startswith("**")}
    assert bold == {
        ("Average", "EN"),  # higher
        ("MdAFuse", "SSIM"), ("Average", "SSIM"), ("DWT", "SSIM"),  # tie
        ("Average", "MSE"),  # lower
        ("MdAFuse", "rSFe"),  # |-0.1| is the smallest absolute mean
        ("Average", "seconds"),
    }
    # Mean ± sample std: MdAFuse EN 5 ± 0, DWT EN 4 ± 1.414.
    assert cell[("MdAFuse", "EN")] == "5 ± 0"
    assert cell[("DWT", "EN")] == "4 ± 1.4"
    # Seed metrics present: EN, SSIM, MSE, rSFe. Best on SSIM (tie) and rSFe; a tie of all methods is not "worst".
    assert "MdAFuse is best on 2 of 4 seed metrics (SSIM, rSFe); worst on none." in text


def test_paired_difference_against_a_named_method():
    # EN against dwt (not the best other): ours (5, 5) - dwt's (3, 5) = (2, 0): mean 1, SE std([2, 0]) / sqrt(2) = 1
    table = _hand_table()
    assert paired_difference(table, "EN", "dwt") == pytest.approx({"diff": 1.0, "se": 1.0, "share_better": 0.5, "pairs": 2.0})
    assert paired_difference(table, "MSE", "average") == {k: v for k, v in paired_margins(table)["MSE"].items() if k != "other"}
    with pytest.raises(ValueError, match="no rows for method 'nope'"):
        paired_difference(table, "EN", "nope")


def test_relative_margin_by_hand():
    assert relative_margin(6.0, 5.0, "higher") == pytest.approx(0.2)
    assert relative_margin(0.012, 0.010, "lower") == pytest.approx(-0.2)  # 20 % more error: worse
    assert relative_margin(-0.03, 0.05, "abs_lower") == pytest.approx(0.4)  # |-0.03| is 40 % below |0.05|
    assert relative_margin(5.0, 5.0, "higher") == 0.0
    with pytest.raises(ValueError, match="better must be"):
        relative_margin(1.0, 1.0, "up")


def test_paired_margins_by_hand():
    m = paired_margins(_hand_table())
    # EN: best other is average (6, 6) against our (5, 5): -1 on both pairs
    assert m["EN"]["other"] == "average" and m["EN"]["diff"] == pytest.approx(-1.0) and m["EN"]["se"] == pytest.approx(0.0)
    assert m["EN"]["share_better"] == 0.0 and m["EN"]["pairs"] == 2
    # MSE (lower): -(0.01, 0.03) + (0.01, 0.01) = (0, -0.02): mean -0.01, SE std([0, -0.02]) / sqrt(2) = 0.01
    assert m["MSE"]["diff"] == pytest.approx(-0.01) and m["MSE"]["se"] == pytest.approx(0.01)
    # rSFe (|.|): best other by |mean| is dwt (0.2, 0.2); -|(-0.2, 0)| + 0.2 = (0, 0.2): mean 0.1, SE 0.1, one pair of two won
    assert m["rSFe"]["other"] == "dwt" and m["rSFe"]["diff"] == pytest.approx(0.1) and m["rSFe"]["se"] == pytest.approx(0.1)
    assert m["rSFe"]["share_better"] == 0.5
    text = summarise(_hand_table())
    assert "| rSFe | DWT | +0.1 ± 0.1 | 50 % of 2 |" in text
    without = _hand_table().filter(pa.compute.equal(pa.compute.field("method"), "average"))
    assert paired_margins(without) == {}


def test_summarise_reports_worst():
    table = _hand_table().filter(pa.compute.is_in(pa.compute.field("method"), pa.array(["mdafuse", "average"])))
    text = summarise(table)
    assert "MdAFuse is best on 2 of 4 seed metrics (SSIM, rSFe); worst on 2: EN, MSE." in text
    with pytest.raises(ValueError, match="'method' column"):
        summarise(table.drop_columns(["method"]))


def test_best_and_normalised_scores():
    means = {"a": -0.1, "b": 0.3, "c": 0.2}
    assert best_methods(means, "higher") == ["b"]
    assert best_methods(means, "lower") == ["a"]
    assert best_methods(means, "abs_lower") == ["a"]
    assert best_methods(means, "abs_lower", worst=True) == ["b"]
    s = normalised_scores(means, "higher")
    assert s == pytest.approx({"a": 0.0, "b": 1.0, "c": 0.75})
    # abs_lower: |.| = 0.1, 0.3, 0.2 -> 1, 0, 0.5
    assert normalised_scores(means, "abs_lower") == pytest.approx({"a": 1.0, "b": 0.0, "c": 0.5})
    assert normalised_scores({"a": 2.0, "b": 2.0}, "lower") == {"a": 1.0, "b": 1.0}
    with pytest.raises(ValueError, match="better must be"):
        best_methods(means, "up")


def test_example_indices():
    assert _example_indices(3) == [1, 2]
    assert _example_indices(1) == [0]
    assert _example_indices(9) == [3, 6]


def test_cli_benchmark(tmp_path, capsys):
    from mdafuse.cli import main

    folder = _make_dataset(tmp_path / "data", n=2, size=48)
    assert main(["benchmark", str(folder), "-o", str(tmp_path / "cli"), "--methods", "pca", "laplacian", "--split", "all"]) == 0
    assert pq.read_table(tmp_path / "cli" / "metrics.parquet").num_rows == 4
    assert "wrote" in capsys.readouterr().out
    assert main(["benchmark", str(tmp_path / "missing"), "-o", str(tmp_path / "x"), "--methods", "pca"]) == 2
    assert "not a dataset folder" in capsys.readouterr().err


def test_default_methods_include_mdafuse_first():
    from mdafuse.baselines import BASELINES
    from mdafuse.evaluation.methods import available_methods

    assert available_methods() == ["mdafuse", *BASELINES]
