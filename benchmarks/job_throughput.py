"""Throughput of the cohort job against the bare model.

    python benchmarks/job_throughput.py [--subjects 2] [--timepoints 2] [--workers 1 2] [--out DIR]

1. Bare model: ``Fuser.fuse_batch`` on demo-sized slices (128 x 128) for batch sizes 1..16, one
   torch thread, after a warm-up call; slices/s and the equivalent pairs/s of a demo pair
   (16 slices).
2. Whole job: ``jobs.fuse_cohort`` on the demo cohort (local Ray, 2 CPUs) with 1 and 2 workers,
   each a fresh run; pairs/s from the run's wall time (actor start-up included) and the mean
   per-pair time split (read, fuse, enhance, metrics, write) from the metrics rows.
3. Overhead ratio: bare-model pairs/s at the job's batch size over job pairs/s with 1 worker
   (1.0 would mean the job costs nothing beyond the network).

Writes ``benchmarks/results/job_throughput.md``.
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def bare_model(batches: list[int], size: int, repeats: int) -> list[dict]:
    import torch

    from mdafuse.fusion.pipeline import Fuser

    torch.set_num_threads(1)
    fuser = Fuser()
    rng = np.random.default_rng(0)
    out = []
    for b in batches:
        mr = rng.random((b, size, size), dtype=np.float32)
        fy = rng.random((b, size, size), dtype=np.float32)
        fuser.fuse_batch(mr, fy)
        t = time.perf_counter()
        for _ in range(repeats):
            fuser.fuse_batch(mr, fy)
        dt = (time.perf_counter() - t) / repeats
        out.append({"batch": b, "s_per_call": dt, "slices_per_s": b / dt})
    return out


def job_runs(workers: list[int], subjects: int, timepoints: int, batch: int, root: Path) -> list[dict]:
    import pyarrow.parquet as pq
    import ray

    from jobs.fuse_cohort import build_parser, run
    from mdafuse.io.demo_cohort import write_demo_cohort

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    cohort = root / "cohort"
    write_demo_cohort(cohort, subjects, timepoints, 0)
    results = []
    for w in workers:
        out = root / f"out-w{w}"
        args = build_parser().parse_args([str(cohort / "manifest.csv"), "--out", str(out), "--run-id", f"w{w}", "--workers", str(w), "--batch-size", str(batch), "-q"])
        summary = run(args)
        files = sorted((out / f"metrics/cohort=manifest/run=w{w}").glob("*.parquet"))
        cols = ["t_read_s", "t_fuse_s", "t_enhance_s", "t_metrics_s", "t_write_s", "t_total_s", "n_slices"]
        rows = [pq.read_table(f, columns=cols).to_pydict() for f in files]
        means = {c: float(np.mean(sum((r[c] for r in rows), []))) for c in cols}
        results.append({"workers": w, "pairs": summary["processed_this_attempt"], "ok": summary["ok"], "wall_s": summary["wall_s"], "pairs_per_s": summary["pairs_per_s"], **means})
    ray.shutdown()
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subjects", type=int, default=2)
    p.add_argument("--timepoints", type=int, default=2)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--job-batch", type=int, default=4, help="--batch-size of the job runs")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE / "results" / "job_throughput.md")
    args = p.parse_args()
    size, slices_per_pair = 128, 16
    bare = bare_model(args.batches, size, args.repeats)
    with tempfile.TemporaryDirectory(prefix="mdafuse-bench-") as tmp:
        jobs = job_runs(args.workers, args.subjects, args.timepoints, args.job_batch, Path(tmp))
    bare_at_job = next((b for b in bare if b["batch"] == args.job_batch), bare[0])
    bare_pairs = bare_at_job["slices_per_s"] / slices_per_pair
    one = next((j for j in jobs if j["workers"] == 1), jobs[0])
    buf = io.StringIO()
    buf.write("# Cohort job throughput\n\n")
    buf.write(f"Produced by `python benchmarks/job_throughput.py --subjects {args.subjects} --timepoints {args.timepoints}` on "
              f"{time.strftime('%Y-%m-%d', time.gmtime())}; {platform.machine()}, local Ray with 2 CPUs, torch 1 thread per worker, "
              "machine shared with other work (figures are indicative). Demo pair: MR 16 x 128 x 128, PET 12 x 64 x 64.\n\n")
    buf.write("## Bare model (`Fuser.fuse_batch`, 128 x 128, CPU, 1 thread)\n\n| batch | s / call | slices/s | demo pairs/s |\n|---|---|---|---|\n")
    for b in bare:
        buf.write(f"| {b['batch']} | {b['s_per_call']:.3f} | {b['slices_per_s']:.2f} | {b['slices_per_s'] / slices_per_pair:.3f} |\n")
    buf.write(f"\n## Whole job (`jobs.fuse_cohort`, demo cohort, --batch-size {args.job_batch})\n\n")
    buf.write("| workers | pairs | ok | wall s | pairs/s | mean s/pair: read | fuse | enhance | metrics | write | total |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    for j in jobs:
        buf.write(f"| {j['workers']} | {j['pairs']} | {j['ok']} | {j['wall_s']:.1f} | {j['pairs_per_s']:.3f} | {j['t_read_s']:.2f} | {j['t_fuse_s']:.2f} | "
                  f"{j['t_enhance_s']:.2f} | {j['t_metrics_s']:.2f} | {j['t_write_s']:.2f} | {j['t_total_s']:.2f} |\n")
    ratio = bare_pairs / one["pairs_per_s"] if one["pairs_per_s"] else float("nan")
    buf.write(f"\nOverhead ratio (bare model pairs/s at batch {args.job_batch} / job pairs/s with {one['workers']} worker): **{ratio:.2f}**. "
              "The job also reads DICOM, resamples PET, enhances, scores 13 metrics per brain slice and writes PNG/NIfTI, "
              "and the wall time includes Ray actor start-up.\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(buf.getvalue())
    print(buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
