"""Lesion segmentation on an uptake (SUV) image by an adaptive, background-corrected threshold.

Rule (all thresholds on the SUV lightly smoothed in-plane with ``smooth_sigma_vox`` to tame noise;
measurements are made on the unsmoothed SUV):

1. Reference uptake ``ref``: median SUV over "tissue", the voxels above 20 % of the 99th
   percentile of the image.
2. Seeds: connected components (faces connectivity) of ``SUV > max(min_suv, peak_to_reference * ref)``.
3. For each seed, strongest first: ``peak`` is its maximum; the local background ``bg`` is the
   median SUV in a shell ``shell_inner..shell_outer`` voxels (in-plane) around the seed; the lesion
   is the connected component of ``SUV > max(min_suv, bg + relative_threshold * (peak - bg))``
   holding the peak voxel. Halfway (0.5) is where a blurred uniform lesion's border lies in
   theory; the default 0.45 also keeps the partial-volume caps of small lesions in thick slices
   (on the phantom it gave volumes within 9 % of truth, against -18 % with 0.5). Components smaller than
   ``min_voxels`` or already claimed by a stronger lesion are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["SegmentationConfig", "Lesion", "segment_lesions"]


@dataclass(frozen=True)
class SegmentationConfig:
    """Parameters of :func:`segment_lesions` (see the module docstring for the rule).

    Attributes:
        min_suv: absolute floor of every threshold (SUV 2.5, the usual "metabolically active" level).
        peak_to_reference: seed threshold as a multiple of the reference (normal tissue) uptake.
        relative_threshold: lesion edge between local background (0) and peak (1).
        min_voxels: smallest lesion kept.
        smooth_sigma_vox: in-plane Gaussian sigma (voxels) applied before thresholding (0: none).
        shell_inner: inner radius (voxels, in-plane dilations) of the background shell.
        shell_outer: outer radius of the background shell.
    """

    min_suv: float = 2.5
    peak_to_reference: float = 3.0
    relative_threshold: float = 0.45
    min_voxels: int = 5
    smooth_sigma_vox: float = 0.7
    shell_inner: int = 2
    shell_outer: int = 5

    def __post_init__(self) -> None:
        if not 0 < self.relative_threshold < 1:
            raise ValueError(f"relative_threshold must be in (0, 1); got {self.relative_threshold}")
        if self.min_suv < 0 or self.peak_to_reference <= 0 or self.min_voxels < 1 or self.smooth_sigma_vox < 0:
            raise ValueError("min_suv >= 0, peak_to_reference > 0, min_voxels >= 1 and smooth_sigma_vox >= 0 are required")
        if not 0 <= self.shell_inner < self.shell_outer:
            raise ValueError(f"need 0 <= shell_inner < shell_outer; got {self.shell_inner}, {self.shell_outer}")


@dataclass(frozen=True)
class Lesion:
    """One segmented lesion.

    Attributes:
        mask: boolean array, the image's shape.
        volume_voxels: voxels in the mask.
        mean_suv: mean SUV in the mask (unsmoothed image).
        max_suv: maximum SUV in the mask.
        centroid: voxel centroid, ``(y, x)`` or ``(z, y, x)``.
        threshold: the SUV threshold that defined it.
        background: the local background SUV.
    """

    mask: np.ndarray
    volume_voxels: int
    mean_suv: float
    max_suv: float
    centroid: tuple[float, ...]
    threshold: float
    background: float


def _inplane_structure(ndim: int) -> np.ndarray:
    st = ndimage.generate_binary_structure(2, 1)
    return st if ndim == 2 else st[None]


def segment_lesions(suv: np.ndarray, config: SegmentationConfig | None = None) -> list[Lesion]:
    """Segment hot lesions in an SUV image.

    Args:
        suv: ``(H, W)`` or ``(Z, H, W)`` uptake image in SUV (or any ratio-scaled uptake unit).
        config: thresholds; :class:`SegmentationConfig()` by default.

    Returns:
        Lesions, strongest peak first.

    Raises:
        ValueError: wrong dimensionality or non-finite values.
    """
    cfg = config if config is not None else SegmentationConfig()
    suv = np.asarray(suv, dtype=np.float32)
    if suv.ndim not in (2, 3):
        raise ValueError(f"suv must have shape (H, W) or (Z, H, W); got {suv.shape}")
    if not np.isfinite(suv).all():
        raise ValueError("suv contains NaN or infinite values")
    if cfg.smooth_sigma_vox > 0:
        sigma = [0.0] * (suv.ndim - 2) + [cfg.smooth_sigma_vox] * 2
        s = ndimage.gaussian_filter(suv, sigma)
    else:
        s = suv
    p99 = float(np.percentile(s, 99))
    if p99 <= 0:
        return []
    tissue = s > 0.2 * p99
    ref = float(np.median(s[tissue]))
    seed_thr = max(cfg.min_suv, cfg.peak_to_reference * ref)
    connectivity = ndimage.generate_binary_structure(suv.ndim, 1)
    seeds, n_seeds = ndimage.label(s > seed_thr, structure=connectivity)
    if n_seeds == 0:
        return []
    peaks = ndimage.maximum(s, seeds, index=np.arange(1, n_seeds + 1))
    claimed = np.zeros(suv.shape, dtype=bool)
    inplane = _inplane_structure(suv.ndim)
    lesions: list[Lesion] = []
    for idx in np.argsort(-np.asarray(peaks)):
        seed = seeds == idx + 1
        peak_pos = np.unravel_index(np.argmax(np.where(seed, s, -np.inf)), s.shape)
        if claimed[peak_pos]:
            continue
        peak = float(s[peak_pos])
        inner = ndimage.binary_dilation(seed, inplane, iterations=cfg.shell_inner) if cfg.shell_inner else seed
        outer = ndimage.binary_dilation(seed, inplane, iterations=cfg.shell_outer)
        shell = outer & ~inner
        bg = float(np.median(s[shell])) if shell.any() else 0.0
        thr = max(cfg.min_suv, bg + cfg.relative_threshold * (peak - bg))
        comps, _ = ndimage.label(s > thr, structure=connectivity)
        region = (comps == comps[peak_pos]) & ~claimed
        n = int(region.sum())
        claimed |= region
        if n < cfg.min_voxels:
            continue
        values = suv[region]
        lesions.append(
            Lesion(
                mask=region,
                volume_voxels=n,
                mean_suv=float(values.mean()),
                max_suv=float(values.max()),
                centroid=tuple(float(c) for c in np.argwhere(region).mean(axis=0)),
                threshold=thr,
                background=bg,
            )
        )
    return lesions
