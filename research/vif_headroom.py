"""How much VIF (or CC) could MdAFuse gain without losing a win? Per-image pixel optimisation.

    python -m research.vif_headroom --per-pair     # writes docs/research/vif_headroom.{md,png}
    python -m research.vif_headroom --floors baselines --init gff --mse-ceiling    # the six-win search

Starting from an image F0 per pair (MdAFuse's fused luminance by default, or a baseline's with
``--init``), the pixels themselves are optimised (Adam, step decayed by a cosine to 0) to raise the
target metric (``--target``: the differentiable VIF ``mdafuse.train.losses.vif_index``, or CC) while
hinge penalties hold EN (soft histogram), SD, SSIM, SCD and |rSFe| at their floors:

- ``--floors mdafuse`` (default): MdAFuse's own values (does the network leave room?);
- ``--floors baselines``: just past the best classical baseline's, the least an image must reach to
  win those five metrics (is there a six-win image at all?).

``--mse-ceiling`` also keeps MSE just below the worst baseline's (never the worst on MSE). By default
the floors hold for the means over the pairs, as the benchmark ranks methods, and all pairs are
optimised together; ``--per-pair`` holds them for every pair alone (stricter with baseline floors).
No network is involved: the result is a probe of the best target value that an image keeping its
other wins can have (a local search from F0, so a lower estimate of that best). Every pair is then
scored with the real metrics (``compute_all``) on the functional image's luminance and the fused
luminance after the colour round trip (rebuilt with the functional chroma, clipped to RGB, as the
benchmark scores it; the optimisation sees the same round trip), beside the baselines (fused in
colour by ``fuse_color``), and the table counts on how many seed metrics the optimised image beats
every baseline. Training pairs by default: this is a study of the model, not a benchmark result.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mdafuse.baselines import BASELINES, fuse_color
from mdafuse.data import MODALITY_FOLDERS, split_pairs
from mdafuse.evaluation.methods import display_name
from mdafuse.evaluation.statistics import best_methods
from mdafuse.color import luminance, rebuilt_luminance, rgb_to_ycbcr
from mdafuse.fusion.color import rgb_to_ycbcr_torch, ycbcr_to_rgb_torch
from mdafuse.fusion.pipeline import Fuser
from mdafuse.io.images import read_pair
from mdafuse.metrics import METRICS, SEED_METRICS, compute_all
from mdafuse.train.losses import extended_sf, pearson, reference_sf, soft_entropy, ssim_map, vif_index

#: Baselines shown beside the optimised image (the VIF leaders on MR-PET and MR-SPECT); all are scored.
RIVALS = ("gff", "maximum")
#: Floor margins for ``--floors baselines``: relative for EN and SD, absolute for SSIM and SCD, relative
#: for |rSFe| (below), and MSE kept this far below the worst baseline's with ``--mse-ceiling``.
MARGIN = {"EN": 0.005, "SD": 0.005, "SSIM": 0.002, "SCD": 0.005, "RS": 0.005, "MSE": 0.01}


def _terms(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, sf_ref: torch.Tensor) -> dict[str, torch.Tensor]:
    """Differentiable stand-ins of VIF, CC, EN, SD, SSIM, SCD, |rSFe| and MSE for ``(1, 1, H, W)`` images."""
    return {
        "VIF": (vif_index(a, f, separable=True) + vif_index(b, f, separable=True)).sum(),
        "CC": (pearson(f, a) + pearson(f, b)).sum() / 2.0,
        "EN": soft_entropy(f).sum(),
        "SD": 255.0 * f.std(),
        "SSIM": ssim_map(f, a, separable=True).mean() + ssim_map(f, b, separable=True).mean(),
        "SCD": (pearson(f - b, a) + pearson(f - a, b)).sum(),
        "RS": ((extended_sf(f) - sf_ref) / sf_ref).abs().sum(),
        "MSE": (((f - a) ** 2).mean() + ((f - b) ** 2).mean()) / 2.0,
    }


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None]


Pair = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]


def _pair(mr: np.ndarray, y: np.ndarray, ycc: np.ndarray | None) -> Pair:
    """MR, functional luminance, their reference spatial frequency and the functional chroma
    ``(1, 2, H, W)`` (None for a grey functional image), as tensors."""
    a, b = _tensor(mr), _tensor(y)
    chroma = None if ycc is None else torch.from_numpy(np.ascontiguousarray(ycc[..., 1:].transpose(2, 0, 1)))[None].float()
    return a, b, reference_sf(a, b), chroma


def _round_trip(f: torch.Tensor, chroma: torch.Tensor | None) -> torch.Tensor:
    """Luminance of the colour image rebuilt from fused ``f`` and the chroma, clipped as the pipeline's RGB."""
    if chroma is None:
        return f
    rgb = ycbcr_to_rgb_torch(torch.cat([f, chroma], dim=1)).clamp(0.0, 1.0)
    return rgb_to_ycbcr_torch(rgb)[:, :1]


