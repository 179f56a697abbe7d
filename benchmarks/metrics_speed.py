"""Speed of the 13 fusion metrics: numpy float64 reference vs the batched torch float32 path on CPU.

    python benchmarks/metrics_speed.py [--images 32] [--rounds 5] [--out benchmarks/results/metrics_speed.md]

Scores ``--images`` 256 x 256 triples (MR, colour PET, fused by the average baseline) of the held-out
MR-PET pairs (synthetic smooth images when the Harvard data is absent) with all 13 metrics:

1. ``mdafuse.metrics.compute_all``: numpy float64, one image at a time.
2. ``mdafuse.scoring.score_batch``: torch float32 on CPU, batches of 1, 8 and 32 images.

Everything runs with one thread (torch and the BLAS/OpenMP pools). Each round times every method
once over all images, methods taking turns, so load from other work on a shared machine hits them
alike; the table gives the median over rounds of milliseconds per slice and its ratio to numpy.
Also reported: the largest relative deviation of the torch values from numpy on these images.
Writes ``benchmarks/results/metrics_speed.md``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mdafuse.threads import thread_env  # noqa: E402

# the pools are sized when numpy/torch first load, so this must come before importing them
os.environ.update(thread_env(1))

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mdafuse.baselines import fuse_color  # noqa: E402
from mdafuse.data import find_data_root, split_pairs  # noqa: E402
from mdafuse.io.images import read_pair  # noqa: E402
from mdafuse.metrics import METRICS, compute_all  # noqa: E402
from mdafuse.scoring import score_batch  # noqa: E402

BATCH_SIZES = (1, 8, 32)
SIZE = 256


def load_triples(count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """``count`` triples ``(B, 256, 256)``, ``(B, 256, 256, 3)`` x2 and a line saying where they came from."""
    root = find_data_root()
    if root is not None and (root / "harvard").is_dir():
        pairs = split_pairs("MR-PET", "test", root)
        loaded = [read_pair(p.mr, p.functional) for p in (pairs * (count // len(pairs) + 1))[:count]]
        loaded = [(mr, fn) for mr, fn in loaded if fn.ndim == 3 and mr.shape == (SIZE, SIZE)]
        if len(loaded) == count:
            mr = np.stack([m for m, _ in loaded])
            fn = np.stack([f for _, f in loaded])
            fused = np.stack([fuse_color("average", m, f) for m, f in loaded])
            return mr, fn, fused, f"{count} held-out Harvard MR-PET pairs (colour PET), fused by the average baseline"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    base = 0.5 + 0.3 * np.sin(6 * xx + 3 * yy)
    mr = np.clip(base + 0.1 * rng.standard_normal((count, SIZE, SIZE)), 0, 1).astype(np.float32)
    fn = np.clip(base[..., None] * rng.uniform(0.3, 1, 3) + 0.1 * rng.standard_normal((count, SIZE, SIZE, 3)), 0, 1)
    fn = fn.astype(np.float32)
    fused = np.clip(0.5 * mr[..., None] + 0.5 * fn, 0, 1).astype(np.float32)
    return mr, fn, fused, f"{count} synthetic smooth-plus-noise triples (Harvard data not found)"


def numpy_scorer(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> Callable[[], None]:
    def run() -> None:
        for i in range(a.shape[0]):
            compute_all(a[i], b[i], f[i])

    return run


def torch_scorer(a: np.ndarray, b: np.ndarray, f: np.ndarray, batch: int) -> Callable[[], None]:
    ta, tb, tf = (torch.from_numpy(np.ascontiguousarray(x)) for x in (a, b, f))

    def run() -> None:
        for start in range(0, ta.shape[0], batch):
            score_batch(ta[start : start + batch], tb[start : start + batch], tf[start : start + batch])

    return run


def max_relative_deviation(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> dict[str, float]:
    got = score_batch(a, b, f)
    refs = [compute_all(a[i], b[i], f[i]) for i in range(a.shape[0])]
    return {
        name: max(abs(float(got[name][i]) - ref[name]) / abs(ref[name]) for i, ref in enumerate(refs))
        for name in METRICS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="triples scored per round (a multiple of 32)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds; the median is reported")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/metrics_speed.md"))
    args = parser.parse_args()
    if args.images % max(BATCH_SIZES) != 0:
        parser.error(f"--images must be a multiple of {max(BATCH_SIZES)}")
    torch.set_num_threads(1)
    a, b, f, source = load_triples(args.images)
    methods = {"numpy `compute_all` (float64), one image at a time": (1, numpy_scorer(a, b, f))}
    for batch in BATCH_SIZES:
        methods[f"torch `score_batch` (float32, CPU), batch {batch}"] = (batch, torch_scorer(a, b, f, batch))
    for _, run in methods.values():
        run()  # warm-up: kernel caches, first-call allocations
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.rounds):
        for name, (_, run) in methods.items():
            t0 = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - t0) / args.images)
    deviation = max_relative_deviation(a, b, f)
    reference = statistics.median(next(iter(times.values())))
    command = "python benchmarks/metrics_speed.py" + "".join(f" {x}" for x in sys.argv[1:])
    lines = [
        "# Metric speed: numpy reference vs batched torch",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, numpy {np.__version__}; load average {os.getloadavg()[0]:.1f} at the end, "
        "machine shared with other work, so figures are indicative and the ratios, timed in turns, the robust part).",
        f"Data: {source}; all 13 metrics per triple; one thread for torch and numpy.",
        "",
        f"| method | batch | ms per 256x256 slice (median of {args.rounds} rounds) | speed-up over numpy |",
        "|---|---|---|---|",
    ]
    for name, (batch, _) in methods.items():
        median = statistics.median(times[name])
        lines.append(f"| {name} | {batch} | {1000 * median:.1f} | {reference / median:.2f} |")
    lines += [
        "",
        "Largest relative deviation of the torch values from numpy on these triples: "
        + ", ".join(f"{k} {v:.1e}" for k, v in deviation.items())
        + ".",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
