"""Parameter count, FLOPs and CPU latency of the shipped weights for one 256x256 pair.

    python benchmarks/model_size.py       # writes benchmarks/results/model_size.md

Both shipped defaults are measured in the same run: the network for PET and CT, and the SPECT ensemble
(several networks over flipped views). FLOPs are counted by torch.utils.flop_counter (a multiply-add
counts as 2 FLOPs; convolutions and matrix products only). Latency: median of 10 calls after a warm-up,
batch 1, on this machine; the models take turns call by call, so load on a shared machine hits both alike.
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
    x = torch.rand(1, 1, 256, 256)
    models = {}
    for modality in (None, "SPECT"):
        model, info = load_model(modality=modality)
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(x, x)
        models[info.path.name] = (model, info, counter.get_total_flops() / 1e9, sum(p.numel() for p in model.parameters()))
    lines = [
        "# Model size",
        "",
        f"Produced by `python benchmarks/model_size.py` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, torch {torch.__version__}).",
        *[f"Weights `{name}` (sha256 `{info.sha256[:12]}`), config `{info.config.to_json()}`." for name, (_, info, _, _) in models.items()],
        "",
        "| weights | threads | parameters | GFLOPs per 256x256 pair | CPU latency, ms (median of 10) | latency ratio to the first |",
        "|---|---|---|---|---|---|",
    ]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        times: dict[str, list[float]] = {name: [] for name in models}
        with torch.inference_mode():
            for model, *_ in models.values():
                model(x, x)
            for _ in range(10):
                for name, (model, *_) in models.items():
                    t0 = time.perf_counter()
                    model(x, x)
                    times[name].append(time.perf_counter() - t0)
        first = statistics.median(next(iter(times.values())))
        for name, (_, _, gflops, params) in models.items():
            median = statistics.median(times[name])
            lines.append(f"| `{name}` | {threads} | {params:,} | {gflops:.2f} | {1000 * median:.0f} | {median / first:.2f} |")
    out = Path("benchmarks/results/model_size.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