class LoadedPair(NamedTuple):
    """One pair as the search uses it: float64 ``(H, W)`` images, the functional YCbCr (None if grey)."""

    mr: np.ndarray
    y: np.ndarray
    ycc: np.ndarray | None
    mdafuse: np.ndarray  # MdAFuse's fused luminance, before the colour round trip
    baselines: dict[str, np.ndarray]  # each baseline's scored luminance, after it
    start: np.ndarray  # where the search starts (see start_image)


def _mean_terms(images: list[torch.Tensor], pairs: list[Pair]) -> dict[str, torch.Tensor]:
    """Stand-ins averaged over the images (one per pair), each after the colour round trip."""
    terms = [_terms(_round_trip(f, ch), a, b, sf) for f, (a, b, sf, ch) in zip(images, pairs)]
    return {k: torch.stack([t[k] for t in terms]).mean() for k in terms[0]}


def floors_for(
    pairs: list[Pair], reference: list[np.ndarray] | None, baseline_pairs: list[Pair],
    baselines: dict[str, list[np.ndarray]], mse_ceiling: bool,
) -> dict[str, float]:
    """Floors (a ceiling for RS) of the stand-ins averaged over ``pairs``: ``reference``'s own values (one
    fused luminance per pair), or just past the best of the ``baselines`` (name -> one image per pair,
    scored on ``baseline_pairs``) when ``reference`` is None; the MSE ceiling (inf unless
    ``mse_ceiling``) sits just below the worst baseline's."""
    with torch.no_grad():
        ts = [{k: float(v) for k, v in _mean_terms([_tensor(f) for f in fs], baseline_pairs).items()} for fs in baselines.values()]
        if reference is not None:
            t = {k: float(v) for k, v in _mean_terms([_tensor(f) for f in reference], pairs).items()}
            out = {k: t[k] for k in ("EN", "SD", "SSIM", "SCD", "RS")}
        else:
            out = {
                "EN": max(t["EN"] for t in ts) * (1 + MARGIN["EN"]),
                "SD": max(t["SD"] for t in ts) * (1 + MARGIN["SD"]),
                "SSIM": max(t["SSIM"] for t in ts) + MARGIN["SSIM"],
                "SCD": max(t["SCD"] for t in ts) + MARGIN["SCD"],
                "RS": min(t["RS"] for t in ts) * (1 - MARGIN["RS"]),
            }
    out["MSE"] = max(t["MSE"] for t in ts) * (1 - MARGIN["MSE"]) if mse_ceiling else float("inf")
    return out


