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
   If the component at a seed's threshold reaches a stronger (already segmented) lesion, the seed
   lies in that lesion's blurred tail or is a lobe of it: its threshold is raised to the stronger
   lesion's and the component recomputed (empty if the peak is below it). Without this, a weak
   peak's lower threshold annexed the halo of the main tumour (seen on glioblastoma anatomy with
   6 mm PET, where it turned shrinkage into growth).
4. Optional partial-volume model (``psf_fwhm_vox`` set; an iterative, model-based threshold in the
   spirit of Jentzen et al., J Nucl Med 2007): the lesion's indicator is blurred with the known
   PSF (combined with the smoothing) and the fraction ``t`` is chosen so that thresholding that
   blurred indicator at ``t * max`` keeps as many voxels as the lesion has; the lesion is
   re-thresholded at ``bg + t (peak - bg)`` until it stops changing (``model_iterations``). For a
   large lesion ``t`` stays near 0.5; for lesions near the resolution it rises, removing the
   overestimate of a fixed fraction (a 6-voxel-FWHM blurred disc of 29 voxels: 45 -> 25 voxels).
"""

from __future__ import annotations

import math
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
        psf_fwhm_vox: FWHM of the imaging point-spread function in voxels per axis (``(y, x)`` or
            ``(z, y, x)``). When given, each lesion's threshold fraction is refined by the
            partial-volume model (module docstring, step 4); None keeps ``relative_threshold``.
        model_iterations: most refinements of the model-based threshold per lesion.
    """

    min_suv: float = 2.5
    peak_to_reference: float = 3.0
    relative_threshold: float = 0.45
    min_voxels: int = 5
    smooth_sigma_vox: float = 0.7
    shell_inner: int = 2
    shell_outer: int = 5
    psf_fwhm_vox: tuple[float, ...] | None = None
    model_iterations: int = 6

    def __post_init__(self) -> None:
        if not 0 < self.relative_threshold < 1:
            raise ValueError(f"relative_threshold must be in (0, 1); got {self.relative_threshold}")
        if self.min_suv < 0 or self.peak_to_reference <= 0 or self.min_voxels < 1 or self.smooth_sigma_vox < 0:
            raise ValueError("min_suv >= 0, peak_to_reference > 0, min_voxels >= 1 and smooth_sigma_vox >= 0 are required")
        if self.psf_fwhm_vox is not None and (len(self.psf_fwhm_vox) not in (2, 3) or min(self.psf_fwhm_vox) < 0):
            raise ValueError(f"psf_fwhm_vox must hold 2 or 3 values >= 0; got {self.psf_fwhm_vox}")
        if self.model_iterations < 0:
            raise ValueError(f"model_iterations must be >= 0; got {self.model_iterations}")
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


def _model_sigma(cfg: SegmentationConfig, ndim: int) -> tuple[float, ...] | None:
    """Gaussian sigma (voxels, per axis) of the imaging PSF combined with the in-plane smoothing."""
    if cfg.psf_fwhm_vox is None:
        return None
    if len(cfg.psf_fwhm_vox) != ndim:
        raise ValueError(f"psf_fwhm_vox must have {ndim} values for a {ndim}-D image; got {cfg.psf_fwhm_vox}")
    k = 2.0 * math.sqrt(2.0 * math.log(2.0))
    sig = [f / k for f in cfg.psf_fwhm_vox]
    for ax in (-2, -1):
        sig[ax] = math.hypot(sig[ax], cfg.smooth_sigma_vox)
    return tuple(sig)


def _grow(s: np.ndarray, peak_pos: tuple, thr: float, claimed: np.ndarray, thresholds: list[float], connectivity: np.ndarray) -> np.ndarray:
    """Connected component of ``s > thr`` holding ``peak_pos``, minus voxels of stronger lesions.

    If that component reaches a stronger lesion, the seed sits in that lesion's blurred tail (or is a
    lobe of it): the threshold is raised to the stronger lesion's, so a weak peak next to a strong
    one cannot annex the strong lesion's halo with its lower threshold.
    """
    comps, _ = ndimage.label(s > thr, structure=connectivity)
    comp = comps == comps[peak_pos]
    owners = np.unique(claimed[comp])
    owners = owners[owners > 0]
    if owners.size:
        floor = max(thresholds[o - 1] for o in owners)
        if floor > thr:
            comps, _ = ndimage.label(s > floor, structure=connectivity)
            comp = comps == comps[peak_pos] if s[peak_pos] > floor else np.zeros_like(comp)
    return comp & (claimed == 0)


def _model_fraction(region: np.ndarray, sigma: tuple[float, ...]) -> float:
    """Threshold fraction that reproduces ``region``'s volume from its own blurred indicator.

    The indicator of ``region`` is blurred with the PSF (``sigma`` voxels); the fraction ``t`` is
    the value, relative to the blurred maximum, of the ``n``-th largest blurred voxel (``n`` = the
    region's size), so thresholding the blurred indicator at ``t * max`` gives ``n`` voxels.
    """
    pad = [int(math.ceil(4 * sg)) + 1 for sg in sigma]
    idx = np.nonzero(region)
    box = tuple(slice(max(0, int(i.min()) - p), min(n, int(i.max()) + p + 1)) for i, p, n in zip(idx, pad, region.shape))
    sub = region[box].astype(np.float32)
    blurred = ndimage.gaussian_filter(sub, sigma, mode="constant")
    n = int(region.sum())
    top = np.partition(blurred.ravel(), blurred.size - n)[blurred.size - n]
    peak = float(blurred.max())
    return float(np.clip(top / peak, 0.05, 0.95)) if peak > 0 else 0.5


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
    claimed = np.zeros(suv.shape, dtype=np.int32)  # 0 free, else 1 + index into ``thresholds``
    thresholds: list[float] = []
    inplane = _inplane_structure(suv.ndim)
    model_sigma = _model_sigma(cfg, suv.ndim)
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
        region = _grow(s, peak_pos, thr, claimed, thresholds, connectivity)
        if model_sigma is not None and peak > bg:
            for _ in range(cfg.model_iterations):
                if not region.any():
                    break
                frac = _model_fraction(region, model_sigma)
                new_thr = max(cfg.min_suv, bg + frac * (peak - bg))
                if abs(new_thr - thr) < 1e-3 * (peak - bg):
                    break
                thr = new_thr
                new_region = _grow(s, peak_pos, thr, claimed, thresholds, connectivity)
                if np.array_equal(new_region, region):
                    break
                region = new_region
        n = int(region.sum())
        thresholds.append(thr)
        claimed[region] = len(thresholds)
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
