"""Benchmark MdAFuse against the classical baselines on a folder of registered MR/functional pairs.

:func:`run_benchmark` fuses every pair with every method, scores each fused image with
:func:`mdafuse.metrics.compute_all` on luminance (MR, functional Y, fused Y) and writes to the
output folder:

- ``metrics.parquet``: one row per (pair, method) with ``dataset``, ``pair``, ``series``,
  ``method``, every metric, ``seconds`` (fusion wall time of that pair, after one untimed
  warm-up call per method in each process) and ``weights_sha256``
  (MdAFuse rows only);
- ``summary.md``: :func:`summarise` of that table;
- ``comparison.png``: MR, functional and every fused image for two example pairs, each with two
  enlarged regions of interest;
- ``metrics_chart.png``: grouped bars of every metric normalised across methods (1 = best).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mdafuse.data import MODALITY_FOLDERS, PairPaths, find_data_root, harvard_pairs, split_pairs
from mdafuse.threads import threads_for_children

__all__ = [
    "MDAFUSE",
    "SPLITS",
    "display_name",
    "available_methods",
    "resolve_pairs",
    "run_benchmark",
    "summarise",
    "normalised_scores",
    "best_methods",
    "goodness",
    "relative_margin",
    "paired_difference",
    "paired_margins",
    "method_means",
    "plot_comparison",
    "plot_metrics_chart",
]

logger = logging.getLogger(__name__)

MDAFUSE = "mdafuse"
SPLITS = ("test", "train", "all")
_ROI_COLOURS = ("#ff3b30", "#2fb7ff")
_DISPLAY = {MDAFUSE: "MdAFuse", "pca": "PCA", "dwt": "DWT", "ihs": "IHS", "gff": "GFF", "latlrr": "LatLRR", "nsst": "NSST"}


def available_methods() -> list[str]:
    """Method names accepted by :func:`run_benchmark`: ``"mdafuse"`` then every baseline."""
    from mdafuse.baselines import BASELINES

    return [MDAFUSE, *BASELINES]


def display_name(method: str) -> str:
    """How a method is named in tables and figures (`"gff"` -> `"GFF"`, MdAFuse as written)."""
    return _DISPLAY.get(method, method.capitalize())


def _dataset_of_folder(folder: Path) -> str:
    if (folder / "MR").is_dir():
        for name, sub in MODALITY_FOLDERS.items():
            if (folder / sub).is_dir():
                return name
    expected = "|".join(MODALITY_FOLDERS.values())
    raise FileNotFoundError(f"{folder}: expected a dataset folder holding MR/ and one of {expected}/")


def resolve_pairs(dataset: str | Path, split: str = "test") -> tuple[str, list[PairPaths]]:
    """Find the pairs to benchmark.

    Args:
        dataset: a folder laid out like the shared ``harvard/MR-PET`` (``MR/`` plus ``PET/``,
            ``SPECT/`` or ``CT/`` with matching PNG names), or one of ``MR-PET``, ``MR-SPECT``,
            ``MR-CT``, resolved under the shared data (:func:`mdafuse.data.find_data_root`).
        split: ``"test"`` or ``"train"`` take that part of the recorded series split when the
            folder is a shared Harvard folder (``.../harvard/<name>``); ``"all"`` takes every pair.
            Other folders have no recorded split and always use every pair.

    Returns:
        ``(dataset name, pairs)``, pairs sorted by name.

    Raises:
        ValueError: unknown ``split`` or no pairs found.
        FileNotFoundError: the dataset folder cannot be found.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}; got {split!r}")
    path = Path(dataset)
    if not path.is_dir() and str(dataset) in MODALITY_FOLDERS:
        root = find_data_root()
        if root is None:
            raise FileNotFoundError(f"dataset {dataset!r}: shared data not found; set MDAFUSE_DATA to the folder holding harvard/")
        path = root / "harvard" / str(dataset)
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset}: not a dataset folder nor one of {sorted(MODALITY_FOLDERS)}")
    name = _dataset_of_folder(path)
    shared = path.resolve().name == name and path.resolve().parent.name == "harvard"
    if split == "all":
        pairs = harvard_pairs(name, path)
    elif shared:
        pairs = split_pairs(name, split, path)
    else:
        logger.warning("%s has no recorded train/test split; using all of its pairs (split=%r ignored)", path, split)
        pairs = harvard_pairs(name, path)
    if not pairs:
        raise ValueError(f"{path}: no {name} pairs found for split {split!r} (PNG files with the same name in MR/ and {MODALITY_FOLDERS[name]}/)")
    return name, pairs


