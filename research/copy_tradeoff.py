"""Why MdAFuse does not win MI and VIF: the path from MdAFuse to the max rule, on held-out pairs.

    python -m research.copy_tradeoff     # writes docs/research/copy_tradeoff.{md,png}

MI and VIF reward a fused image that copies source pixels exactly (the max rule copies one source
per pixel); EN, SD, SCD and rSFe reward contrast and sharpness beyond either source. This script
walks the straight line between the two, ``F_t = (1 - t) * MdAFuse + t * max(MR, Y)`` on the
luminance (chroma kept, as in the pipeline), scores every seed metric at each ``t`` on the test
series, and marks where the best classical baseline of each metric lies. It shows how much of MI and
VIF can be bought with how much EN, SD, SCD and rSFe.

Two more tables per dataset, on the same pairs: VIF split into its two terms, VIF(MR, F) and VIF(Y, F),
for MdAFuse and the baselines that lead on it; and the linear family ``F = a * MR + c * Y`` (clipped to
[0, 1]), which shows which images beat the best baseline on VIF and MI at all (near-copies of the MR:
full MR gain and a small share of the functional image) and what they lose on the other seed metrics.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from mdafuse.baselines import fuse_color
from mdafuse.data import MODALITY_FOLDERS, split_pairs
from mdafuse.evaluation.methods import MDAFUSE, display_name
from mdafuse.evaluation.statistics import best_methods, method_means
from research.common import relative_margin
from mdafuse.color import luminance, rebuilt_luminance, rgb_to_ycbcr
from mdafuse.fusion.pipeline import Fuser
from mdafuse.io.images import read_pair
from mdafuse.metrics import METRICS, SEED_METRICS, compute_all, vif_index

STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: (MR gain a, functional share c) of the linear family ``a * MR + c * Y``.
LINEAR_GRID = tuple((a, c) for a in (0.9, 1.0) for c in (0.05, 0.1, 0.15, 0.2, 0.3, 0.5))
#: Baselines whose VIF is split into its two terms, VIF(MR, F) and VIF(Y, F), beside MdAFuse's.
VIF_SPLIT = ("maximum", "gff", "ihs", "average")


def path_scores(
    dataset: str, fuser: Fuser, steps: tuple[float, ...], stride: int, grid: tuple[tuple[float, float], ...] = ()
) -> tuple[dict[float, dict[str, float]], dict[tuple[float, float], dict[str, float]], dict[str, tuple[float, float]]]:
    """Means over every ``stride``-th test pair: seed metrics of ``F_t`` per ``t`` and of ``a MR + c Y`` per
    ``(a, c)``, and (VIF(MR, F), VIF(Y, F)) of MdAFuse and the :data:`VIF_SPLIT` baselines."""
    rows: dict[float, list[dict[str, float]]] = {t: [] for t in steps}
    lin: dict[tuple[float, float], list[dict[str, float]]] = {ac: [] for ac in grid}
    split: dict[str, list[tuple[float, float]]] = {m: [] for m in (MDAFUSE, *VIF_SPLIT)}
    for p in tqdm(split_pairs(dataset, "test")[::stride], desc=dataset):
        mr, fn = read_pair(p.mr, p.functional)
        ycc = rgb_to_ycbcr(fn) if fn.ndim == 3 else None
        y = ycc[..., 0] if ycc is not None else fn
        b = luminance(fn)
        fused = fuser.fuse_batch(mr[None], y[None])[0].astype(np.float64)
        top = np.maximum(mr, y).astype(np.float64)
        for t in steps:
            rows[t].append(compute_all(mr, b, rebuilt_luminance(ycc, (1.0 - t) * fused + t * top), names=SEED_METRICS))
        for a, c in grid:
            f_y = np.clip(a * mr.astype(np.float64) + c * y, 0.0, 1.0)
            lin[(a, c)].append(compute_all(mr, b, rebuilt_luminance(ycc, f_y), names=SEED_METRICS))
        fused_images = {MDAFUSE: rebuilt_luminance(ycc, fused), **{m: luminance(fuse_color(m, mr, fn)) for m in VIF_SPLIT}}
        for m, f in fused_images.items():
            split[m].append((vif_index(mr, f), vif_index(b, f)))

    def means(d):
        return {key: {k: float(np.mean([r[k] for r in rs])) for k in SEED_METRICS} for key, rs in d.items()}

    return means(rows), means(lin), {m: tuple(float(x) for x in np.mean(v, axis=0)) for m, v in split.items()}


def baseline_means(results: Path, dataset: str) -> dict[str, dict[str, float]]:
    """Mean of every seed metric per classical baseline, from a benchmark table."""
    _, stats = method_means(pq.read_table(results / dataset / "metrics.parquet"), SEED_METRICS)
    return {m: {k: v[k][0] for k in SEED_METRICS} for m, v in stats.items() if m != MDAFUSE}


def baseline_best(means: dict[str, dict[str, float]]) -> dict[str, tuple[str, float]]:
    """Best baseline (name, mean) per seed metric."""
    out = {}
    for k in SEED_METRICS:
        per = {m: v[k] for m, v in means.items()}
        best = best_methods(per, METRICS[k].better)[0]
        out[k] = (best, per[best])
    return out


def is_worst(value: float, means: dict[str, dict[str, float]], metric: str) -> bool:
    """Strictly worse than every baseline on ``metric``."""
    return all(beats(v[metric], value, METRICS[metric].better) for v in means.values())


def beats(value: float, other: float, better: str) -> bool:
    """Strictly better than ``other`` in the metric's direction (a tie is not a win)."""
    return best_methods({"path": value, "other": other}, better) == ["path"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["MR-PET", "MR-SPECT"])
    ap.add_argument("--stride", type=int, default=1, help="score every stride-th test pair (default: all)")
    ap.add_argument("--weights", type=Path, default=None, help="MdAFuse weights (default: the shipped ones for each dataset's modality)")
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results/harvard"), help="benchmark tables for the baselines")
    ap.add_argument("-o", "--out", type=Path, default=Path("docs/research/copy_tradeoff"))
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fusers = {ds: Fuser(args.weights, modality=MODALITY_FOLDERS[ds]) for ds in args.datasets}
    names = ", ".join(f"`{f.info.path.name}` ({ds})" for ds, f in fusers.items())
    lines = [
        "# What MI and VIF cost: from MdAFuse to the max rule, and near-copies of the MR",
        "",
        f"Produced by `python -m research.copy_tradeoff` on {date.today().isoformat()} with {names}:",
        "`F_t = (1 - t) * MdAFuse + t * max(MR, Y)` on the luminance, every seed metric averaged over the test",
        f"series ({'every pair' if args.stride == 1 else f'every {args.stride}th pair'}). `*` marks a value better than every classical baseline; the last row",
        "of each table is the best baseline per metric (from the benchmark table).",
    ]
    fig, axes = plt.subplots(len(args.datasets), 2, figsize=(15, 3.6 * len(args.datasets)), squeeze=False)
    for (ax, ax_lin), ds in zip(axes, args.datasets):
        scores, linear, vif_terms = path_scores(ds, fusers[ds], STEPS, args.stride, LINEAR_GRID)
        means = baseline_means(args.results, ds)
        best = baseline_best(means)
        lines += ["", f"## {ds}", "", "| t | " + " | ".join(SEED_METRICS) + " | wins |", "|---" * (len(SEED_METRICS) + 2) + "|"]
        wins_at = {}
        for t, s in scores.items():
            wins_at[t] = [k for k in SEED_METRICS if beats(s[k], best[k][1], METRICS[k].better)]
            cells = [f"{s[k]:.4g}{'*' if k in wins_at[t] else ''}" for k in SEED_METRICS]
            lines.append(f"| {t:g} | " + " | ".join(cells) + f" | {len(wins_at[t])} |")
        lines.append("| best baseline | " + " | ".join(f"{v:.4g} ({m})" for m, v in (best[k] for k in SEED_METRICS)) + " | |")
        for k in ("MI", "VIF"):
            first = next((t for t in STEPS if k in wins_at[t]), None)
            lines.append("")
            if first is None:
                lines.append(f"{k}: no point of the path beats the best baseline ({best[k][0]}).")
            else:
                lines.append(f"{k}: first beats the best baseline at t = {first:g}, where the path wins {', '.join(wins_at[first])}.")
        lines += ["", f"VIF by source on the same pairs ({ds}): the metric is the sum of the two terms.", ""]
        lines += ["| method | VIF(MR, F) | VIF(Y, F) | VIF |", "|---|---|---|---|"]
        lines += [f"| {display_name(m)} | {a:.3f} | {b:.3f} | {a + b:.4g} |" for m, (a, b) in vif_terms.items()]
        lines += [
            "",
            f"Linear family `F = a * MR + c * Y` on the same pairs ({ds}): wins over every baseline (`*`) and",
            "metrics on which it is worse than every baseline (worst on).",
            "",
            "| a | c | " + " | ".join(SEED_METRICS) + " | wins | worst on |",
            "|---" * (len(SEED_METRICS) + 4) + "|",
        ]
        for (a, c), s in linear.items():
            won = [k for k in SEED_METRICS if beats(s[k], best[k][1], METRICS[k].better)]
            worst = [k for k in SEED_METRICS if is_worst(s[k], means, k)]
            cells = [f"{s[k]:.4g}{'*' if k in won else ''}" for k in SEED_METRICS]
            lines.append(f"| {a:g} | {c:g} | " + " | ".join(cells) + f" | {len(won)} | {' '.join(worst) or '-'} |")
        for k in ("MI", "VIF"):
            shares = [c for (a, c), s in linear.items() if beats(s[k], best[k][1], METRICS[k].better)]
            lines.append("")
            lines.append(
                f"{k}: the members that beat the best baseline ({best[k][0]}) have functional share c <= {max(shares):g}."
                if shares
                else f"{k}: no member of the linear family beats the best baseline ({best[k][0]})."
            )
        # each metric relative to its best baseline, signed so that above 0 means better than all
        for k in SEED_METRICS:
            rel = [relative_margin(s[k], best[k][1], METRICS[k].better) for s in scores.values()]
            ax.plot(STEPS, rel, marker="o", label=k)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_ylim(-0.6, 0.4)
        ax.set_title(f"{ds}: seed metrics relative to the best baseline (> 0: MdAFuse path wins)")
        ax.set_xlabel("t (0 = MdAFuse, 1 = max rule)")
        ax.legend(ncol=5, fontsize=8)
        shares = sorted(c for a, c in linear if a == 1.0)
        for k in SEED_METRICS:
            rel = [relative_margin(linear[(1.0, c)][k], best[k][1], METRICS[k].better) for c in shares]
            ax_lin.plot(shares, rel, marker="o", label=k)
        ax_lin.axhline(0.0, color="k", lw=0.8)
        ax_lin.set_ylim(-0.6, 0.4)
        ax_lin.set_title(f"{ds}: MR + c * Y relative to the best baseline (> 0: wins)")
        ax_lin.set_xlabel("c (share of the functional image added to the MR)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=110)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
