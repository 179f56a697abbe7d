"""The score step of every per-pair path: metrics of a stack of fused slices, and their pair means.

:func:`score_slices` scores ``(Z, H, W)`` stacks either with the float64 numpy reference
(:func:`mdafuse.metrics.compute_all`, one slice at a time; ``device=None`` with numpy input) or with
the batched float32 torch path (:func:`mdafuse.scoring.batched.score_batch`) on a torch device, in
batches of ``batch`` slices. :func:`pair_means` turns the per-slice table into a pair's row values:
the mean of each metric over the slices where it is finite.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["score_slices", "pair_means"]


def _names(names: Sequence[str] | None) -> list[str]:
    from mdafuse.metrics import METRICS

    return list(METRICS) if names is None else list(names)


def score_slices(mr, functional, fused, names: Sequence[str] | None = None, *, device=None, batch: int = 8) -> np.ndarray:
    """Metrics of every slice of a fused stack.

    Args:
        mr: ``(Z, H, W)`` MR in [0, 1] (numpy array or torch tensor).
        functional: ``(Z, H, W)`` grey or ``(Z, H, W, 3)`` RGB functional image.
        fused: the fused stack in the functional image's layout.
        names: metric names (default: all of :data:`mdafuse.metrics.METRICS`, in order).
        device: None with numpy inputs: the float64 numpy reference; a torch device (or torch
            inputs): the batched float32 torch path on that device.
        batch: slices per torch call (on a CPU, batches beyond about 8 slices of 256 x 256 score
            slower; benchmarks/results/metrics_speed.md).

    Returns:
        ``(Z, len(names))`` float64 values (NaN where a metric is undefined for a slice, e.g. PSNR
        of a perfect copy is inf and stays inf).
    """
    keys = _names(names)
    is_tensor = type(mr).__module__.startswith("torch")
    if device is None and not is_tensor:
        from mdafuse.metrics import compute_all

        rows = [compute_all(np.asarray(mr[k]), np.asarray(functional[k]), np.asarray(fused[k]), names=keys) for k in range(len(mr))]
        return np.array([[r[n] for n in keys] for r in rows], dtype=np.float64).reshape(len(rows), len(keys))
    import torch

    from mdafuse.scoring.batched import score_batch

    n = int(mr.shape[0])
    out = np.empty((n, len(keys)), dtype=np.float64)
    for start in range(0, n, max(1, int(batch))):
        part = slice(start, start + max(1, int(batch)))
        scores = score_batch(mr[part], functional[part], fused[part], keys, device=device)
        out[part] = torch.stack([scores[k].double() for k in keys], dim=1).cpu().numpy()
    return out


def pair_means(values: np.ndarray, names: Sequence[str] | None = None) -> dict[str, float]:
    """``{metric: mean over the slices where it is finite}`` (NaN when it is finite nowhere)."""
    keys = _names(names)
    values = np.asarray(values, dtype=np.float64).reshape(-1, len(keys))
    out = {}
    for i, k in enumerate(keys):
        finite = values[:, i][np.isfinite(values[:, i])]
        out[k] = float(finite.mean()) if finite.size else float("nan")
    return out
