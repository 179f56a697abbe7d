"""Wall time of ``mdafuse benchmark`` with one process against ``-j N`` worker processes.

    python -m research.benchmark_jobs [--dataset MR-SPECT] [--limit 8] [--jobs 2] [--rounds 2]

Each round runs, one after the other as fresh processes on the same pairs: ``-j 1`` with the
environment's thread settings (BLAS and torch use every core), ``-j 1`` with one thread
(``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=1``) and ``-j N``. Rounds alternate the settings so that
drifting machine load hits all of them; the table gives each run's wall time and its ratio to the
``-j N`` run of the same round. Writes ``docs/research/benchmark_jobs.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mdafuse.data import MODALITY_FOLDERS
from mdafuse.model.weights import default_weights_path
from mdafuse.threads import thread_env

HERE = Path(__file__).resolve().parent


def timed_run(dataset: str, limit: int, jobs: int, env: dict[str, str], out: Path) -> float:
    """Seconds of one ``mdafuse benchmark`` child process (start-up included)."""
    cmd = [sys.executable, "-m", "mdafuse.cli", "benchmark", dataset, "-o", str(out), "--limit", str(limit), "-j", str(jobs)]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="MR-SPECT")
    ap.add_argument("--limit", type=int, default=8, help="pairs per run")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes of the parallel run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE.parent / "docs" / "research" / "benchmark_jobs.md")
    args = ap.parse_args()
    base = dict(os.environ)
    one = {**base, **thread_env(1)}
    settings = [("-j 1, default threads", 1, base), ("-j 1, one thread", 1, one), (f"-j {args.jobs}", args.jobs, base)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            times = {}
            for name, jobs, env in settings:
                times[name] = timed_run(args.dataset, args.limit, jobs, env, Path(tmp) / f"r{r}-{jobs}-{len(times)}")
                print(f"round {r + 1}: {name}: {times[name]:.1f} s", flush=True)
            ref = times[settings[-1][0]]
            rows += [(r + 1, name, t, t / ref) for name, t in times.items()]
    lines = [
        "# Benchmark wall time: one process against worker processes",
        "",
        f"Produced by `python -m research.benchmark_jobs --dataset {args.dataset} --limit {args.limit} --jobs {args.jobs} --rounds {args.rounds}` "
        f"on {time.strftime('%Y-%m-%d')}; {platform.machine()}, {os.cpu_count()} CPUs, machine shared with other work (figures are indicative). "
        f"Each run is `mdafuse benchmark {args.dataset} --limit {args.limit}` with every method (MdAFuse: the shipped "
        f"`{default_weights_path(MODALITY_FOLDERS.get(args.dataset)).stem}`), process start-up included.",
        "",
        f"| round | setting | wall s | ratio to -j {args.jobs} |",
        "|---|---|---|---|",
        *[f"| {r} | {name} | {t:.1f} | {ratio:.2f} |" for r, name, t, ratio in rows],
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
