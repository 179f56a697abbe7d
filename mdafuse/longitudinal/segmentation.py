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
5. Adaptive rule (``method="adaptive"``, the default, used when ``psf_fwhm_mm`` and ``voxel_mm``
   are known; otherwise steps 1-4 apply unchanged): starting from step 3's region, iterate
   (``model_iterations``) (a) background = median SUV in a shell ``background_shell_fwhm`` (1.5-2.5)
   PSF FWHMs out from the region (in mm, 3-D; other lesions left out), beyond the lesion's blurred
   tail, which biased the 2-5 voxel shell upwards on fine grids; (b) the region's
   equivalent-sphere radius ``R``; (c) threshold ``bg + t(R) (peak' - bg)`` with ``t(R)`` the value
   at the surface of a uniform sphere of radius ``R`` blurred by the PSF combined with the voxel
   integration (``v / sqrt 12``) and the smoothing, relative to its centre value
   (:func:`sphere_edge_fraction`: 0.5 for large lesions, about 0.38-0.42 at 1-2 FWHM where a
   fixed 45 % cut 10-18 % of the volume, up to 0.6 below 1 FWHM), and ``peak'`` the peak
   refined by a parabola through the hottest voxel's neighbours (the hottest voxel lies up to half
   a voxel off the true maximum). Chosen over the fixed fraction and the model of step 4 by
   ``benchmarks/lesion_accuracy.py`` (results: ``benchmarks/results/lesion_accuracy.md``).

