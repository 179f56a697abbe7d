"""The GPU check of the cohort job: bare network speed per precision, metrics on the device, the job with one GPU worker.

    python benchmarks/gpu_check.py --out DIR [--device cuda] [--pairs 64] [--budget-s 420]

Run by ``benchmarks/gpu_check.sh`` on a machine with one NVIDIA GPU (see that script for the
set-up). Writes ``DIR/gpu.md`` (copy it to ``benchmarks/results/gpu.md``) and ``DIR/gpu.json``.

1. Bare network (``Fuser.fuse_luminance``, 256 x 256, ``mdafuse_v3``): slices/s at batch 1 to 256 in
   fp32 and under autocast (bf16, fp16), with and without channels-last, timed with CUDA
   synchronisation after warm-up; the autocast outputs against fp32 (max and mean absolute
   difference, share of 8-bit values that change) on demo-cohort slices.
2. Metrics on the device: the 13 metrics (``mdafuse.scoring.score_batch``) at batch 64, slices/s.
3. The whole job: ``mdafuse.jobs.fuse_cohort`` on a demo cohort of ``--pairs`` pairs with one GPU
   worker (when Ray is importable), pairs/s from the first to the last row, and GPU utilisation
   sampled with ``nvidia-smi`` every 0.5 s while it runs. Without Ray, the job's three stages run
   in this process (decode and write in a thread pool, the model stage in the main thread) and
   the same figures are taken, marked as such.

``--device cpu`` runs every step on the CPU with tiny sizes, to check the script itself.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "nvidia-smi not available"


class UtilisationSampler:
    """``nvidia-smi`` GPU utilisation (%) every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5).stdout
                self.samples.append(float(out.split()[0]))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "UtilisationSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        if not self.samples:
            return {"samples": 0}
        s = np.asarray(self.samples)
        return {"samples": int(s.size), "mean": float(s.mean()), "median": float(np.median(s)), "p90": float(np.percentile(s, 90))}


def bare_network(device: str, size: int, batches: list[int], seconds: float) -> list[dict]:
    import torch

    from mdafuse.fusion.pipeline import Fuser

    rows = []
    rng = np.random.default_rng(0)
    for precision in ("fp32", "bf16", "fp16"):
        for channels_last in (False, True):
            if device == "cpu" and precision != "fp32":
                continue
            fuser = Fuser(device=device, precision=precision, channels_last=channels_last)
            for b in batches:
                mr = torch.from_numpy(rng.random((b, 1, size, size), dtype=np.float32)).to(device)
                fy = torch.from_numpy(rng.random((b, 1, size, size), dtype=np.float32)).to(device)
                try:
                    for _ in range(3):
                        fuser.fuse_luminance(mr, fy)
                    _sync(device)
                    n, t0 = 0, time.perf_counter()
                    while time.perf_counter() - t0 < seconds:
                        fuser.fuse_luminance(mr, fy)
                        n += b
                    _sync(device)
                    rate = n / (time.perf_counter() - t0)
                except torch.cuda.OutOfMemoryError if device.startswith("cuda") else MemoryError:
                    rate = float("nan")
                rows.append({"precision": precision, "channels_last": channels_last, "batch": b, "slices_per_s": rate})
            del fuser
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    return rows


