"""Compare candidate MdAFuse weights with the classical baselines on held-out pairs (seed metrics).

Used to choose loss weights before shipping a model. Every ``--stride``-th test pair of each dataset
is scored; baseline scores are cached in ``--cache``. Prints, per dataset and candidate, on how many
of the nine seed metrics the candidate beats every baseline, on which it is worst, and its relative
margins over the best and the worst baseline; ``--paired METRIC`` adds paired differences (± SE).

    python -m research.compare_weights runs/a/w.safetensors runs/b/w.safetensors --stride 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mdafuse.baselines import BASELINES, fuse_color
from mdafuse.data import split_pairs
from mdafuse.evaluation.methods import MDAFUSE
from mdafuse.evaluation.statistics import best_methods, goodness
from research.common import relative_margin
from mdafuse.color import luminance
from mdafuse.fusion.pipeline import Fuser
from mdafuse.io.images import read_pair
from mdafuse.metrics import METRICS, SEED_METRICS, compute_all


def score_pairs(pairs, fuse, names=SEED_METRICS) -> list[dict[str, float]]:
    """Metrics of ``fuse`` on each pair (luminance), in pair order."""
    rows = []
    for p in pairs:
        mr, fn = read_pair(p.mr, p.functional)
        rows.append(compute_all(mr, luminance(fn), luminance(fuse(mr, fn)), names=list(names)))
    return rows


def score(pairs, fuse) -> dict[str, float]:
    rows = score_pairs(pairs, fuse)
    return {k: float(np.mean([r[k] for r in rows])) for k in SEED_METRICS}


def paired_report(pairs, weights: list[Path], metric: str, base: dict[str, dict]) -> list[str]:
    """Per-pair ``metric`` of each candidate against the best baseline, and of the first candidate against the others.

    Differences are in the metric's better direction, as a share of the baseline's mean, ± standard error.
    """
    better = METRICS[metric].better
    other = best_methods({m: base[m][metric] for m in BASELINES}, better)[0]
    ref = np.array([r[metric] for r in score_pairs(pairs, lambda a, b: fuse_color(other, a, b), [metric])])
    scale = abs(float(ref.mean()))
    values = {w: np.array([r[metric] for r in score_pairs(pairs, Fuser(w).fuse, [metric])]) for w in weights}

    def diff(a: np.ndarray, b: np.ndarray) -> str:
        d = (goodness(a, better) - goodness(b, better)) / scale
        return f"{100 * d.mean():+.3f} % ± {100 * d.std(ddof=1) / np.sqrt(d.size):.3f} %"

    lines = [f"   paired {metric} vs {other} ({len(ref)} pairs): " + "; ".join(f"{w}: {diff(v, ref)}" for w, v in values.items())]
    first, *rest = weights
    lines += [f"   paired {metric} {first} vs {w}: {diff(values[first], values[w])}" for w in rest]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="+", type=Path)
    ap.add_argument("--datasets", nargs="+", default=["MR-PET", "MR-SPECT"])
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--split", choices=["train", "test"], default="test", help="score the training series (to choose settings without touching the test series) or the test series")
    ap.add_argument("--cache", type=Path, default=Path("runs/baseline_cache.parquet"))
    ap.add_argument("--paired", metavar="METRIC", choices=SEED_METRICS, help="also compare METRIC pair by pair with its best baseline and between the candidates")
    args = ap.parse_args()
    cache = pq.read_table(args.cache).to_pylist() if args.cache.is_file() else []
    for row in cache:
        row.setdefault("split", "test")  # caches written before --split existed
    for ds in args.datasets:
        pairs = split_pairs(ds, args.split)[:: args.stride]
        base = {r["method"]: r for r in cache if r["dataset"] == ds and r["stride"] == args.stride and r["split"] == args.split}
        for m in BASELINES:
            if m not in base:
                base[m] = {"dataset": ds, "split": args.split, "stride": args.stride, "method": m, **score(pairs, lambda a, b, m=m: fuse_color(m, a, b))}
                cache.append(base[m])
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(cache), args.cache)
        for w in args.weights:
            fuser = Fuser(w)
            s = score(pairs, fuser.fuse)
            wins, worst = [], []
            for k in SEED_METRICS:
                means = {MDAFUSE: s[k], **{m: base[m][k] for m in BASELINES}}
                # a win (or a worst place) must be MdAFuse's alone, not shared with a baseline
                if best_methods(means, METRICS[k].better) == [MDAFUSE]:
                    wins.append(k)
                if best_methods(means, METRICS[k].better, worst=True) == [MDAFUSE]:
                    worst.append(k)
            best_base = {k: best_methods({m: base[m][k] for m in BASELINES}, METRICS[k].better)[0] for k in SEED_METRICS}
            print(f"{ds} {w}: best on {len(wins)}/9 {wins}; worst on {worst}")
            print("   " + "  ".join(f"{k}={s[k]:.3f}(best {best_base[k]} {base[best_base[k]][k]:.3f})" for k in SEED_METRICS))
            worst_base = {k: best_methods({m: base[m][k] for m in BASELINES}, METRICS[k].better, worst=True)[0] for k in SEED_METRICS}
            print("   margin over the best baseline: " + "  ".join(f"{k}={100 * relative_margin(s[k], base[best_base[k]][k], METRICS[k].better):+.2f}%" for k in SEED_METRICS))
            print("   margin over the worst baseline: " + "  ".join(f"{k}={100 * relative_margin(s[k], base[worst_base[k]][k], METRICS[k].better):+.2f}%" for k in SEED_METRICS))
        if args.paired:
            print("\n".join(paired_report(pairs, args.weights, args.paired, base)))


if __name__ == "__main__":
    main()
