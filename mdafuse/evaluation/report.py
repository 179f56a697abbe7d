"""The Markdown summary of a benchmark table (``summary.md``)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from mdafuse.evaluation.methods import MDAFUSE, display_name
from mdafuse.evaluation.statistics import _directions, best_methods, method_means, paired_margins

__all__ = ["summarise"]


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