def autocast_accuracy(device: str, demo: Path) -> list[dict]:
    """Autocast against fp32 on the demo cohort's windowed slices (the job's own inputs)."""
    import torch

    from mdafuse.cohort import build_pair_table
    from mdafuse.color import rgb_to_ycbcr
    from mdafuse.fusion.pipeline import Fuser
    from mdafuse.io.pair import load_pair

    pairs = build_pair_table(demo / "manifest.csv", "demo").table.to_pylist()[:4]
    mr, fy = [], []
    for p in pairs:
        prepared = load_pair(p["mr"], p["pet"], p["kind"])
        mr.append(prepared.mr)
        fy.append(rgb_to_ycbcr(prepared.functional)[..., 0])
    a = torch.from_numpy(np.concatenate(mr))[:, None].to(device)
    b = torch.from_numpy(np.concatenate(fy))[:, None].to(device)
    ref = Fuser(device=device).fuse_luminance(a, b).cpu().numpy()
    rows = []
    for precision in ("bf16", "fp16"):
        if device == "cpu":
            break
        out = Fuser(device=device, precision=precision, channels_last=True).fuse_luminance(a, b).cpu().numpy()
        diff = np.abs(out - ref)
        rows.append({"precision": precision, "slices": int(a.shape[0]), "max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "changed_8bit": float(np.mean(np.rint(out * 255) != np.rint(ref * 255))), "finite": bool(np.isfinite(out).all())})
    return rows


def metrics_on_device(device: str, size: int, batch: int, seconds: float) -> dict:
    import torch

    from mdafuse.scoring import score_batch

    rng = np.random.default_rng(1)
    a = torch.from_numpy(rng.random((batch, size, size), dtype=np.float32)).to(device)
    b = torch.from_numpy(rng.random((batch, size, size, 3), dtype=np.float32)).to(device)
    f = 0.5 * (a[..., None] + b)
    score_batch(a, b, f)
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        score_batch(a, b, f)
        n += batch
    _sync(device)
    return {"batch": batch, "slices_per_s": n / (time.perf_counter() - t0)}


def whole_job(device: str, demo: Path, out: Path, batch: int, use_ray: bool = True) -> dict:
    if importlib.util.find_spec("ray") is None:
        use_ray = False
    if not use_ray:
        return in_process_pipeline(device, demo, out, batch)
    from mdafuse.jobs.fuse_cohort import build_parser, run

    argv = [str(demo / "manifest.csv"), "--out", str(out), "--run-id", "gpu", "--workers", "1", "--batch-size", str(batch), "--cpus-per-task", "1", "-q"]
    if device.startswith("cuda"):
        argv += ["--num-gpus-per-worker", "1"]
    with UtilisationSampler() as sampler:
        summary = run(build_parser().parse_args(argv))
    return {"mode": "Ray job", "pairs": summary["processed_this_attempt"], "ok": summary["ok"], "pairs_per_s": summary["pairs_per_s_first_to_last"], "wall_s": summary["wall_s"],
            "model_busy_fraction": summary.get("pipeline", {}).get("model_busy_fraction"), "gpu_utilisation": sampler.summary(), "precision": summary["config"]["precision"]}


def in_process_pipeline(device: str, demo: Path, out: Path, batch: int) -> dict:
    """The job's stages without Ray: decode and write in threads, the model stage here."""
    from mdafuse.cohort import build_pair_table
    from mdafuse.jobs.fuse_cohort import CUDA_AUTO_PRECISION, _expected_sha
    from mdafuse.jobs.fusion_stages import FuseChunks, FusionJobConfig, finish_chunks, load_chunks

    cfg = FusionJobConfig(out=str(out), cohort="demo", run_id="gpu", device=device, precision=CUDA_AUTO_PRECISION if device.startswith("cuda") else "fp32",
                          channels_last=device.startswith("cuda"), batch_size=batch, expected_sha=_expected_sha(None, None))
    pairs = build_pair_table(demo / "manifest.csv", "demo").table.to_pylist()
    model = FuseChunks(cfg)
    per_call = max(1, batch // 16)
    finished: list[float] = []

    def batch_of(records: list[dict]) -> dict:
        from mdafuse.jobs.fusion_stages import _columns

        return _columns(records)

    with ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 2) - 1)) as pool, UtilisationSampler() as sampler:
        loads = [pool.submit(load_chunks, p, cfg) for p in pairs]
        writes = []
        queue: list[dict] = []
        for fut in loads:
            queue.extend(fut.result())
            while len(queue) >= per_call:
                done = model(batch_of(queue[:per_call]))
                queue = queue[per_call:]
                for i in range(len(done["pair_id"])):
                    writes.append(pool.submit(finish_chunks, batch_of([{k: v[i] for k, v in done.items()}]), cfg))
                    writes[-1].add_done_callback(lambda _: finished.append(time.perf_counter()))
        if queue:
            done = model(batch_of(queue))
            for i in range(len(done["pair_id"])):
                writes.append(pool.submit(finish_chunks, batch_of([{k: v[i] for k, v in done.items()}]), cfg))
                writes[-1].add_done_callback(lambda _: finished.append(time.perf_counter()))
        for w in writes:
            w.result()
    finished.sort()
    span = finished[-1] - finished[0] if len(finished) > 1 else float("nan")
    return {"mode": "stages in one process (Ray not installed)", "pairs": len(pairs), "pairs_per_s": (len(finished) - 1) / span, "gpu_utilisation": sampler.summary(), "precision": cfg.precision}


