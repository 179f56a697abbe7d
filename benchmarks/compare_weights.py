"""Compare candidate MdAFuse weights with the classical baselines on held-out pairs (seed metrics).

Used to choose loss weights before shipping a model. Every ``--stride``-th test pair of each dataset
is scored; baseline scores are cached in ``--cache``. Prints, per dataset and candidate, on how many
of the nine seed metrics the candidate beats every baseline, and on which it is worst.

    python benchmarks/compare_weights.py runs/a/w.safetensors runs/b/w.safetensors --stride 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mdafuse.baselines import BASELINES, fuse_color
from mdafuse.data import split_pairs
from mdafuse.evaluation.benchmark import MDAFUSE, best_methods
from mdafuse.fusion.color import luminance
from mdafuse.fusion.pipeline import Fuser
from mdafuse.io.images import read_pair
from mdafuse.metrics import METRICS, SEED_METRICS, compute_all


def score(pairs, fuse) -> dict[str, float]:
    rows = []
    for p in pairs:
        mr, fn = read_pair(p.mr, p.functional)
        rows.append(compute_all(mr, luminance(fn), luminance(fuse(mr, fn)), names=SEED_METRICS))
    return {k: float(np.mean([r[k] for r in rows])) for k in SEED_METRICS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="+", type=Path)
    ap.add_argument("--datasets", nargs="+", default=["MR-PET", "MR-SPECT"])
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--split", choices=["train", "test"], default="test", help="score the training series (to choose settings without touching the test series) or the test series")
    ap.add_argument("--cache", type=Path, default=Path("runs/baseline_cache.parquet"))
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


if __name__ == "__main__":
    main()