def _example_indices(n: int, k: int = 2) -> list[int]:
    picks: list[int] = []
    for i in [(j + 1) * n // (k + 1) for j in range(k)] + list(range(n)):
        if i not in picks and len(picks) < k:
            picks.append(i)
    return picks


_WORKER: dict = {}


def _init_worker(weights: Path | None, device: str, threads: int | None) -> None:
    """Load the MdAFuse model once per process (the benchmark's process or a pool worker)."""
    fuser = None
    if weights is not None:
        from mdafuse.fusion.pipeline import Fuser

        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        fuser = Fuser(weights=weights, device=device)
    _WORKER.update(fuser=fuser, warm=False)


def _score_pair(pair: PairPaths, methods: Sequence[str], metric_names: Sequence[str], keep: bool) -> tuple[list[dict], dict]:
    """Fuse one pair with every method and score it: rows (method, metrics, seconds) and, if ``keep``, the images."""
    from mdafuse.baselines import fuse_color
    from mdafuse.fusion.color import luminance
    from mdafuse.io.pair import IMAGE_KIND, load_pair
    from mdafuse.scoring import score_slices

    fuser = _WORKER.get("fuser")
    # the first pair of each process gets an untimed warm-up call per method, so one-off costs
    # (torch kernels, caches) do not land on its time
    warm_up, _WORKER["warm"] = not _WORKER.get("warm"), True
    prepared = load_pair(pair.mr, pair.functional, IMAGE_KIND)
    mr, fn = prepared.mr[0], prepared.functional[0]
    fy = luminance(fn)
    rows, fused_images = [], {}
    for method in methods:
        fuse = fuser.fuse if method == MDAFUSE else (lambda a, b, m=method: fuse_color(m, a, b))
        if warm_up:
            fuse(mr, fn)
        t0 = time.perf_counter()
        fused = fuse(mr, fn)
        seconds = time.perf_counter() - t0
        values = score_slices(mr[None], fy[None], luminance(fused)[None], list(metric_names))[0]
        rows.append({"method": method, **dict(zip(metric_names, map(float, values))), "seconds": seconds})
        if keep:
            fused_images[method] = fused
    return rows, ({"mr": mr, "functional": fn, "fused": fused_images} if keep else {})


def run_benchmark(
    dataset: str | Path,
    out: str | Path,
    methods: Sequence[str] | None = None,
    limit: int | None = None,
    split: str = "test",
    weights: str | Path | None = None,
    device: str = "cpu",
    jobs: int = 1,
) -> pa.Table:
    """Fuse every pair with every method, score it and write the results to ``out``.

    Args:
        dataset: dataset folder or name; see :func:`resolve_pairs`.
        out: output folder (created); receives ``metrics.parquet``, ``summary.md``,
            ``comparison.png`` and ``metrics_chart.png``.
        methods: names from :func:`available_methods`; all of them (MdAFuse first) by default.
        limit: benchmark only the first ``limit`` pairs (>= 1) of the split.
        split: ``"test"`` (default), ``"train"`` or ``"all"``; see :func:`resolve_pairs`.
        weights: MdAFuse safetensors weights; when None, the shipped weights for the dataset's
            functional modality (:data:`mdafuse.model.weights.MODALITY_WEIGHTS`).
        device: torch device for MdAFuse.
        jobs: worker processes, each scoring whole pairs with ``cpu_count // jobs`` threads
            (1: in this process). The table is the same for any ``jobs`` (metrics up to float
            rounding of the network on other thread counts); ``seconds`` are then times within a
            worker, comparable between methods of one run.

    Returns:
        The table written to ``metrics.parquet``: one row per (pair, method).

    Raises:
        ValueError: unknown method, bad ``limit``, ``split`` or ``jobs``, unreadable or mismatched images.
        FileNotFoundError: dataset or weights not found.
    """
    from tqdm.auto import tqdm

    from mdafuse.metrics import METRICS

    valid = available_methods()
    methods = list(dict.fromkeys(valid if methods is None else methods))
    unknown = [m for m in methods if m not in valid]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty list of {valid}; got unknown {unknown or methods}")
    if limit is not None and (int(limit) != limit or limit < 1):
        raise ValueError(f"limit must be a positive integer; got {limit}")
    if int(jobs) != jobs or jobs < 1:
        raise ValueError(f"jobs must be a positive integer; got {jobs}")
    name, pairs = resolve_pairs(dataset, split)
    if limit is not None:
        pairs = pairs[: int(limit)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    sha = version = None
    modality = MODALITY_FOLDERS[name]
    if MDAFUSE in methods:
        from mdafuse.model.weights import default_weights_path, file_sha256, read_metadata

        weights = Path(weights) if weights is not None else default_weights_path(modality)
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: MdAFuse weights not found")
        sha, version = file_sha256(weights), read_metadata(weights).get("version", "unknown")
    jobs = min(int(jobs), len(pairs))
    logger.info("benchmark %s: %d pairs x %d methods, %d job(s) -> %s", name, len(pairs), len(methods), jobs, out)

    metric_names = list(METRICS)
    examples = set(_example_indices(len(pairs)))
    setup = (weights if MDAFUSE in methods else None, device)
    progress = tqdm(total=len(pairs), desc=f"benchmark {name}", unit="pair")
    results: dict[int, tuple[list[dict], dict]] = {}
    if jobs == 1:
        _init_worker(*setup, threads=None)
        try:
            for i, pair in enumerate(pairs):
                results[i] = _score_pair(pair, methods, metric_names, keep=i in examples)
                progress.update()
        finally:
            _WORKER.clear()  # do not keep the model alive after the run
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, (os.cpu_count() or 1) // jobs)
        # BLAS pools are sized when a worker imports numpy, before its initializer runs
        with threads_for_children(threads), ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(*setup, threads)
        ) as pool:
            futures = {pool.submit(_score_pair, pair, methods, metric_names, i in examples): i for i, pair in enumerate(pairs)}
            try:
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    progress.update()
            except BaseException:
                # a bad pair (or Ctrl-C) stops the run now, not after every queued pair
                for future in futures:
                    future.cancel()
                raise
    progress.close()

    columns: dict[str, list] = {k: [] for k in ("dataset", "pair", "series", "method", *metric_names, "seconds", "weights_sha256")}
    shown: list[dict] = []
    for i, pair in enumerate(pairs):
        rows, fused_images = results[i]
        for row in rows:
            row.update(dataset=name, pair=pair.name, series=pair.series, weights_sha256=sha if row["method"] == MDAFUSE else None)
            for key in columns:
                columns[key].append(row[key])
        if i in examples:
            shown.append({"pair": pair.name, **fused_images})

    schema = pa.schema(
        [("dataset", pa.string()), ("pair", pa.string()), ("series", pa.string()), ("method", pa.string())]
        + [(k, pa.float64()) for k in metric_names]
        + [("seconds", pa.float64()), ("weights_sha256", pa.string())],
        metadata={
            b"mdafuse.benchmark": json.dumps(
                {"dataset": name, "split": split, "pairs": len(pairs), "methods": methods, "weights": version, "weights_sha256": sha, "device": device}
            ).encode()
        },
    )
    table = pa.Table.from_pydict(columns, schema=schema)
    pq.write_table(table, out / "metrics.parquet")
    (out / "summary.md").write_text(summarise(table))
    plot_comparison(shown, methods, MODALITY_FOLDERS[name], out / "comparison.png")
    plot_metrics_chart(table, out / "metrics_chart.png")
    logger.info("benchmark %s: wrote %d rows to %s", name, table.num_rows, out)
    return table


def _directions(table: pa.Table) -> dict[str, str]:
    from mdafuse.metrics import METRICS

    cols = {c: METRICS[c].better for c in METRICS if c in table.column_names}
    if "seconds" in table.column_names:
        cols["seconds"] = "lower"
    return cols


def method_means(table: pa.Table, columns: Sequence[str]) -> tuple[list[str], dict[str, dict[str, tuple[float, float, int]]]]:
    """Per method (in table order) and column: ``(mean, sample std, n)`` over the finite values."""
    methods = list(dict.fromkeys(table.column("method").to_pylist()))
    meth = np.array(table.column("method").to_pylist(), dtype=object)
    stats: dict[str, dict[str, tuple[float, float, int]]] = {}
    for m in methods:
        sel = meth == m
        stats[m] = {}
        for c in columns:
            raw = table.column(c).to_pylist()
            v = np.array([raw[j] for j in np.flatnonzero(sel)], dtype=np.float64)
            v = v[np.isfinite(v)]
            if v.size == 0:
                stats[m][c] = (float("nan"), float("nan"), 0)
            else:
                stats[m][c] = (float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size))
    return methods, stats


