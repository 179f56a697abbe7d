"""How much VIF could MdAFuse gain without losing a win? Per-image pixel optimisation of its output.

    python benchmarks/vif_headroom.py      # writes benchmarks/results/vif_headroom.{md,png}

Starting from MdAFuse's fused luminance F0 of a pair, the pixels themselves are optimised (Adam, step
decayed by a cosine to 0) to raise the differentiable VIF (``mdafuse.train.losses.vif_index``) while hinge
penalties hold EN (soft histogram), SD, SSIM, SCD and |rSFe| at least at F0's values for that pair. No
network is involved: the result is an upper-bound-style probe of how far the trained network is from the
best VIF that an image keeping its other wins can have (a local search, so a lower estimate of that best).
Every pair is then scored with the real metrics (``compute_all``) on the functional image's luminance
and the fused luminance directly (no colour round trip), beside GFF and the max rule, the VIF leaders.
Training pairs by default: this is a study of the model, not a benchmark result.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mdafuse.baselines import BASELINES
from mdafuse.data import MODALITY_FOLDERS, split_pairs
from mdafuse.fusion.color import luminance
from mdafuse.fusion.pipeline import Fuser
from mdafuse.io.images import read_pair
from mdafuse.metrics import SEED_METRICS, compute_all
from mdafuse.train.losses import extended_sf, pearson, reference_sf, soft_entropy, ssim_map, vif_index

#: Baselines scored beside the optimised image (the VIF leaders on MR-PET and MR-SPECT).
RIVALS = ("gff", "maximum")


def _terms(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, sf_ref: torch.Tensor) -> dict[str, torch.Tensor]:
    """Differentiable stand-ins of VIF, EN, SD, SSIM, SCD and |rSFe| for ``(1, 1, H, W)`` images."""
    return {
        "VIF": (vif_index(a, f, separable=True) + vif_index(b, f, separable=True)).sum(),
        "EN": soft_entropy(f).sum(),
        "SD": 255.0 * f.std(),
        "SSIM": ssim_map(f, a, separable=True).mean() + ssim_map(f, b, separable=True).mean(),
        "SCD": (pearson(f - b, a) + pearson(f - a, b)).sum(),
        "RS": ((extended_sf(f) - sf_ref) / sf_ref).abs().sum(),
    }


def raise_vif(mr: np.ndarray, y: np.ndarray, f0: np.ndarray, steps: int, lr: float) -> np.ndarray:
    """Pixels of ``f0`` moved to raise VIF with EN, SD, SSIM, SCD and |rSFe| held at ``f0``'s values."""

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None]

    a, b = tensor(mr), tensor(y)
    sf_ref = reference_sf(a, b)
    with torch.no_grad():
        floor = _terms(tensor(f0), a, b, sf_ref)
    x = tensor(f0).clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        t = _terms(x.clamp(0.0, 1.0), a, b, sf_ref)
        shortfall = (
            F.relu(floor["EN"] - t["EN"]) / floor["EN"]
            + F.relu(floor["SD"] - t["SD"]) / floor["SD"]
            + F.relu(floor["SSIM"] - t["SSIM"])
            + F.relu(floor["SCD"] - t["SCD"])
            + F.relu(t["RS"] - floor["RS"])
        )
        # linear and squared hinge: a kink at the floor keeps it hard, the square damps oscillation
        loss = -t["VIF"] + 200.0 * shortfall + 1e4 * shortfall**2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return x.detach().clamp(0.0, 1.0)[0, 0].numpy().astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="MR-SPECT", choices=sorted(MODALITY_FOLDERS))
    ap.add_argument("--weights", type=Path, default=None, help="MdAFuse weights (default: the shipped ones for the dataset's modality)")
    ap.add_argument("--split", default="train", choices=["train", "test"])
    ap.add_argument("--stride", type=int, default=40, help="every stride-th pair of the split (default 40)")
    ap.add_argument("--steps", type=int, default=3000, help="optimisation steps per pair")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam step on [0, 1] pixel values, decayed to 0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", type=Path, default=Path("benchmarks/results/vif_headroom"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fuser = Fuser(args.weights, modality=MODALITY_FOLDERS[args.dataset])
    pairs = split_pairs(args.dataset, args.split)[:: args.stride]
    scores: dict[str, list[dict[str, float]]] = {"MdAFuse": [], "optimised": [], **{r: [] for r in RIVALS}}
    shown = None
    for p in tqdm(pairs, desc=f"{args.dataset} pairs", unit="pair"):
        mr, fn = read_pair(p.mr, p.functional)
        mr, y = mr.astype(np.float64), luminance(fn).astype(np.float64)
        f0 = fuser.fuse_batch(mr[None].astype(np.float32), y[None].astype(np.float32))[0].astype(np.float64)
        fo = raise_vif(mr, y, f0, args.steps, args.lr)
        images = {"MdAFuse": f0, "optimised": fo, **{r: BASELINES[r](mr, y) for r in RIVALS}}
        for name, f in images.items():
            scores[name].append(compute_all(mr, y, f, names=SEED_METRICS))
        if shown is None:
            shown = (p.mr.name, mr, y, f0, fo)
    means = {k: {m: float(np.mean([r[m] for r in v])) for m in SEED_METRICS} for k, v in scores.items()}
    lines = [
        f"# VIF headroom: pixel optimisation of MdAFuse's output ({args.dataset})",
        "",
        f"Produced by `python benchmarks/vif_headroom.py --dataset {args.dataset} --split {args.split} --stride {args.stride} "
        f"--steps {args.steps}` on {date.today().isoformat()} with `{fuser.info.path.name}`: {len(pairs)} pairs "
        f"(every {args.stride}th of the {args.split} series). \"optimised\": MdAFuse's fused luminance with its pixels moved "
        "to raise VIF while EN, SD, SSIM, SCD and |rSFe| are held at least at MdAFuse's values for the pair "
        "(hinge penalties on differentiable stand-ins). Real metrics, fused luminance against the functional luminance.",
        "",
        "Mean over the pairs:",
        "",
        "| image | " + " | ".join(SEED_METRICS) + " |",
        "|---" * (len(SEED_METRICS) + 1) + "|",
    ]
    lines += [f"| {k} | " + " | ".join(f"{v[m]:.4g}" for m in SEED_METRICS) + " |" for k, v in means.items()]
    lines += ["", "VIF per pair:", "", "| pair | " + " | ".join(scores) + " |", "|---" * (len(scores) + 1) + "|"]
    for i, p in enumerate(pairs):
        lines.append(f"| {p.mr.name} | " + " | ".join(f"{scores[k][i]['VIF']:.3f}" for k in scores) + " |")
    held = [m for m in ("EN", "SD", "SSIM", "SCD") if means["optimised"][m] >= means["MdAFuse"][m]]
    held += ["rSFe"] if abs(means["optimised"]["rSFe"]) <= abs(means["MdAFuse"]["rSFe"]) else []
    gap = means["gff"]["VIF"] - means["MdAFuse"]["VIF"]
    closed = (means["optimised"]["VIF"] - means["MdAFuse"]["VIF"]) / gap if gap > 0 else float("nan")
    lines += [
        "",
        f"Held at or better than MdAFuse on average: {', '.join(held) or 'none'}. Share of MdAFuse's VIF gap to GFF "
        f"closed: {100 * closed:.0f} %.",
    ]
    name, mr, y, f0, fo = shown
    fig, axes = plt.subplots(1, 5, figsize=(17, 3.8))
    panels = [("MR", mr), ("functional (Y)", y), ("MdAFuse", f0), ("optimised", fo)]
    for ax, (title, im) in zip(axes, panels):
        ax.imshow(im, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    im = axes[4].imshow(fo - f0, cmap="RdBu", vmin=-0.1, vmax=0.1)
    axes[4].set_title("optimised - MdAFuse")
    axes[4].axis("off")
    fig.colorbar(im, ax=axes[4], fraction=0.046)
    fig.suptitle(f"{args.dataset} {name}: VIF {scores['MdAFuse'][0]['VIF']:.3f} -> {scores['optimised'][0]['VIF']:.3f}")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out.with_suffix(".png"), dpi=90)
    lines += ["", f"![first pair]({args.out.with_suffix('.png').name})"]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
