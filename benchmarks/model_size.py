"""Parameter count, FLOPs and CPU latency of the shipped network for one 256x256 pair.

    python benchmarks/model_size.py       # writes benchmarks/results/model_size.md

FLOPs are counted by torch.utils.flop_counter (a multiply-add counts as 2 FLOPs; convolutions and
matrix products only). Latency: median of 10 calls after a warm-up, batch 1, on this machine.
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from mdafuse.model.weights import load_model


def main() -> None:
    model, info = load_model()
    x = torch.rand(1, 1, 256, 256)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x, x)
    gflops = counter.get_total_flops() / 1e9
    params = sum(p.numel() for p in model.parameters())
    lines = [
        "# Model size",
        "",
        f"Produced by `python benchmarks/model_size.py` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, torch {torch.__version__}).",
        f"Weights `{info.path.name}` (sha256 `{info.sha256[:12]}`), config `{info.config.to_json()}`.",
        "",
        "| threads | parameters | GFLOPs per 256x256 pair | CPU latency, ms (median of 10) |",
        "|---|---|---|---|",
    ]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            model(x, x)
            times = []
            for _ in range(10):
                t0 = time.perf_counter()
                model(x, x)
                times.append(time.perf_counter() - t0)
        lines.append(f"| {threads} | {params:,} | {gflops:.2f} | {1000 * statistics.median(times):.0f} |")
    out = Path("benchmarks/results/model_size.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
