"""Training data: Harvard atlas pairs as (MR, functional luminance) arrays, random patches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mdafuse.data import PairPaths
from mdafuse.color import luminance
from mdafuse.io.images import read_pair

__all__ = ["load_pairs", "PatchSampler"]


def load_pairs(pairs: Sequence[PairPaths]) -> np.ndarray:
    """Read pairs into one ``(N, 2, H, W)`` float32 array of (MR, functional Y)."""
    if not pairs:
        raise ValueError("no training pairs given; check the data folder and the split")
    out = []
    for p in pairs:
        mr, fn = read_pair(p.mr, p.functional)
        out.append(np.stack([mr, luminance(fn)]))
    return np.stack(out).astype(np.float32)


class PatchSampler:
    """Random square patches with flips and 90-degree rotations from ``(N, 2, H, W)`` pairs.

    Patches whose two channels are both nearly empty (background) are redrawn, since they teach
    the network nothing.
    """

    def __init__(self, pairs: np.ndarray, patch: int, seed: int) -> None:
        if pairs.ndim != 4 or pairs.shape[1] != 2:
            raise ValueError(f"pairs must have shape (N, 2, H, W); got {pairs.shape}")
        if patch > min(pairs.shape[2:]):
            raise ValueError(f"patch {patch} is larger than the images {pairs.shape[2:]}")
        self.pairs = pairs
        self.patch = patch
        self.seed = seed

    def batch(self, size: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches of one step: ``((size, 1, P, P) MR, (size, 1, P, P) functional Y)``.

        The draw depends only on (seed, step), so a resumed run sees exactly the patches an
        uninterrupted run would.
        """
        rng = np.random.default_rng((self.seed, step))
        n, _, h, w = self.pairs.shape
        out = np.empty((size, 2, self.patch, self.patch), np.float32)
        for i in range(size):
            for _attempt in range(10):
                k = rng.integers(n)
                y = rng.integers(h - self.patch + 1)
                x = rng.integers(w - self.patch + 1)
                crop = self.pairs[k, :, y : y + self.patch, x : x + self.patch]
                if crop.max() > 0.05:
                    break
            crop = np.rot90(crop, rng.integers(4), axes=(1, 2))
            if rng.random() < 0.5:
                crop = crop[:, :, ::-1]
            out[i] = crop
        t = torch.from_numpy(out)
        return t[:, :1], t[:, 1:]