def goodness(values: np.ndarray, better: str) -> np.ndarray:
    """Values mapped so that larger is better."""
    if better == "higher":
        return values
    elif better == "lower":
        return -values
    elif better == "abs_lower":
        return -np.abs(values)
    else:
        raise ValueError(f"better must be 'higher', 'lower' or 'abs_lower'; got {better!r}")


def best_methods(means: dict[str, float], better: str, worst: bool = False) -> list[str]:
    """Methods whose mean is best (or worst) for one metric, ties included; NaN means are ignored.

    Args:
        means: ``{method: mean value}``.
        better: ``"higher"``, ``"lower"`` or ``"abs_lower"``.
        worst: return the worst methods instead.
    """
    names = [m for m, v in means.items() if np.isfinite(v)]
    if not names:
        return []
    g = goodness(np.array([means[m] for m in names], dtype=np.float64), better)
    target = g.min() if worst else g.max()
    tol = 1e-12 * max(1.0, float(np.abs(g).max()))
    return [m for m, x in zip(names, g) if abs(x - target) <= tol]


def relative_margin(value: float, reference: float, better: str) -> float:
    """How much better ``value`` is than ``reference``, as a share of ``|reference|`` (< 0: worse).

    ``abs_lower`` metrics compare ``|value|`` with ``|reference|``.
    """
    g = goodness(np.array([value, reference], dtype=np.float64), better)
    return float((g[0] - g[1]) / max(abs(float(reference)), 1e-12))


