"""Batched torch scoring of fused images: the metrics of :mod:`mdafuse.metrics` on ``(B, H, W)`` batches.

:func:`score_batch` returns one float32 ``(B,)`` tensor per metric, on any torch device;
:func:`score_batch_numpy` returns one ``{name: float}`` dict per image, like
:func:`mdafuse.metrics.compute_all`; :func:`score_slices` scores a stack with either path and
:func:`pair_means` averages it into a pair's values. The numpy float64 code in :mod:`mdafuse.metrics` is the
reference these values are tested against (``tests/scoring``).
"""

from mdafuse.scoring.batched import BATCHED_METRICS, score_batch, score_batch_numpy
from mdafuse.scoring.slices import pair_means, score_slices

__all__ = ["BATCHED_METRICS", "score_batch", "score_batch_numpy", "score_slices", "pair_means"]