def raise_metric(
    pairs: list[Pair], starts: list[np.ndarray], floor: dict[str, float], steps: int, lr: float, target: str = "VIF",
    trace: list[tuple[int, float, float]] | None = None,
) -> list[np.ndarray]:
    """Pixels of the ``starts`` (one image per pair) moved together to raise the mean ``target`` with the
    means of EN, SD, SSIM, SCD held at their ``floor`` and those of |rSFe| and MSE below theirs. If given,
    ``trace`` receives (step, mean target stand-in, summed relative shortfall) ten times along the way."""
    xs = [_tensor(f).clone().requires_grad_(True) for f in starts]
    opt = torch.optim.Adam(xs, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    # CC moves a hundredth where VIF moves a tenth: scaled so the hinge weights below suit both
    gain = {"VIF": 1.0, "CC": 10.0}[target]
    for step in range(steps + 1):
        t = _mean_terms([x.clamp(0.0, 1.0) for x in xs], pairs)
        shortfall = (
            F.relu(floor["EN"] - t["EN"]) / floor["EN"]
            + F.relu(floor["SD"] - t["SD"]) / floor["SD"]
            + F.relu(floor["SSIM"] - t["SSIM"])
            + F.relu(floor["SCD"] - t["SCD"])
            + F.relu(t["RS"] - floor["RS"])
        )
        if np.isfinite(floor["MSE"]):
            shortfall = shortfall + F.relu(t["MSE"] - floor["MSE"]) / floor["MSE"]
        # linear and squared hinge: a kink at the floor keeps it hard, the square damps oscillation
        if trace is not None and step % max(1, steps // 10) == 0:
            trace.append((step, float(t[target].detach()), float(shortfall.detach())))
        if step == steps:
            break
        loss = -gain * t[target] + 200.0 * shortfall + 1e4 * shortfall**2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return [x.detach().clamp(0.0, 1.0)[0, 0].numpy().astype(np.float64) for x in xs]


def start_image(init: str, mr: np.ndarray, y: np.ndarray, f0: np.ndarray, base: dict[str, np.ndarray]) -> np.ndarray:
    """The fused luminance the search starts from: MdAFuse's, or a baseline's before the colour round
    trip (so that one round trip gives the image the benchmark scores; IHS fuses in RGB and has none)."""
    if init == "mdafuse":
        return f0
    if init == "ihs":
        return base[init]
    return np.asarray(BASELINES[init](mr, y), dtype=np.float64)


def wins_and_worst(means: dict[str, dict[str, float]], name: str) -> tuple[list[str], list[str]]:
    """Seed metrics on which ``name`` is best of all entries of ``means``, and those it is worst on (the
    benchmark table's ranking, :func:`mdafuse.evaluation.statistics.best_methods`)."""
    wins, worst = [], []
    for k in SEED_METRICS:
        per = {m: v[k] for m, v in means.items()}
        wins += [k] if name in best_methods(per, METRICS[k].better) else []
        worst += [k] if best_methods(per, METRICS[k].better, worst=True) == [name] else []
    return wins, worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="MR-SPECT", choices=sorted(MODALITY_FOLDERS))
    ap.add_argument("--weights", type=Path, default=None, help="MdAFuse weights (default: the shipped ones for the dataset's modality)")
    ap.add_argument("--split", default="train", choices=["train", "test"])
    ap.add_argument("--stride", type=int, default=40, help="every stride-th pair of the split (default 40)")
    ap.add_argument("--steps", type=int, default=3000, help="optimisation steps per pair")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam step on [0, 1] pixel values, decayed to 0")
    ap.add_argument("--target", default="VIF", choices=["VIF", "CC"], help="the metric raised (default VIF)")
    ap.add_argument("--init", default="mdafuse", choices=["mdafuse", *BASELINES], help="start image (default MdAFuse's)")
    ap.add_argument(
        "--floors", default="mdafuse", choices=["mdafuse", "baselines"],
        help="hold EN, SD, SSIM, SCD, |rSFe| at MdAFuse's values, or just past the best baseline's (default mdafuse)",
    )
    ap.add_argument("--mse-ceiling", action="store_true", help="also keep MSE just below the worst baseline's (never the worst)")
    ap.add_argument(
        "--per-pair", action="store_true",
        help="floors per pair, each pair optimised alone (default: floors on the means over the pairs, all optimised together)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", type=Path, default=None, help="output stem (default docs/research/vif_headroom, "
                    "or headroom_<target>_<floors>-floors_from-<init> for other options)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    # the first study of this script (MdAFuse's own floors, per pair) keeps its file name
    default_run = (args.target, args.init, args.floors, args.mse_ceiling, args.per_pair, args.lr) == (
        "VIF", "mdafuse", "mdafuse", False, True, 1e-3
    )
    if args.out is None:
        stem = f"headroom_{args.target}_{args.floors}-floors_from-{args.init}" + ("_mse-ceiling" if args.mse_ceiling else "")
        stem += ("_per-pair" if args.per_pair else "") + (f"_lr{args.lr:g}".replace(".", "p") if args.lr != 1e-3 else "")
        args.out = Path("docs/research") / ("vif_headroom" if default_run else Path("headroom") / stem)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fuser = Fuser(args.weights, modality=MODALITY_FOLDERS[args.dataset])
    pairs = split_pairs(args.dataset, args.split)[:: args.stride]
    loaded: list[LoadedPair] = []
    for p in tqdm(pairs, desc=f"{args.dataset} pairs (baselines)", unit="pair"):
        mr, fn = read_pair(p.mr, p.functional)
        ycc = rgb_to_ycbcr(fn) if fn.ndim == 3 else None
        y = luminance(fn).astype(np.float64)
        # baselines as the benchmark scores them: fused in colour, luminance taken after the round trip
        base = {m: luminance(fuse_color(m, mr, fn)).astype(np.float64) for m in BASELINES}
        mr = mr.astype(np.float64)
        f0 = fuser.fuse_batch(mr[None].astype(np.float32), y[None].astype(np.float32))[0].astype(np.float64)
        loaded.append(LoadedPair(mr, y, ycc, f0, base, start_image(args.init, mr, y, f0, base)))
    # per pair, or all pairs at once with floors on the means (the benchmark's own criterion)
    groups = [[i] for i in range(len(loaded))] if args.per_pair else [list(range(len(loaded)))]
    optimised: dict[int, np.ndarray] = {}
    trace: list[tuple[int, float, float]] = []
    for group in tqdm(groups, desc="optimising", unit="group"):
        sub = [loaded[i] for i in group]
        tensors = [_pair(q.mr, q.y, q.ycc) for q in sub]
        reference = [q.mdafuse for q in sub] if args.floors == "mdafuse" else None
        # the baselines' images are already round-tripped: scored against grey-functional pairs, not again
        plain = [(a, b, sf, None) for a, b, sf, _ in tensors]
        floor = floors_for(tensors, reference, plain, {m: [q.baselines[m] for q in sub] for m in BASELINES}, args.mse_ceiling)
        starts = [q.start for q in sub]
        optimised.update(zip(group, raise_metric(tensors, starts, floor, args.steps, args.lr, args.target, trace if group is groups[0] else None)))
    scores: dict[str, list[dict[str, float]]] = {"MdAFuse": [], "optimised": [], **{r: [] for r in BASELINES}}
    for i, q in enumerate(loaded):
        scored = {"MdAFuse": rebuilt_luminance(q.ycc, q.mdafuse), "optimised": rebuilt_luminance(q.ycc, optimised[i]), **q.baselines}
        for name, f in scored.items():
            scores[name].append(compute_all(q.mr, q.y, f, names=SEED_METRICS))
    shown = (pairs[0].mr.name, loaded[0].mr, loaded[0].y, loaded[0].start, optimised[0])
    means = {k: {m: float(np.mean([r[m] for r in v])) for m in SEED_METRICS} for k, v in scores.items()}
    start_name = "MdAFuse" if args.init == "mdafuse" else display_name(args.init)
    scope = "for each pair" if args.per_pair else "on the means over the pairs, all pairs optimised together"
    floors_text = (
        f"held at least at MdAFuse's values {scope}" if args.floors == "mdafuse"
        else f"held just past the best classical baseline's values {scope} (EN, SD +0.5 %, SSIM +0.002, SCD +0.005, "
        "|rSFe| -0.5 %)"
    )
    lines = [
        f"# {args.target} headroom: pixel optimisation from {start_name}'s image ({args.dataset})",
        "",
        f"Produced by `python -m research.vif_headroom --dataset {args.dataset} --split {args.split} --stride {args.stride} "
        f"--steps {args.steps} --target {args.target} --init {args.init} --floors {args.floors}"
        + (" --mse-ceiling" if args.mse_ceiling else "") + (" --per-pair" if args.per_pair else "")
        + (f" --lr {args.lr:g}" if args.lr != 1e-3 else "")
        + f"` on {date.today().isoformat()} with `{fuser.info.path.name}`: {len(pairs)} pairs "
        f"(every {args.stride}th of the {args.split} series). \"optimised\": {start_name}'s fused luminance with its pixels "
        f"moved to raise {args.target} while EN, SD, SSIM, SCD and |rSFe| are {floors_text}"
        + (", and MSE is kept 1 % below the worst baseline's" if args.mse_ceiling else "")
        + " (hinge penalties on differentiable stand-ins). Real metrics on the luminance after the colour round trip, as the "
        "benchmark scores it, against the functional luminance.",
        "",
        "Mean over the pairs:",
        "",
        "| image | " + " | ".join(SEED_METRICS) + " |",
        "|---" * (len(SEED_METRICS) + 1) + "|",
    ]
    shown_rows = ("MdAFuse", "optimised", *RIVALS) if default_run else tuple(means)
    lines += [f"| {display_name(k) if k in BASELINES else k} | " + " | ".join(f"{means[k][m]:.4g}" for m in SEED_METRICS) + " |" for k in shown_rows]
    per_pair = ("MdAFuse", "optimised", *RIVALS)
    lines += ["", f"{args.target} per pair:", "", "| pair | " + " | ".join(per_pair) + " |", "|---" * (len(per_pair) + 1) + "|"]
    for i, p in enumerate(pairs):
        lines.append(f"| {p.mr.name} | " + " | ".join(f"{scores[k][i][args.target]:.3f}" for k in per_pair) + " |")
    held = [m for m in ("EN", "SD", "SSIM", "SCD") if means["optimised"][m] >= means["MdAFuse"][m]]
    held += ["rSFe"] if abs(means["optimised"]["rSFe"]) <= abs(means["MdAFuse"]["rSFe"]) else []
    leader = max(BASELINES, key=lambda m: means[m][args.target])
    gap = means[leader][args.target] - means["MdAFuse"][args.target]
    closed = (means["optimised"][args.target] - means["MdAFuse"][args.target]) / gap if gap > 0 else float("nan")
    wins, worst = wins_and_worst({k: v for k, v in means.items() if k != "MdAFuse"}, "optimised")
    mdafuse_wins, _ = wins_and_worst({k: v for k, v in means.items() if k != "optimised"}, "MdAFuse")
    lines += [
        "",
        f"Held at or better than MdAFuse on average: {', '.join(held) or 'none'}. Share of MdAFuse's {args.target} gap to "
        f"the best baseline ({display_name(leader)}) closed: {100 * closed:.0f} %. Against the ten baselines on these pairs "
        f"the optimised image is best on {len(wins)} of 9 ({', '.join(wins) or 'none'}) and worst on "
        f"{', '.join(worst) or 'none'}; MdAFuse is best on {len(mdafuse_wins)} ({', '.join(mdafuse_wins) or 'none'}).",
    ]
    lines += [
        "",
        f"Along the optimisation ({'first pair' if args.per_pair else 'all pairs together'}): mean {args.target} "
        "stand-in and the summed relative shortfall below the floors (0: every floor held).",
        "",
        "| step | " + " | ".join(str(s) for s, _, _ in trace) + " |",
        "|---" * (len(trace) + 1) + "|",
        f"| {args.target} | " + " | ".join(f"{v:.4g}" for _, v, _ in trace) + " |",
        "| shortfall | " + " | ".join(f"{v:.2g}" for _, _, v in trace) + " |",
    ]
    name, mr, y, f_start, fo = shown
    fig, axes = plt.subplots(1, 5, figsize=(17, 3.8))
    panels = [("MR", mr), ("functional (Y)", y), (start_name, f_start), ("optimised", fo)]
    for ax, (title, im) in zip(axes, panels):
        ax.imshow(im, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    im = axes[4].imshow(fo - f_start, cmap="RdBu", vmin=-0.1, vmax=0.1)
    axes[4].set_title(f"optimised - {start_name}")
    axes[4].axis("off")
    fig.colorbar(im, ax=axes[4], fraction=0.046)
    start_key = "MdAFuse" if args.init == "mdafuse" else args.init
    fig.suptitle(f"{args.dataset} {name}: {args.target} {scores[start_key][0][args.target]:.3f} -> "
                 f"{scores['optimised'][0][args.target]:.3f}")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out.with_suffix(".png"), dpi=90)
    lines += ["", f"![first pair]({args.out.with_suffix('.png').name})"]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
