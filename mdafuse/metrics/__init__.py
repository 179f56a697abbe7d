"""Fusion-quality metrics of (source A, source B, fused F) on grey images in [0, 1].

One module per family: :mod:`information` (EN, MI), :mod:`statistics` (SD, CC, SCD, MSE, PSNR),
:mod:`structural` (SSIM, VIF), :mod:`gradient` (SF, AG, rSFe, Qabf); :mod:`registry` holds
:data:`METRICS` and :func:`compute_all`. See ``docs/metrics.md`` for the conventions.
"""

from mdafuse.metrics.gradient import ag, extended_spatial_frequency, qabf, rsfe, sf, spatial_frequency
from mdafuse.metrics.information import en, entropy, mi, mutual_information
from mdafuse.metrics.registry import METRICS, SEED_METRICS, MetricSpec, compute_all
from mdafuse.metrics.statistics import cc, mse, psnr, scd, sd
from mdafuse.metrics.structural import ssim, ssim_index, vif, vif_index

__all__ = [
    "METRICS",
    "SEED_METRICS",
    "MetricSpec",
    "compute_all",
    "en",
    "mi",
    "sd",
    "vif",
    "ssim",
    "scd",
    "cc",
    "mse",
    "rsfe",
    "qabf",
    "sf",
    "ag",
    "psnr",
    "entropy",
    "mutual_information",
    "ssim_index",
    "vif_index",
    "spatial_frequency",
    "extended_spatial_frequency",
]