def normalised_scores(means: dict[str, float], better: str) -> dict[str, float]:
    """Min-max normalise one metric across methods so that 1 is the best method and 0 the worst.

    All-equal means give 1 for every method; NaN means stay NaN.
    """
    names = list(means)
    g = goodness(np.array([means[m] for m in names], dtype=np.float64), better)
    finite = np.isfinite(g)
    if not finite.any():
        return {m: float("nan") for m in names}
    lo, hi = g[finite].min(), g[finite].max()
    span = hi - lo
    scores = np.where(finite, (g - lo) / span if span > 0 else 1.0, np.nan)
    return {m: float(s) for m, s in zip(names, scores)}


def _rows_by_method(table: pa.Table) -> dict[str, dict[str, dict]]:
    by_method: dict[str, dict[str, dict]] = {}
    for r in table.to_pylist():
        by_method.setdefault(r["method"], {})[r["pair"]] = r
    return by_method


def _paired(by_method: dict[str, dict[str, dict]], metric: str, method: str, other: str) -> dict[str, float] | None:
    from mdafuse.metrics import METRICS

    better = METRICS[metric].better
    common = sorted(set(by_method[method]) & set(by_method[other]))
    ours = np.array([by_method[method][p][metric] for p in common], dtype=np.float64)
    theirs = np.array([by_method[other][p][metric] for p in common], dtype=np.float64)
    ok = np.isfinite(ours) & np.isfinite(theirs)
    d = goodness(ours[ok], better) - goodness(theirs[ok], better)
    if d.size == 0:
        return None
    se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
    return {"diff": float(d.mean()), "se": se, "share_better": float(np.mean(d > 0)), "pairs": float(d.size)}


