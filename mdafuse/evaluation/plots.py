"""Figures of a benchmark: example pairs with enlarged regions, and normalised metrics per method."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from mdafuse.evaluation.methods import display_name
from mdafuse.evaluation.statistics import _directions, method_means, normalised_scores

__all__ = ["plot_comparison", "plot_metrics_chart"]

_ROI_COLOURS = ("#ff3b30", "#2fb7ff")


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

    from mdafuse.color import luminance

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
