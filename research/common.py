"""Helpers only the studies use."""

from __future__ import annotations

import numpy as np

from mdafuse.evaluation.statistics import goodness

__all__ = ["relative_margin"]


def relative_margin(value: float, reference: float, better: str) -> float:
    """How much better ``value`` is than ``reference``, as a share of ``|reference|`` (< 0: worse).

    ``abs_lower`` metrics compare ``|value|`` with ``|reference|``.
    """
    g = goodness(np.array([value, reference], dtype=np.float64), better)
    return float((g[0] - g[1]) / max(abs(float(reference)), 1e-12))