def paired_difference(table: pa.Table, metric: str, other: str, method: str = MDAFUSE) -> dict[str, float] | None:
    """``method`` against ``other`` on ``metric``, paired over the pairs both scored.

    Returns ``{"diff", "se", "share_better", "pairs"}``: the mean per-pair difference in the metric's
    "better" direction (``abs_lower`` metrics compare ``-|value|``; > 0: ``method`` better), its
    standard error ``std(ddof=1) / sqrt(n)``, the share of pairs ``method`` wins and their number;
    None when no pair has finite values for both. E.g. how firm a last place on MSE is:
    ``paired_difference(pq.read_table("metrics.parquet"), "MSE", "minimum")``.
    """
    by_method = _rows_by_method(table)
    for m in (method, other):
        if m not in by_method:
            raise ValueError(f"no rows for method {m!r}; the table has {sorted(by_method)}")
    return _paired(by_method, metric, method, other)


def paired_margins(table: pa.Table) -> dict[str, dict[str, float | str]]:
    """MdAFuse against the best other method on each seed metric, paired over the pairs both scored.

    A difference of means hides whether a win holds pair by pair; this gives, per seed metric, the
    best other method (by mean) and :func:`paired_difference` against it. A mean difference within
    about two standard errors of 0 is not a reliable win or loss.

    Returns:
        ``{metric: {"other", "diff", "se", "share_better", "pairs"}}``; empty without MdAFuse rows,
        other methods or a ``pair`` column.
    """
    from mdafuse.metrics import METRICS, SEED_METRICS

    if "pair" not in table.column_names or "method" not in table.column_names:
        return {}
    by_method = _rows_by_method(table)
    if MDAFUSE not in by_method or len(by_method) < 2:
        return {}
    seeds = [c for c in SEED_METRICS if c in table.column_names]
    _, stats = method_means(table, seeds)
    out: dict[str, dict[str, float | str]] = {}
    for c in seeds:
        best = best_methods({m: stats[m][c][0] for m in stats if m != MDAFUSE}, METRICS[c].better)
        if not best:
            continue
        paired = _paired(by_method, c, MDAFUSE, best[0])
        if paired is not None:
            out[c] = {"other": best[0], **paired}
    return out


def _fmt(mean: float, std: float) -> str:
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.4g} ± {std:.2g}"


