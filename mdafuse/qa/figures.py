"""Small PNG figures for the HTML QA report (matplotlib's Agg canvas, no pyplot state)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["distribution_png", "thumbnail_png", "ARROWS"]

#: how each direction of :data:`mdafuse.metrics.METRICS` is shown
ARROWS = {"higher": "\u2191 higher is better", "lower": "\u2193 lower is better", "abs_lower": "\u2192 0 is better"}
_COLOURS = ("#2f6db5", "#d0721c", "#3a9a4b", "#b53a3a", "#7b59b0", "#8c6d31")


def distribution_png(values: Mapping[str, Sequence[float]], title: str, subtitle: str = "", dpi: int = 100) -> bytes:
    """A box plot per cohort with every value drawn as a jittered point, as PNG bytes.

    Args:
        values: cohort -> its finite values (a cohort without values is drawn empty).
        title: the metric name.
        subtitle: a second title line (e.g. its direction).
        dpi: resolution; the figure is 3.4 x 2.5 inches.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.4, 2.5), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    names = list(values)
    data = [np.asarray([v for v in values[n] if v is not None and np.isfinite(v)], dtype=np.float64) for n in names]
    positions = np.arange(1, len(names) + 1)
    filled = [(p, d) for p, d in zip(positions, data) if d.size]
    if filled:
        ax.boxplot([d for _, d in filled], positions=[p for p, _ in filled], widths=0.5, showfliers=False,
                   medianprops={"color": "#222222"}, boxprops={"color": "#555555"}, whiskerprops={"color": "#555555"}, capprops={"color": "#555555"})
    rng = np.random.default_rng(0)
    for i, (p, d) in enumerate(zip(positions, data)):
        if d.size:
            ax.scatter(p + rng.uniform(-0.15, 0.15, d.size), d, s=10, alpha=0.7, color=_COLOURS[i % len(_COLOURS)], zorder=3, linewidths=0)
    ax.set_xticks(positions, [f"{n}\n(n={d.size})" for n, d in zip(names, data)], fontsize=7)
    ax.set_xlim(0.4, len(names) + 0.6)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def thumbnail_png(png: bytes, max_side: int = 256) -> bytes:
    """``png`` unchanged when no side exceeds ``max_side``, else resized to fit (aspect kept), as PNG bytes."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        if max(img.size) <= max_side:
            return png
        scale = max_side / max(img.size)
        small = img.convert("RGB" if img.mode not in ("L", "RGB") else img.mode).resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS
        )
    buf = io.BytesIO()
    small.save(buf, format="PNG")
    return buf.getvalue()