def report(results: dict) -> str:
    lines = ["# The cohort job on a GPU", "", f"Produced by `{results['command']}` on {results['date']}: {results['gpu']}; Python {results['python']}, torch {results['torch']}.", ""]
    lines += [f"## Bare network, {results['size']} x {results['size']} slices (slices/s)", "", "| precision | channels-last | " + " | ".join(f"batch {b}" for b in results["batches"]) + " |", "|---|---|" + "---|" * len(results["batches"])]
    keyed: dict = {}
    for r in results["bare"]:
        keyed.setdefault((r["precision"], r["channels_last"]), {})[r["batch"]] = r["slices_per_s"]
    for (precision, cl), rates in keyed.items():
        lines.append(f"| {precision} | {'yes' if cl else 'no'} | " + " | ".join(f"{rates.get(b, float('nan')):.0f}" for b in results["batches"]) + " |")
    if results["accuracy"]:
        lines += ["", "## Autocast against fp32 (demo-cohort slices)", "", "| precision | slices | max abs | mean abs | 8-bit values changed |", "|---|---|---|---|---|"]
        for r in results["accuracy"]:
            lines.append(f"| {r['precision']} | {r['slices']} | {r['max_abs']:.4f} | {r['mean_abs']:.5f} | {100 * r['changed_8bit']:.2f} % |")
    m = results["metrics"]
    lines += ["", "## Metrics on the device", "", f"13 metrics, batch {m['batch']}: **{m['slices_per_s']:.0f} slices/s**.", ""]
    j = results["job"]
    util = j["gpu_utilisation"]
    lines += ["## The whole job, one GPU worker", "", f"{j['mode']}, {j['pairs']} demo pairs (16 slices of 128 x 128 each), precision {j['precision']}: "
              f"**{j['pairs_per_s']:.2f} pairs/s** ({16 * j['pairs_per_s']:.0f} slices/s); GPU utilisation mean {util.get('mean', float('nan')):.0f} %, "
              f"median {util.get('median', float('nan')):.0f} % ({util.get('samples', 0)} nvidia-smi samples)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--pairs", type=int, default=64, help="demo-cohort pairs of the job run (default 64)")
    p.add_argument("--seconds", type=float, default=2.0, help="timing per bare-network measurement (default 2)")
    p.add_argument("--job-batch", type=int, default=128, help="--batch-size of the job run (default 128)")
    p.add_argument("--no-ray", action="store_true", help="run the job's stages in this process even when Ray is installed")
    args = p.parse_args()
    import torch

    from mdafuse.synthetic.demo_cohort import write_demo_cohort

    cpu = args.device == "cpu"
    size, batches = (64, [1, 4]) if cpu else (256, [1, 4, 16, 64, 256])
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mdafuse-gpu-"))
    results = {"command": "bash benchmarks/gpu_check.sh" if not cpu else "python benchmarks/gpu_check.py --device cpu", "date": time.strftime("%Y-%m-%d", time.gmtime()),
               "gpu": _gpu_name() if not cpu else f"CPU only ({platform.machine()})", "python": platform.python_version(), "torch": torch.__version__, "batches": batches, "size": size}
    try:
        subjects = max(1, args.pairs // 2)
        write_demo_cohort(work / "demo", subjects, 2, 0)
        print("bare network ...", flush=True)
        results["bare"] = bare_network(args.device, size, batches, 0.2 if cpu else args.seconds)
        print("autocast accuracy ...", flush=True)
        results["accuracy"] = autocast_accuracy(args.device, work / "demo")
        print("metrics on the device ...", flush=True)
        results["metrics"] = metrics_on_device(args.device, size, 4 if cpu else 64, 0.5 if cpu else args.seconds)
        print("whole job ...", flush=True)
        results["job"] = whole_job(args.device, work / "demo", work / "out", 16 if cpu else args.job_batch, use_ray=not args.no_ray)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (args.out / "gpu.json").write_text(json.dumps(results, indent=2, default=str))
    text = report(results)
    (args.out / "gpu.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