def summarise(table: pa.Table) -> str:
    """Markdown summary of a benchmark table: mean ± std (sample, ddof=1) per method and metric.

    The best mean in each column is in bold, by the metric's direction (``METRICS[name].better``;
    ``abs_lower`` compares absolute means; ``seconds`` is lower-is-better). A closing line counts
    the seed metrics (:data:`mdafuse.metrics.SEED_METRICS`) on which MdAFuse is best and names
    those on which it is worst.

    Args:
        table: rows with at least ``method`` and metric columns named as in
            :data:`mdafuse.metrics.METRICS`; ``dataset``, ``pair`` and ``seconds`` are optional.

    Returns:
        The Markdown text.
    """
    from mdafuse.metrics import SEED_METRICS

    if "method" not in table.column_names:
        raise ValueError(f"table must have a 'method' column; got columns {table.column_names}")
    directions = _directions(table)
    if not directions:
        raise ValueError(f"table has no metric columns; got columns {table.column_names}")
    cols = list(directions)
    methods, stats = method_means(table, cols)
    best = {c: set(best_methods({m: stats[m][c][0] for m in methods}, directions[c])) for c in cols}
    worst = {c: set(best_methods({m: stats[m][c][0] for m in methods}, directions[c], worst=True)) for c in cols}

    lines = ["# Fusion benchmark", ""]
    if "dataset" in table.column_names:
        lines.append(f"Dataset: {', '.join(dict.fromkeys(table.column('dataset').to_pylist()))}")
    if "pair" in table.column_names:
        lines.append(f"Pairs: {len(set(table.column('pair').to_pylist()))}; methods: {len(methods)}")
    run = json.loads((table.schema.metadata or {}).get(b"mdafuse.benchmark", b"{}"))
    if run.get("weights"):
        lines.append(f"MdAFuse weights: {run['weights']} (sha256 {str(run.get('weights_sha256'))[:12]}...)")
    arrows = {"higher": "↑", "lower": "↓", "abs_lower": "→0"}
    lines += [
        "Mean ± std over pairs (luminance). Best per column in **bold**; ↑ higher is better, ↓ lower is better, →0 closest to 0 is better.",
        "",
        "| method | " + " | ".join(f"{c} {arrows[directions[c]]}" for c in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for m in methods:
        cells = []
        for c in cols:
            text = _fmt(stats[m][c][0], stats[m][c][1])
            cells.append(f"**{text}**" if m in best[c] else text)
        lines.append(f"| {display_name(m)} | " + " | ".join(cells) + " |")
    lines.append("")
    seeds = [c for c in SEED_METRICS if c in cols]
    if MDAFUSE in methods and len(methods) > 1:
        won = [c for c in seeds if MDAFUSE in best[c]]
        lost = [c for c in seeds if MDAFUSE in worst[c] and len(worst[c]) < len(methods)]
        won_text = f" ({', '.join(won)})" if won else ""
        lost_text = f"worst on {len(lost)}: {', '.join(lost)}" if lost else "worst on none"
        lines.append(f"MdAFuse is best on {len(won)} of {len(seeds)} seed metrics{won_text}; {lost_text}.")
        margins = paired_margins(table)
        if margins:
            lines += [
                "",
                "Paired over pairs, MdAFuse against the best other method per seed metric: mean difference in the better",
                "direction (> 0: MdAFuse better; |x| for →0 metrics) ± its standard error, and the share of pairs MdAFuse wins.",
                "",
                "| metric | best other | difference ± SE | pairs MdAFuse better |",
                "|---|---|---|---|",
            ]
            for c, m in margins.items():
                lines.append(f"| {c} | {display_name(str(m['other']))} | {m['diff']:+.4g} ± {m['se']:.2g} | {100 * m['share_better']:.0f} % of {int(m['pairs'])} |")
    elif MDAFUSE in methods:
        lines.append("Only MdAFuse was run; there is nothing to compare against.")
    else:
        lines.append("MdAFuse was not run in this benchmark.")
    return "\n".join(lines) + "\n"


def _pick_rois(mr: np.ndarray, fy: np.ndarray, k: int = 2) -> list[tuple[int, int, int]]:
    """``k`` non-overlapping square windows ``(row, col, size)`` (top-left corner) with the most edge energy."""
    from scipy import ndimage

    h, w = mr.shape
    size = max(4, min(h, w) // 5)
    uptake = ndimage.uniform_filter(fy.astype(np.float64), size=size)
    uptake = uptake / max(float(uptake.max()), 1e-12)
    # MR edges count more where the functional image is bright, so the boxes favour uptake regions.
    energy = np.hypot(*np.gradient(mr.astype(np.float64))) * (0.25 + uptake) + np.hypot(*np.gradient(fy.astype(np.float64)))
    score = ndimage.uniform_filter(energy, size=size, mode="constant")
    half = size // 2
    valid = np.full(score.shape, -np.inf)
    valid[half : h - (size - half) + 1, half : w - (size - half) + 1] = score[half : h - (size - half) + 1, half : w - (size - half) + 1]
    rois = []
    for _ in range(k):
        if not np.isfinite(valid).any():
            break
        r, c = np.unravel_index(int(np.argmax(valid)), valid.shape)
        rois.append((int(r) - half, int(c) - half, size))
        valid[max(0, r - size) : r + size + 1, max(0, c - size) : c + size + 1] = -np.inf
    return rois


def _show(ax, img: np.ndarray) -> None:
    if img.ndim == 2:
        ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(np.clip(img, 0.0, 1.0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_comparison(examples: Sequence[dict], methods: Sequence[str], modality: str, path: str | Path) -> Path:
    """Paper-style comparison figure.

    For each example (a dict with ``pair``, ``mr`` ``(H, W)``, ``functional`` ``(H, W)`` or
    ``(H, W, 3)`` and ``fused`` ``{method: image}``), one row shows MR, functional and each
    method's fused image with two regions of interest boxed; below each image the two regions are
    shown enlarged, framed in the box colours.

    Args:
        examples: example pairs as above (at least one).
        methods: column order of the fused images.
        modality: functional modality label (e.g. ``"PET"``).
        path: PNG to write.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from mdafuse.fusion.color import luminance

    if not examples:
        raise ValueError("plot_comparison needs at least one example pair")
    path = Path(path)
    ncols = 2 + len(methods)
    nrows = len(examples)
    fig = Figure(figsize=(1.6 * ncols, 2.5 * nrows), dpi=150, layout="constrained")
    grid = fig.add_gridspec(2 * nrows, ncols, height_ratios=[1.0, 0.5] * nrows)
    for r, ex in enumerate(examples):
        panels = [("MR", ex["mr"]), (modality, ex["functional"])] + [(display_name(m), ex["fused"][m]) for m in methods]
        rois = _pick_rois(ex["mr"], luminance(ex["functional"]))
        for c, (title, img) in enumerate(panels):
            ax = fig.add_subplot(grid[2 * r, c])
            _show(ax, img)
            if r == 0:
                ax.set_title(title, fontsize=8)
            if c == 0:
                ax.set_ylabel(ex["pair"], fontsize=7)
            for (y, x, s), colour in zip(rois, _ROI_COLOURS):
                ax.add_patch(Rectangle((x - 0.5, y - 0.5), s, s, fill=False, edgecolor=colour, linewidth=1.0))
            sub = grid[2 * r + 1, c].subgridspec(1, 2, wspace=0.05)
            for j, ((y, x, s), colour) in enumerate(zip(rois, _ROI_COLOURS)):
                zoom = fig.add_subplot(sub[0, j])
                _show(zoom, img[y : y + s, x : x + s])
                for spine in zoom.spines.values():
                    spine.set_edgecolor(colour)
                    spine.set_linewidth(1.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def plot_metrics_chart(table: pa.Table, path: str | Path) -> Path:
    """Grouped bar chart of every metric's method means, normalised per metric (1 = best, 0 = worst).

    Args:
        table: benchmark table (see :func:`run_benchmark`).
        path: PNG to write.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    path = Path(path)
    directions = _directions(table)
    directions.pop("seconds", None)
    cols = list(directions)
    methods, stats = method_means(table, cols)
    scores = {c: normalised_scores({m: stats[m][c][0] for m in methods}, directions[c]) for c in cols}
    fig = Figure(figsize=(max(6.0, 0.7 * len(cols) * max(1, len(methods)) / 3 + 3), 4.0), dpi=150, layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(cols))
    width = 0.8 / max(1, len(methods))
    cmap = colormaps["tab10" if len(methods) <= 10 else "tab20"]
    for i, m in enumerate(methods):
        ax.bar(x - 0.4 + (i + 0.5) * width, [scores[c][m] for c in cols], width, label=display_name(m), color=cmap(i))
    ax.set_xticks(x, cols)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("normalised mean (1 = best, 0 = worst)")
    title = "Metrics normalised across methods"
    if "dataset" in table.column_names:
        title += f": {', '.join(dict.fromkeys(table.column('dataset').to_pylist()))}"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncols=min(len(methods), 5), loc="upper center", bbox_to_anchor=(0.5, -0.08))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
