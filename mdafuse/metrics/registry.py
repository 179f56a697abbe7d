"""Registry of the fusion-quality metrics and :func:`compute_all`.

Each entry of :data:`METRICS` is a :class:`MetricSpec` whose ``func(a, b, f) -> float`` takes
source A, source B and fused F (grey ``(H, W)`` or colour ``(H, W, 3)`` in [0, 1]) with the
default conventions documented on each function.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mdafuse.metrics._common import prepare
from mdafuse.metrics.gradient import ag, qabf, rsfe, sf
from mdafuse.metrics.information import en, mi
from mdafuse.metrics.statistics import cc, mse, psnr, scd, sd
from mdafuse.metrics.structural import ssim, vif

__all__ = ["MetricSpec", "METRICS", "SEED_METRICS", "compute_all"]

logger = logging.getLogger(__name__)

_BETTER = ("higher", "lower", "abs_lower")


@dataclass(frozen=True)
class MetricSpec:
    """One fusion metric.

    Attributes:
        name: key used in tables and Parquet columns (e.g. ``"EN"``).
        func: ``func(a, b, f) -> float`` with default options.
        better: ``"higher"``, ``"lower"`` or ``"abs_lower"`` (smaller absolute value is better).
        description: one line: what it measures, its default scale and reduction.
    """

    name: str
    func: Callable[[np.ndarray, np.ndarray, np.ndarray], float]
    better: str
    description: str

    def __post_init__(self) -> None:
        if self.better not in _BETTER:
            raise ValueError(f"better must be one of {_BETTER}; got {self.better!r}")

    @property
    def higher_is_better(self) -> bool | None:
        """True for "higher", False for "lower", None for "abs_lower" (rSFe)."""
        if self.better == "higher":
            return True
        elif self.better == "lower":
            return False
        else:
            return None


METRICS: dict[str, MetricSpec] = {
    s.name: s
    for s in (
        MetricSpec("EN", en, "higher", "Shannon entropy of F, 256-bin histogram of round(255 F), bits"),
        MetricSpec("MI", mi, "higher", "MI(A,F) + MI(B,F), 256x256 joint histograms, bits"),
        MetricSpec("SD", sd, "higher", "standard deviation of 255 F (population, ddof=0)"),
        MetricSpec("VIF", vif, "higher", "VIF(A,F) + VIF(B,F), 4-scale pixel VIF (Sheikh-Bovik) on 8-bit scale"),
        MetricSpec("SSIM", ssim, "higher", "SSIM(A,F) + SSIM(B,F), Gaussian 11x11 sigma 1.5, data_range 1"),
        MetricSpec("SCD", scd, "higher", "corr(F-B, A) + corr(F-A, B) (Aslantas-Bendes)"),
        MetricSpec("CC", cc, "higher", "mean of corr(A,F) and corr(B,F)"),
        MetricSpec("MSE", mse, "lower", "mean of MSE(A,F) and MSE(B,F) on [0, 1]"),
        MetricSpec("rSFe", rsfe, "abs_lower", "(SF_F - SF_R) / SF_R, 4-direction SF, reference = max |gradient|"),
        MetricSpec("Qabf", qabf, "higher", "Xydeas-Petrovic edge preservation, Sobel, L=1"),
        MetricSpec("SF", sf, "higher", "spatial frequency of 255 F (row and column differences)"),
        MetricSpec("AG", ag, "higher", "average gradient of 255 F"),
        MetricSpec("PSNR", psnr, "higher", "10 log10(1 / MSE), MSE the mean over both sources on [0, 1], dB"),
    )
}

SEED_METRICS: list[str] = ["EN", "MI", "SD", "VIF", "SSIM", "SCD", "CC", "MSE", "rSFe"]
"""The metrics reported by the MdAFuse paper (Wen et al., IEEE TIP 2024)."""


def compute_all(a: np.ndarray, b: np.ndarray, f: np.ndarray, names: Sequence[str] | None = None) -> dict[str, float]:
    """Score one fused image with every registered metric (or those in ``names``).

    Args:
        a: source A, ``(H, W)`` or ``(H, W, 3)`` float in [0, 1] (e.g. MR).
        b: source B of the same ``(H, W)`` (e.g. PET/SPECT; colour is scored on luminance).
        f: fused image of the same ``(H, W)``.
        names: metric keys to compute, in order; all of :data:`METRICS` when None.

    Returns:
        ``{name: value}`` with Python floats, in the order of ``names`` (or of :data:`METRICS`).

    Raises:
        ValueError: an unknown metric name, or invalid images (see each metric).
    """
    if names is None:
        keys = list(METRICS)
    else:
        if isinstance(names, str):
            raise TypeError(f"names must be a sequence of metric names, not a string; got {names!r}")
        keys = list(names)
        unknown = [n for n in keys if n not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric name(s) {unknown}; valid names are {list(METRICS)}")
    ga, gb, gf = prepare(a, b, f)
    return {k: float(METRICS[k].func(ga, gb, gf)) for k in keys}