Each lesion also carries its SUVpeak (:func:`suv_peak`, PERCIST's 1 ml sphere, highest over
centres inside the lesion), its volume in mm^3, and ``volume_reliable``: False below the size limit
measured by that benchmark (:data:`RELIABLE_DIAMETER_FWHM`, :data:`RELIABLE_DIAMETER_VOXELS`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special

__all__ = ["SegmentationConfig", "Lesion", "segment_lesions", "suv_peak", "sphere_edge_fraction", "FWHM_TO_SIGMA", "RELIABLE_DIAMETER_FWHM", "RELIABLE_DIAMETER_VOXELS", "PEAK_SPHERE_ML"]

#: Smallest equivalent-sphere diameter whose volume is trusted, in PSF FWHMs and in voxel edges
#: (a lesion must pass both). Measured, not guessed: ``size_limit`` in
#: benchmarks/lesion_accuracy.py, table "Size limit" in benchmarks/results/lesion_accuracy.md. From
#: this size up every tested class of the adaptive rule (1.5-6 mm voxels, 6 mm PSF, growing and
#: shrinking spheres) met the targets: median |volume error| <= 15 %, change error median <= 5 and
#: max <= 15 percentage points. Below it resolution (1.5 FWHM across: change errors up to 13 pp at
#: 1.5 mm voxels) or sampling (4-5 voxels across: change errors up to 25 pp) dominates.
RELIABLE_DIAMETER_FWHM = 1.6
RELIABLE_DIAMETER_VOXELS = 6.0

#: Volume of the SUVpeak sphere (ml), as in PERCIST (Wahl et al., J Nucl Med 2009).
PEAK_SPHERE_ML = 1.0

#: a Gaussian's sigma per unit of its full width at half maximum
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


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
        model_iterations: most refinements of the model-based threshold per lesion (both models).
        method: ``"adaptive"`` (default): the resolution-aware rule of step 5 when ``psf_fwhm_mm``
            and ``voxel_mm`` are both known, else the fixed rule; ``"fixed"``: always the fixed
            fraction (plus the ``psf_fwhm_vox`` model when given), the rule before step 5 existed.
        psf_fwhm_mm: FWHM (mm) of the scanner's isotropic point-spread function (e.g. 4-7 mm for
            brain PET). For PET resampled onto a finer grid (the MR's), include the PET voxel:
            about ``sqrt(fwhm^2 + (0.68 pet_voxel)^2)``. None: unknown (no adaptive threshold, no
            reliability judgement). An error of 1 mm cost about 1-2 percentage points of change
            error in the benchmark.
        voxel_mm: voxel size ``(dy, dx)`` or ``(dz, dy, dx)`` in mm; needed by the adaptive rule,
            ``suv_peak`` and ``volume_reliable``. None: unknown (sizes stay in voxels).
        background_shell_fwhm: inner and outer distance (in PSF FWHMs) from the lesion of the
            background shell of the adaptive rule.
        reliable_diameter_fwhm: smallest equivalent-sphere diameter, in PSF FWHMs, whose volume is
            trusted (``Lesion.volume_reliable``); measured by ``benchmarks/lesion_accuracy.py``.
        reliable_diameter_voxels: the same in voxel edges (cube root of the voxel volume; square
            root of the pixel area in 2-D); a lesion must pass both.
        interpolate_peak: adaptive rule only: take the peak as the vertex of a parabola through the
            hottest voxel and its neighbours (per axis) rather than the hottest voxel itself.
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
    method: str = "adaptive"
    psf_fwhm_mm: float | None = None
    voxel_mm: tuple[float, ...] | None = None
    background_shell_fwhm: tuple[float, float] = (1.5, 2.5)
    reliable_diameter_fwhm: float = RELIABLE_DIAMETER_FWHM
    reliable_diameter_voxels: float = RELIABLE_DIAMETER_VOXELS
    interpolate_peak: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.relative_threshold < 1:
            raise ValueError(f"relative_threshold must be in (0, 1); got {self.relative_threshold}")
        if self.min_suv < 0 or self.peak_to_reference <= 0 or self.min_voxels < 1 or self.smooth_sigma_vox < 0:
            raise ValueError("min_suv >= 0, peak_to_reference > 0, min_voxels >= 1 and smooth_sigma_vox >= 0 are required")
        if self.psf_fwhm_vox is not None and (len(self.psf_fwhm_vox) not in (2, 3) or min(self.psf_fwhm_vox) < 0):
            raise ValueError(f"psf_fwhm_vox must hold 2 or 3 values >= 0; got {self.psf_fwhm_vox}")
        if self.model_iterations < 0:
            raise ValueError(f"model_iterations must be >= 0; got {self.model_iterations}")
        if self.method not in ("adaptive", "fixed"):
            raise ValueError(f"method must be 'adaptive' or 'fixed'; got {self.method!r}")
        if self.psf_fwhm_mm is not None and not self.psf_fwhm_mm > 0:
            raise ValueError(f"psf_fwhm_mm must be > 0 or None; got {self.psf_fwhm_mm}")
        if self.voxel_mm is not None and (len(self.voxel_mm) not in (2, 3) or min(self.voxel_mm) <= 0):
            raise ValueError(f"voxel_mm must hold 2 or 3 values > 0; got {self.voxel_mm}")
        if not 0 <= self.background_shell_fwhm[0] < self.background_shell_fwhm[1]:
            raise ValueError(f"background_shell_fwhm must be (inner, outer) with 0 <= inner < outer; got {self.background_shell_fwhm}")
        if self.reliable_diameter_fwhm < 0 or self.reliable_diameter_voxels < 0:
            raise ValueError(f"reliable_diameter_fwhm and reliable_diameter_voxels must be >= 0; got {self.reliable_diameter_fwhm}, {self.reliable_diameter_voxels}")
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
        suv_peak: highest mean SUV in a 1 ml sphere centred in the lesion (:func:`suv_peak`); NaN
            when the voxel size is unknown.
        volume_mm3: volume in mm^3 (``volume_voxels`` times the voxel volume); NaN when the voxel
            size is unknown.
        volume_reliable: False when the lesion's equivalent-sphere diameter is below
            ``reliable_diameter_fwhm`` PSF FWHMs or ``reliable_diameter_voxels`` voxel edges, where
            the benchmark measured errors above target; True when the PSF or voxel size is unknown
            (not judged).
    """

    mask: np.ndarray
    volume_voxels: int
    mean_suv: float
    max_suv: float
    centroid: tuple[float, ...]
    threshold: float
    background: float
    suv_peak: float = math.nan
    volume_mm3: float = math.nan
    volume_reliable: bool = True


def _inplane_structure(ndim: int) -> np.ndarray:
    st = ndimage.generate_binary_structure(2, 1)
    return st if ndim == 2 else st[None]


def _model_sigma(cfg: SegmentationConfig, ndim: int) -> tuple[float, ...] | None:
    """Gaussian sigma (voxels, per axis) of the imaging PSF combined with the in-plane smoothing."""
    if cfg.psf_fwhm_vox is None:
        return None
    if len(cfg.psf_fwhm_vox) != ndim:
        raise ValueError(f"psf_fwhm_vox must have {ndim} values for a {ndim}-D image; got {cfg.psf_fwhm_vox}")
    sig = [f * FWHM_TO_SIGMA for f in cfg.psf_fwhm_vox]
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


@functools.lru_cache(maxsize=16)  # one kernel per voxel size: every lesion of a volume reuses it
def _sphere_kernel(voxel_mm: tuple[float, ...], radius_mm: float, supersample: int = 5) -> np.ndarray:
    """Weights (summing to 1) of the voxels covered by a sphere of ``radius_mm``: each voxel's covered fraction."""
    half = [int(math.ceil(radius_mm / v + 0.5)) for v in voxel_mm]
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    axes = []
    for h, v in zip(half, voxel_mm):
        centres = np.arange(-h, h + 1, dtype=np.float64)
        axes.append(((centres[:, None] + sub[None, :]) * v).ravel())  # (2h+1) * supersample points
    grids = np.meshgrid(*axes, indexing="ij")
    inside = sum(g**2 for g in grids) <= radius_mm**2
    shape = []
    for h in half:
        shape += [2 * h + 1, supersample]
    w = inside.reshape(shape).astype(np.float64)
    w = w.sum(axis=tuple(range(1, 2 * len(half), 2)))
    w /= w.sum()
    w.setflags(write=False)  # shared by every caller through the cache
    return w


def suv_peak(suv: np.ndarray, voxel_mm: tuple[float, ...], centre: tuple[int, ...], volume_ml: float = PEAK_SPHERE_ML) -> float:
    """Mean SUV in a sphere of ``volume_ml`` (1 ml: radius 6.2 mm) centred on voxel ``centre``.

    Each voxel is weighted by the fraction of it inside the sphere (5 points per axis); voxels
    outside the image are left out (weights renormalised).

    Args:
        suv: ``(H, W)`` or ``(Z, H, W)`` uptake image (for 2-D images the sphere's central disc).
        voxel_mm: voxel size per axis in mm, ``(dy, dx)`` or ``(dz, dy, dx)``.
        centre: voxel index of the sphere's centre.
        volume_ml: sphere volume in ml.

    Returns:
        The weighted mean SUV.
    """
    suv = np.asarray(suv)
    if len(voxel_mm) != suv.ndim or len(centre) != suv.ndim:
        raise ValueError(f"voxel_mm and centre must have {suv.ndim} values for shape {suv.shape}; got {voxel_mm}, {centre}")
    if min(voxel_mm) <= 0 or volume_ml <= 0:
        raise ValueError(f"voxel_mm and volume_ml must be > 0; got {voxel_mm}, {volume_ml}")
    radius = (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    k = _sphere_kernel(tuple(voxel_mm), radius)
    half = [(n - 1) // 2 for n in k.shape]
    src, ker = [], []
    for c, h, n in zip(centre, half, suv.shape):
        lo, hi = int(c) - h, int(c) + h + 1
        src.append(slice(max(lo, 0), min(hi, n)))
        ker.append(slice(max(lo, 0) - lo, 2 * h + 1 - (hi - min(hi, n))))
    w = k[tuple(ker)]
    return float((suv[tuple(src)].astype(np.float64) * w).sum() / w.sum())


def _peak_map(suv: np.ndarray, voxel_mm: tuple[float, ...], region: np.ndarray) -> tuple[float, tuple[int, ...]]:
    """Highest 1 ml sphere mean over centres inside ``region``, and its centre."""
    radius = (3.0 * PEAK_SPHERE_ML * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    k = _sphere_kernel(tuple(voxel_mm), radius)
    idx = np.nonzero(region)
    pad = [(n - 1) // 2 for n in k.shape]
    box = tuple(slice(max(0, int(i.min()) - p), min(n, int(i.max()) + p + 1)) for i, p, n in zip(idx, pad, region.shape))
    num = ndimage.convolve(suv[box].astype(np.float64), k, mode="constant")
    den = ndimage.convolve(np.ones(num.shape), k, mode="constant")  # renormalise at the image border
    means = np.where(region[box], num / den, -np.inf)
    pos = np.unravel_index(int(np.argmax(means)), means.shape)
    return float(means[pos]), tuple(int(p + b.start) for p, b in zip(pos, box))


def sphere_edge_fraction(radius_mm: float, sigma_mm: float) -> float:
    """Value at the surface of a uniform sphere blurred by a Gaussian, relative to its centre value.

    ``f(r)`` of a unit sphere of radius ``R`` convolved with a Gaussian of standard deviation ``s``
    (Hoetjes et al., Phys Med Biol 2010): ``f(0) = erf(R / s sqrt 2) - sqrt(2 / pi) (R / s)
    exp(-R^2 / 2 s^2)``, ``f(R) = erf(sqrt 2 R / s) / 2 - s / (R sqrt(2 pi)) (1 - exp(-2 R^2 / s^2))``;
    returns ``f(R) / f(0)`` (0.5 for ``s -> 0``, about 0.42 at R = 2 FWHM, 0.38 at 1 FWHM, 0.6 at 0.5 FWHM).
    """
    if radius_mm <= 0:
        raise ValueError(f"radius_mm must be > 0; got {radius_mm}")
    if sigma_mm <= 0:
        return 0.5
    q = radius_mm / sigma_mm
    f0 = math.erf(q / math.sqrt(2.0)) - math.sqrt(2.0 / math.pi) * q * math.exp(-0.5 * q * q)
    fr = 0.5 * math.erf(math.sqrt(2.0) * q) - (1.0 - math.exp(-2.0 * q * q)) / (q * math.sqrt(2.0 * math.pi))
    return fr / f0 if f0 > 0 else 0.95


def _disc_edge_fraction(radius_mm: float, sigma_mm: float) -> float:
    """2-D analogue of :func:`sphere_edge_fraction` (uniform disc), by quadrature over the disc's radius.

    ``f(r) = int_0^R rho / s^2 exp(-(r - rho)^2 / 2 s^2) i0e(r rho / s^2) d rho`` (``i0e`` the scaled
    Bessel function); returns ``f(R) / f(0)``.
    """
    if sigma_mm <= 0:
        return 0.5
    rho = (np.arange(400) + 0.5) * radius_mm / 400
    d = radius_mm / 400
    s2 = sigma_mm * sigma_mm
    f0 = float(np.sum(rho / s2 * np.exp(-(rho**2) / (2 * s2))) * d)
    fr = float(np.sum(rho / s2 * np.exp(-((radius_mm - rho) ** 2) / (2 * s2)) * special.i0e(radius_mm * rho / s2)) * d)
    return fr / f0 if f0 > 0 else 0.95


def _effective_sigma_mm(cfg: SegmentationConfig, voxel_mm: tuple[float, ...]) -> float:
    """Isotropic sigma (mm) of PSF, voxel integration (box: v / sqrt 12) and in-plane smoothing, averaged over axes."""
    assert cfg.psf_fwhm_mm is not None
    s_psf = cfg.psf_fwhm_mm * FWHM_TO_SIGMA
    per_axis = []
    for ax, v in enumerate(voxel_mm):
        inplane = ax >= len(voxel_mm) - 2
        smooth = cfg.smooth_sigma_vox * v if inplane else 0.0
        per_axis.append(math.sqrt(s_psf**2 + v * v / 12.0 + smooth**2))
    return float(np.mean(per_axis))


def _shell_background(s: np.ndarray, region: np.ndarray, voxel_mm: tuple[float, ...], inner_mm: float, outer_mm: float, exclude: np.ndarray) -> float | None:
    """Median of ``s`` at distances ``inner_mm..outer_mm`` from ``region`` (voxels in ``exclude`` left out)."""
    pad = [int(math.ceil(outer_mm / v)) + 1 for v in voxel_mm]
    idx = np.nonzero(region)
    box = tuple(slice(max(0, int(i.min()) - p), min(n, int(i.max()) + p + 1)) for i, p, n in zip(idx, pad, region.shape))
    dist = ndimage.distance_transform_edt(~region[box], sampling=voxel_mm)
    shell = (dist > inner_mm) & (dist <= outer_mm) & ~exclude[box]
    return float(np.median(s[box][shell])) if shell.any() else None


def _interpolated_peak(s: np.ndarray, pos: tuple[int, ...]) -> float:
    """Continuous maximum near voxel ``pos``: a parabola through the peak and its two neighbours, per axis.

    The sampled maximum lies up to half a voxel from the true one; with coarse voxels (6 mm against a
    6 mm PSF) that lowers it by several percent, and the threshold with it.
    """
    b = float(s[pos])
    gain = 0.0
    for ax in range(s.ndim):
        if not 0 < pos[ax] < s.shape[ax] - 1:
            continue
        lo, hi = list(pos), list(pos)
        lo[ax] -= 1
        hi[ax] += 1
        a, c = float(s[tuple(lo)]), float(s[tuple(hi)])
        curv = a + c - 2.0 * b
        if curv < 0:
            gain += -((c - a) ** 2) / (8.0 * curv)
    return b + gain


def _equivalent_diameter_mm(size_mm: float, ndim: int) -> float:
    """Diameter of the sphere (3-D, ``size_mm`` in mm^3) or disc (2-D, mm^2) of the same size."""
    if ndim == 3:
        return 2.0 * (3.0 * size_mm / (4.0 * math.pi)) ** (1.0 / 3.0)
    return 2.0 * math.sqrt(size_mm / math.pi)


def _adaptive(
    s: np.ndarray,
    cfg: SegmentationConfig,
    peak: float,
    peak_pos: tuple,
    thr: float,
    bg: float,
    region: np.ndarray,
    claimed: np.ndarray,
    thresholds: list[float],
    connectivity: np.ndarray,
) -> tuple[float, float, np.ndarray]:
    """Step 5 of the module docstring: returns the lesion's threshold, background and region."""
    assert cfg.psf_fwhm_mm is not None and cfg.voxel_mm is not None
    voxel = tuple(float(v) for v in cfg.voxel_mm)
    sigma = _effective_sigma_mm(cfg, voxel)
    inner, outer = (f * cfg.psf_fwhm_mm for f in cfg.background_shell_fwhm)
    edge = sphere_edge_fraction if s.ndim == 3 else _disc_edge_fraction
    top = _interpolated_peak(s, peak_pos) if cfg.interpolate_peak else peak
    background = [bg]

    def threshold_of(region: np.ndarray) -> tuple[float, float]:
        shell_bg = _shell_background(s, region, voxel, inner, outer, claimed > 0)
        if shell_bg is not None and shell_bg < peak:
            background[0] = shell_bg
        radius = 0.5 * _equivalent_diameter_mm(float(region.sum()) * float(np.prod(voxel)), s.ndim)
        return max(cfg.min_suv, background[0] + edge(radius, sigma) * (top - background[0])), peak - background[0]

    thr, region = _refine(s, peak_pos, thr, region, threshold_of, max(1, cfg.model_iterations), claimed, thresholds, connectivity)
    return thr, background[0], region


def _refine(s, peak_pos, thr, region, threshold_of, iterations, claimed, thresholds, connectivity) -> tuple[float, np.ndarray]:
    """Fixed point of threshold -> region -> threshold, at most ``iterations`` steps.

    ``threshold_of(region)`` gives the next threshold and the contrast (peak - background) that
    scales the convergence tolerance.
    """
    for _ in range(iterations):
        if not region.any():
            break
        new_thr, contrast = threshold_of(region)
        if abs(new_thr - thr) < 1e-3 * contrast:
            break
        thr = new_thr
        new_region = _grow(s, peak_pos, thr, claimed, thresholds, connectivity)
        if np.array_equal(new_region, region):
            break
        region = new_region
    return thr, region


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
    voxel = cfg.voxel_mm
    if voxel is not None and len(voxel) != suv.ndim:
        raise ValueError(f"voxel_mm must have {suv.ndim} values for a {suv.ndim}-D image; got {voxel}")
    adaptive = cfg.method == "adaptive" and cfg.psf_fwhm_mm is not None and voxel is not None
    voxel_volume = float(np.prod(voxel)) if voxel is not None else math.nan
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
        if adaptive and peak > bg:
            thr, bg, region = _adaptive(s, cfg, peak, peak_pos, thr, bg, region, claimed, thresholds, connectivity)
        elif model_sigma is not None and peak > bg:
            def threshold_of(region: np.ndarray, bg: float = bg, peak: float = peak) -> tuple[float, float]:
                return max(cfg.min_suv, bg + _model_fraction(region, model_sigma) * (peak - bg)), peak - bg

            thr, region = _refine(s, peak_pos, thr, region, threshold_of, cfg.model_iterations, claimed, thresholds, connectivity)
        n = int(region.sum())
        thresholds.append(thr)
        claimed[region] = len(thresholds)
        if n < cfg.min_voxels:
            continue
        values = suv[region]
        reliable = True
        if voxel is not None and cfg.psf_fwhm_mm is not None:
            edge = voxel_volume ** (1.0 / suv.ndim)
            limit = max(cfg.reliable_diameter_fwhm * cfg.psf_fwhm_mm, cfg.reliable_diameter_voxels * edge)
            reliable = _equivalent_diameter_mm(n * voxel_volume, suv.ndim) >= limit
        lesions.append(
            Lesion(
                mask=region,
                volume_voxels=n,
                mean_suv=float(values.mean()),
                max_suv=float(values.max()),
                centroid=tuple(float(c) for c in np.argwhere(region).mean(axis=0)),
                threshold=thr,
                background=bg,
                suv_peak=_peak_map(suv, voxel, region)[0] if voxel is not None else math.nan,
                volume_mm3=n * voxel_volume,
                volume_reliable=reliable,
            )
        )
    return lesions
