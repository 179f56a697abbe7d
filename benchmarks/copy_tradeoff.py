"""Why MdAFuse does not win MI and VIF: the path from MdAFuse to the max rule, on held-out pairs.

    python benchmarks/copy_tradeoff.py     # writes benchmarks/results/copy_tradeoff.{md,png}

MI and VIF reward a fused image that copies source pixels exactly (the max rule copies one source
per pixel); EN, SD, SCD and rSFe reward contrast and sharpness beyond either source. This script
walks the straight line between the two, ``F_t = (1 - t) * MdAFuse + t * max(MR, Y)`` on the
luminance (chroma kept, as in the pipeline), scores every seed metric at each ``t`` on the test
series, and marks where the best classical baseline of each metric lies. It shows how much of MI and
VIF can be bought with how much EN, SD, SCD and rSFe.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from mdafuse.data import MODALITY_FOLDERS, split_pairs
from mdafuse.evaluation.benchmark import MDAFUSE, best_methods, method_means, relative_margin
from mdafuse.fusion.color import luminance, rgb_to_ycbcr, ycbcr_to_rgb
from mdafuse.fusion.pipeline import Fuser
from mdafuse.io.images import read_pair
from mdafuse.metrics import METRICS, SEED_METRICS, compute_all

STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)


def path_scores(dataset: str, fuser: Fuser, steps: tuple[float, ...], stride: int) -> dict[float, dict[str, float]]:
    """Mean seed metrics of ``F_t`` over every ``stride``-th test pair, per ``t``."""
    rows: dict[float, list[dict[str, float]]] = {t: [] for t in steps}
    for p in tqdm(split_pairs(dataset, "test")[::stride], desc=dataset):
        mr, fn = read_pair(p.mr, p.functional)
        ycc = rgb_to_ycbcr(fn) if fn.ndim == 3 else None
        y = ycc[..., 0] if ycc is not None else fn
        fused = fuser.fuse_batch(mr[None], y[None])[0].astype(np.float64)
        top = np.maximum(mr, y).astype(np.float64)
        for t in steps:
            f_y = (1.0 - t) * fused + t * top
            if ycc is not None:
                c = ycc.copy()
                c[..., 0] = f_y
                f_y = luminance(ycbcr_to_rgb(c))
            rows[t].append(compute_all(mr, luminance(fn), f_y, names=SEED_METRICS))
    return {t: {k: float(np.mean([r[k] for r in rs])) for k in SEED_METRICS} for t, rs in rows.items()}


def baseline_best(results: Path, dataset: str) -> dict[str, tuple[str, float]]:
    """Best baseline (name, mean) per seed metric from a benchmark table."""
    _, stats = method_means(pq.read_table(results / dataset / "metrics.parquet"), SEED_METRICS)
    out = {}
    for k in SEED_METRICS:
        means = {m: v[k][0] for m, v in stats.items() if m != MDAFUSE}
        best = best_methods(means, METRICS[k].better)[0]
        out[k] = (best, means[best])
    return out


def beats(value: float, other: float, better: str) -> bool:
    """Strictly better than ``other`` in the metric's direction (a tie is not a win)."""
    return best_methods({"path": value, "other": other}, better) == ["path"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["MR-PET", "MR-SPECT"])
    ap.add_argument("--stride", type=int, default=1, help="score every stride-th test pair (default: all)")
    ap.add_argument("--weights", type=Path, default=None, help="MdAFuse weights (default: the shipped ones for each dataset's modality)")
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results/harvard"), help="benchmark tables for the baselines")
    ap.add_argument("-o", "--out", type=Path, default=Path("benchmarks/results/copy_tradeoff"))
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fusers = {ds: Fuser(args.weights, modality=MODALITY_FOLDERS[ds]) for ds in args.datasets}
    names = ", ".join(f"`{f.info.path.name}` ({ds})" for ds, f in fusers.items())
    lines = [
        "# From MdAFuse to the max rule: what MI and VIF cost",
        "",
        f"Produced by `python benchmarks/copy_tradeoff.py` on {date.today().isoformat()} with {names}:",
        "`F_t = (1 - t) * MdAFuse + t * max(MR, Y)` on the luminance, every seed metric averaged over the test",
        f"series ({'every pair' if args.stride == 1 else f'every {args.stride}th pair'}). `*` marks a value better than every classical baseline; the last row",
        "of each table is the best baseline per metric (from the benchmark table).",
    ]
    fig, axes = plt.subplots(len(args.datasets), 1, figsize=(9, 3.4 * len(args.datasets)), squeeze=False)
    for ax, ds in zip(axes[:, 0], args.datasets):
        scores = path_scores(ds, fusers[ds], STEPS, args.stride)
        best = baseline_best(args.results, ds)
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
        # each metric relative to its best baseline, signed so that above 0 means better than all
        for k in SEED_METRICS:
            rel = [relative_margin(s[k], best[k][1], METRICS[k].better) for s in scores.values()]
            ax.plot(STEPS, rel, marker="o", label=k)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_ylim(-0.6, 0.4)
        ax.set_title(f"{ds}: seed metrics relative to the best baseline (> 0: MdAFuse path wins)")
        ax.set_xlabel("t (0 = MdAFuse, 1 = max rule)")
        ax.legend(ncol=5, fontsize=8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=110)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
