"""README figures: a real held-out MR-SPECT and MR-PET pair, fused and enhanced with the shipped model.

    python benchmarks/make_figures.py            # writes docs/figures/enhancement.png

Each row: MR, functional (pseudo-colour), MdAFuse fused, fused + energy-based enhancement, and the
functional energy map that drives the enhancement.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mdafuse.data import MODALITY_FOLDERS, split_pairs  # noqa: E402
from mdafuse.color import luminance# noqa: E402
from mdafuse.fusion.enhance import EnhanceConfig, energy_map, enhance  # noqa: E402
from mdafuse.fusion.pipeline import fuse_pair  # noqa: E402
from mdafuse.io.images import read_pair  # noqa: E402

PICKS = [("MR-SPECT", 20), ("MR-PET", 40)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", type=Path, default=Path("docs/figures/enhancement.png"))
    args = ap.parse_args()
    cfg = EnhanceConfig()
    fig, axes = plt.subplots(len(PICKS), 5, figsize=(15, 3.2 * len(PICKS)))
    for row, (ds, idx) in enumerate(PICKS):
        pair = split_pairs(ds, "test")[idx]
        mr, fn = read_pair(pair.mr, pair.functional)
        fused = fuse_pair(mr, fn, modality=MODALITY_FOLDERS[ds])
        enhanced = enhance(fused, fn, cfg)
        panels = [(mr, "MR"), (fn, MODALITY_FOLDERS[ds]), (fused, "MdAFuse fused"), (enhanced, "fused + enhancement"), (energy_map(luminance(fn), cfg.window), "functional energy")]
        for ax, (img, title) in zip(axes[row], panels):
            ax.imshow(img, cmap="gray" if img.ndim == 2 and title != "functional energy" else "magma", vmin=0, vmax=1 if title != "functional energy" else None)
            ax.set_title(f"{title}" + (f"  ({ds} {pair.name}, held-out)" if title == "MR" else ""), fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
