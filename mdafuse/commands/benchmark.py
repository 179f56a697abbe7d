"""``mdafuse benchmark``: compare MdAFuse with classical fusion baselines on a dataset."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DESCRIPTION = """\
Fuse every MR/functional pair of DATASET with MdAFuse and the classical baselines, score each
fused image with every fusion metric (on luminance) and write to OUT: metrics.parquet (one row
per pair and method), summary.md (mean ± std, best per metric in bold), comparison.png (example
pairs with enlarged regions) and metrics_chart.png (metrics normalised across methods).

DATASET is a folder laid out like harvard/MR-PET (MR/ plus PET/, SPECT/ or CT/ with matching
PNG names) or one of MR-PET, MR-SPECT, MR-CT in the shared data folder ($MDAFUSE_DATA)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    from mdafuse.baselines import BASELINES

    methods = ["mdafuse", *BASELINES]
    p = subparsers.add_parser(
        "benchmark",
        help="compare MdAFuse with classical fusion baselines on a dataset",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", metavar="DATASET", help="dataset folder, or MR-PET / MR-SPECT / MR-CT")
    p.add_argument("-o", "--out", required=True, type=Path, metavar="OUT", help="output folder (created)")
    p.add_argument(
        "--methods", nargs="+", choices=methods, default=None, metavar="METHOD",
        help=f"methods to run (default: all): {', '.join(methods)}",
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use only the first N pairs")
    p.add_argument(
        "--split", choices=["test", "train", "all"], default="test",
        help="part of the recorded series split for shared Harvard folders (default: test); other folders use every pair",
    )
    p.add_argument("--weights", default=None, metavar="FILE|NAME", help="MdAFuse safetensors weights or a shipped name, e.g. mdafuse_spect_v3 (default: the shipped weights of the dataset's modality)")
    p.add_argument("--device", default="cpu", help="torch device for MdAFuse (default: cpu)")
    p.add_argument(
        "-j", "--jobs", type=int, default=None, metavar="N",
        help="worker processes sharing the pairs, each with CPUs/N threads (default: one per CPU; 1 runs in this process); "
        "the table is the same for any N, 'seconds' are times within a worker",
    )
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from mdafuse.evaluation import run_benchmark, summarise

    # one process per CPU: on small images, process parallelism beats BLAS threads (docs/research/benchmark_jobs.md)
    jobs = args.jobs if args.jobs is not None else max(1, os.cpu_count() or 1)
    table = run_benchmark(args.dataset, args.out, methods=args.methods, limit=args.limit, split=args.split, weights=args.weights, device=args.device, jobs=jobs)
    print(summarise(table))
    print(f"wrote {args.out}/metrics.parquet ({table.num_rows} rows), summary.md, comparison.png, metrics_chart.png")
    return 0
