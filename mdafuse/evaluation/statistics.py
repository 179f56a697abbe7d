"""Statistics of a benchmark table: per-method means, best and worst methods, paired differences."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from mdafuse.evaluation.methods import MDAFUSE

__all__ = ["method_means", "goodness", "best_methods", "normalised_scores", "paired_difference", "paired_margins"]


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
