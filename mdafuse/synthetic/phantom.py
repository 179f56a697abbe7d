"""A synthetic longitudinal brain MR + PET phantom with known lesion changes and misalignment.

:func:`make_longitudinal_phantom` builds one subject imaged at several time points. Every time
point holds

* a T1-like MR image in [0, 1]: scalp fat (bright), skull (dark), CSF, a grey-matter ribbon with a
  gyral (wavy) grey/white boundary, white matter (brightest brain tissue), deep grey nuclei and two
  lateral ventricles, with mild partial-volume blur and Gaussian noise;
* a PET image in SUV units: grey matter 7 (cortex) / 6.5 (deep nuclei), white matter 2.5, CSF 0.5,
  scalp 1.0, skull 0.3, air 0, plus the lesions (uniform uptake, replacing the tissue value),
  blurred to the PET resolution (``pet_fwhm_mm``) and given Poisson-like noise
  ``sigma = pet_noise * sqrt(SUV)``;
* the lesion label image (0 background, ``k`` for lesion ``k``), in the time point's own frame;
* the rigid transform from the time point-0 frame to this time point's frame
  (:class:`mdafuse.longitudinal.transform.RigidTransform`: in-plane rotation about the grid centre
  plus a shift; time point 0 is the identity).

Geometry is analytic: anatomy and lesions are defined in millimetres relative to the centre of the
field of view, and each time point is rendered directly on its own (moved) grid, so no
interpolation error is baked into the images. The z-shift is a whole number of slices by default
(thick slices make sub-slice shifts unrecoverable by any registration).

Lesion truth (:class:`LesionTruth`) is measured in the time point-0 frame on the noise-free,
blurred PET, inside the exact lesion label: voxel count, physical size, mean and max SUV, and the
centroid. ``nominal_suv`` and ``radius_mm`` are the generating values. Lesion ``k`` at time point
``t`` has radius ``radius_mm * (1 + radius_change) ** t`` and SUV ``suv * (1 + suv_change) ** t``,
at the time points where it exists (``appear_at <= t < disappear_at``; a lesion that does not exist
at a time point has no truth row there). :data:`COME_AND_GO_LESIONS` adds an appearing and a
vanishing lesion to the defaults.

Everything is deterministic for a given ``seed`` (the seed drives the misalignment and the noise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from mdafuse.longitudinal.segmentation import FWHM_TO_SIGMA
from mdafuse.longitudinal.transform import RigidTransform

__all__ = [
    "LesionSpec",
    "PhantomConfig",
    "PhantomTimepoint",
    "LesionTruth",
    "LongitudinalPhantom",
    "make_longitudinal_phantom",
    "COME_AND_GO_LESIONS",
    "TISSUE_SUV",
    "TISSUE_T1",
]

logger = logging.getLogger(__name__)

#: PET uptake (SUV) per tissue class before blurring.
TISSUE_SUV: dict[str, float] = {
    "air": 0.0,
    "scalp": 1.0,
    "skull": 0.3,
    "csf": 0.5,
    "grey": 7.0,
    "deep_grey": 6.5,
    "white": 2.5,
}

#: T1-weighted MR intensity per tissue class (lesions use ``lesion``: slightly hypo-intense).
TISSUE_T1: dict[str, float] = {
    "air": 0.0,
    "scalp": 0.85,
    "skull": 0.08,
    "csf": 0.15,
    "grey": 0.50,
    "deep_grey": 0.55,
    "white": 0.75,
    "lesion": 0.40,
}


@dataclass(frozen=True)
class LesionSpec:
    """One lesion: a sphere (in millimetres) whose radius and uptake change geometrically.

    Attributes:
        center_mm: ``(z, y, x)`` centre in mm relative to the field-of-view centre (time point-0
            frame). ``z`` is ignored for single-slice phantoms (the slice is at ``z = 0``).
        radius_mm: radius at time point 0.
        radius_change: fractional change of the radius per time point (``0.15`` = +15 %).
        suv: uniform lesion SUV at time point 0.
        suv_change: fractional change of the SUV per time point.
        appear_at: first time point at which the lesion exists (0: from the baseline; 1: a new
            lesion at the first follow-up). Radius and SUV still count from time point 0.
        disappear_at: first time point at which it no longer exists (None: never; 1: it resolves
            at the first follow-up).
    """

    center_mm: tuple[float, float, float]
    radius_mm: float
    radius_change: float
    suv: float
    suv_change: float
    appear_at: int = 0
    disappear_at: int | None = None

    def present_at(self, t: int) -> bool:
        """Whether the lesion exists at time point ``t``."""
        return t >= self.appear_at and (self.disappear_at is None or t < self.disappear_at)

    def radius_at(self, t: int) -> float:
        return self.radius_mm * (1.0 + self.radius_change) ** t

    def suv_at(self, t: int) -> float:
        return self.suv * (1.0 + self.suv_change) ** t


_DEFAULT_LESIONS = (
    # A growing, increasingly avid lesion in the left frontal white matter.
    LesionSpec(center_mm=(0.0, -38.0, -30.0), radius_mm=9.0, radius_change=0.15, suv=13.0, suv_change=0.10),
    # A responding (shrinking, less avid) lesion in the right posterior white matter.
    LesionSpec(center_mm=(0.0, 36.0, 30.0), radius_mm=8.0, radius_change=-0.12, suv=15.0, suv_change=-0.12),
)

#: The default lesions plus one that appears at time point 1 (right frontal white matter) and one
#: that is gone from time point 1 (left posterior white matter): ``PhantomConfig(lesions=COME_AND_GO_LESIONS)``.
COME_AND_GO_LESIONS = _DEFAULT_LESIONS + (
    LesionSpec(center_mm=(0.0, -36.0, 28.0), radius_mm=8.0, radius_change=0.0, suv=14.0, suv_change=0.0, appear_at=1),
    LesionSpec(center_mm=(0.0, 34.0, -28.0), radius_mm=8.0, radius_change=0.0, suv=14.0, suv_change=0.0, disappear_at=1),
)


@dataclass(frozen=True)
class PhantomConfig:
    """Parameters of the phantom (all lengths in millimetres unless stated).

    Attributes:
        fov_mm: in-plane field of view; the in-plane voxel size is ``fov_mm / W`` (and ``/ H``).
        slice_mm: slice thickness (volumes only).
        lesions: the lesions (see :class:`LesionSpec`).
        max_shift_vox: largest in-plane shift (uniform in ``[-max, max]`` per axis), voxels.
        max_shift_z_vox: largest z-shift in whole slices (volumes only).
        max_rotation_deg: largest in-plane rotation (uniform in ``[-max, max]``), degrees.
        mr_noise: standard deviation of the MR noise (intensity units).
        mr_blur_vox: Gaussian sigma (in-plane voxels) of the MR partial-volume blur.
        pet_fwhm_mm: in-plane FWHM of the PET point-spread function; the z blur uses the same
            FWHM in mm (so it is smaller in slices).
        pet_noise: PET noise scale; the noise sigma is ``pet_noise * sqrt(SUV)``.
    """

    fov_mm: float = 192.0
    slice_mm: float = 5.0
    lesions: tuple[LesionSpec, ...] = field(default=_DEFAULT_LESIONS)
    max_shift_vox: float = 3.0
    max_shift_z_vox: int = 1
    max_rotation_deg: float = 4.0
    mr_noise: float = 0.02
    mr_blur_vox: float = 0.6
    pet_fwhm_mm: float = 4.0
    pet_noise: float = 0.05

    def __post_init__(self) -> None:
        if self.fov_mm <= 0 or self.slice_mm <= 0:
            raise ValueError(f"fov_mm and slice_mm must be positive; got {self.fov_mm}, {self.slice_mm}")
        if not self.lesions:
            raise ValueError("lesions must hold at least one LesionSpec")
        for k, les in enumerate(self.lesions):
            if les.radius_mm <= 0 or les.suv <= 0 or les.radius_change <= -1 or les.suv_change <= -1:
                raise ValueError(f"lesion {k + 1}: radius_mm and suv must be positive and changes > -1; got {les}")
            if les.appear_at < 0 or (les.disappear_at is not None and les.disappear_at <= les.appear_at):
                raise ValueError(f"lesion {k + 1}: need 0 <= appear_at < disappear_at; got {les.appear_at}, {les.disappear_at}")
        if self.max_shift_vox < 0 or self.max_shift_z_vox < 0 or self.max_rotation_deg < 0:
            raise ValueError("max_shift_vox, max_shift_z_vox and max_rotation_deg must be >= 0")
        if self.mr_noise < 0 or self.pet_noise < 0 or self.pet_fwhm_mm < 0 or self.mr_blur_vox < 0:
            raise ValueError("noise levels and blur widths must be >= 0")


@dataclass(frozen=True)
class PhantomTimepoint:
    """One time point of the phantom, in its own (misaligned) frame.

    Attributes:
        index: time point number (0 is the baseline and the reference frame).
        mr: ``(H, W)`` or ``(Z, H, W)`` float32 T1-like MR in [0, 1].
        suv: same shape, float32 PET in SUV units (>= 0).
        lesion_labels: same shape, int32 lesion labels (0 background, ``k`` for lesion ``k``).
        transform: reference (time point 0) frame -> this frame.
    """

    index: int
    mr: np.ndarray
    suv: np.ndarray
    lesion_labels: np.ndarray
    transform: RigidTransform

    @property
    def angle_deg(self) -> float:
        return self.transform.angle_deg

    @property
    def shift_vox(self) -> tuple[float, ...]:
        return self.transform.shift


@dataclass(frozen=True)
class LesionTruth:
    """Ground truth for one lesion at one time point, measured in the time point-0 frame.

    Attributes:
        lesion_id: 1-based lesion number (its label value).
        timepoint: time point number.
        volume_voxels: voxels inside the lesion (pixels for single-slice phantoms).
        physical_size: ``volume_voxels`` times the voxel volume: ml for volumes, mm^2 for slices.
        physical_unit: ``"ml"`` or ``"mm2"``.
        mean_suv: mean of the noise-free blurred PET inside the lesion.
        max_suv: maximum of the noise-free blurred PET inside the lesion.
        nominal_suv: the uniform SUV the lesion was generated with.
        radius_mm: the generating radius.
        centroid: ``(z, y, x)`` or ``(y, x)`` voxel centroid in the time point-0 frame.
    """

    lesion_id: int
    timepoint: int
    volume_voxels: int
    physical_size: float
    physical_unit: str
    mean_suv: float
    max_suv: float
    nominal_suv: float
    radius_mm: float
    centroid: tuple[float, ...]


@dataclass(frozen=True)
class LongitudinalPhantom:
    """The phantom: time points, lesion truth and voxel size.

    Attributes:
        timepoints: one :class:`PhantomTimepoint` per time point, in order.
        truth: one :class:`LesionTruth` per (lesion, time point), ordered by time point then lesion.
        voxel_size_mm: ``(dz, dy, dx)`` for volumes, ``(dy, dx)`` for slices.
        config: the configuration used.
    """

    timepoints: tuple[PhantomTimepoint, ...]
    truth: tuple[LesionTruth, ...]
    voxel_size_mm: tuple[float, ...]
    config: PhantomConfig

    def truth_for(self, lesion_id: int, timepoint: int) -> LesionTruth:
        """The truth row of one lesion at one time point (``KeyError`` when absent)."""
        for row in self.truth:
            if row.lesion_id == lesion_id and row.timepoint == timepoint:
                return row
        raise KeyError(f"no truth for lesion {lesion_id} at time point {timepoint}")


def _tissue_maps(zmm: np.ndarray, ymm: np.ndarray, xmm: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean tissue masks at the given mm coordinates (all arrays the same shape)."""
    # Head: an ellipsoid, longer front-to-back (y) than left-right (x); z is nearly flat over a slab.
    r = np.sqrt((ymm / 90.0) ** 2 + (xmm / 74.0) ** 2 + (zmm / 85.0) ** 2)
    phi = np.arctan2(ymm, xmm)
    gm_wm = 0.74 + 0.035 * np.sin(9.0 * phi) + 0.02 * np.sin(5.0 * phi + 1.0)
    head = r <= 1.0
    scalp = head & (r > 0.95)
    skull = (r > 0.89) & (r <= 0.95)
    csf_rim = (r > 0.86) & (r <= 0.89)
    brain = r <= 0.86
    grey = brain & (r > gm_wm)
    white = brain & (r <= gm_wm)
    vent = np.zeros_like(head)
    deep = np.zeros_like(head)
    for side in (-1.0, 1.0):
        vent |= ((ymm + 8.0) / 26.0) ** 2 + ((xmm - side * 11.0) / 6.0) ** 2 + (zmm / 22.0) ** 2 <= 1.0
        deep |= ((ymm - 22.0) / 11.0) ** 2 + ((xmm - side * 13.0) / 8.5) ** 2 + (zmm / 14.0) ** 2 <= 1.0
    vent &= white
    deep &= white & ~vent
    white = white & ~vent & ~deep
    return {
        "scalp": scalp,
        "skull": skull,
        "csf": csf_rim | vent,
        "grey": grey,
        "deep_grey": deep,
        "white": white,
    }


def _grid_mm(shape: tuple[int, ...], voxel: tuple[float, ...], transform: RigidTransform) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference-frame mm coordinates of each voxel of a time point rendered with ``transform``."""
    grid = np.indices(shape, dtype=np.float64)
    ref = transform.inverse().apply(grid, shape)
    cy, cx = (shape[-2] - 1) / 2.0, (shape[-1] - 1) / 2.0
    ymm = (ref[-2] - cy) * voxel[-2]
    xmm = (ref[-1] - cx) * voxel[-1]
    if len(shape) == 3:
        zmm = (ref[0] - (shape[0] - 1) / 2.0) * voxel[0]
    else:
        zmm = np.zeros_like(ymm)
    return zmm, ymm, xmm


def _render(
    shape: tuple[int, ...], voxel: tuple[float, ...], transform: RigidTransform, t: int, cfg: PhantomConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise-free, unblurred T1, SUV and lesion labels of time point ``t`` on its own grid."""
    zmm, ymm, xmm = _grid_mm(shape, voxel, transform)
    tissues = _tissue_maps(zmm, ymm, xmm)
    t1 = np.zeros(shape, dtype=np.float64)
    suv = np.zeros(shape, dtype=np.float64)
    for name, mask in tissues.items():
        t1[mask] = TISSUE_T1[name]
        suv[mask] = TISSUE_SUV[name]
    labels = np.zeros(shape, dtype=np.int32)
    for k, les in enumerate(cfg.lesions, start=1):
        if not les.present_at(t):
            continue
        cz = les.center_mm[0] if len(shape) == 3 else 0.0
        d2 = (zmm - cz) ** 2 + (ymm - les.center_mm[1]) ** 2 + (xmm - les.center_mm[2]) ** 2
        inside = d2 <= les.radius_at(t) ** 2
        labels[inside] = k
        t1[inside] = TISSUE_T1["lesion"]
        suv[inside] = les.suv_at(t)
    return t1, suv, labels


def _pet_blur(suv: np.ndarray, voxel: tuple[float, ...], fwhm_mm: float) -> np.ndarray:
    if fwhm_mm <= 0:
        return suv
    sigma = [fwhm_mm * FWHM_TO_SIGMA / v for v in voxel]
    return ndimage.gaussian_filter(suv, sigma=sigma, mode="constant")


def make_longitudinal_phantom(
    timepoints: int = 3,
    shape: tuple[int, ...] = (24, 128, 128),
    seed: int = 0,
    config: PhantomConfig | None = None,
) -> LongitudinalPhantom:
    """Build a longitudinal MR + PET phantom with known lesion change and misalignment.

    Args:
        timepoints: number of time points (>= 1); time point 0 is the reference frame.
        shape: ``(Z, Y, X)`` for a volume or ``(Y, X)`` for a single axial slice through the
            lesion centres (``z = 0``). In-plane sizes must be >= 32, Z >= 1.
        seed: seed of the local random generator (misalignment and noise).
        config: phantom parameters; defaults to :class:`PhantomConfig()` (two lesions: one growing
            +15 % radius and +10 % SUV per time point from SUV 13, one shrinking -12 % radius and -12 %
            SUV per time point from SUV 15; both above the grey-matter SUV 7 at every time point).

    Returns:
        A :class:`LongitudinalPhantom`. ``voxel_size_mm`` is ``(slice_mm, fov/Y, fov/X)`` for
        volumes and ``(fov/Y, fov/X)`` for slices.

    Raises:
        ValueError: bad ``timepoints`` or ``shape``.
    """
    cfg = config if config is not None else PhantomConfig()
    if not isinstance(timepoints, (int, np.integer)) or timepoints < 1:
        raise ValueError(f"timepoints must be an integer >= 1; got {timepoints!r}")
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape[-2:]) < 32 or min(shape) < 1:
        raise ValueError(f"shape must be (Y, X) or (Z, Y, X) with Y, X >= 32; got {shape}")
    ndim = len(shape)
    voxel: tuple[float, ...] = (cfg.fov_mm / shape[-2], cfg.fov_mm / shape[-1])
    if ndim == 3:
        voxel = (cfg.slice_mm, *voxel)
    rng = np.random.default_rng(seed)
    voxel_volume = float(np.prod(voxel))

    tps: list[PhantomTimepoint] = []
    truth: list[LesionTruth] = []
    for t in range(timepoints):
        if t == 0:
            transform = RigidTransform.identity(ndim)
        else:
            angle = float(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg))
            dy, dx = (float(v) for v in rng.uniform(-cfg.max_shift_vox, cfg.max_shift_vox, size=2))
            shift: tuple[float, ...] = (dy, dx)
            if ndim == 3:
                shift = (float(rng.integers(-cfg.max_shift_z_vox, cfg.max_shift_z_vox + 1)), dy, dx)
            transform = RigidTransform(angle, shift)

        t1, suv, labels = _render(shape, voxel, transform, t, cfg)
        mr_sigma = [0.0, cfg.mr_blur_vox, cfg.mr_blur_vox] if ndim == 3 else cfg.mr_blur_vox
        mr = ndimage.gaussian_filter(t1, sigma=mr_sigma) if cfg.mr_blur_vox > 0 else t1
        mr = np.clip(mr + rng.normal(0.0, cfg.mr_noise, size=shape), 0.0, 1.0)
        pet = _pet_blur(suv, voxel, cfg.pet_fwhm_mm)
        pet = np.clip(pet + cfg.pet_noise * np.sqrt(np.clip(pet, 0.0, None)) * rng.standard_normal(shape), 0.0, None)
        tps.append(
            PhantomTimepoint(
                index=t,
                mr=mr.astype(np.float32),
                suv=pet.astype(np.float32),
                lesion_labels=labels,
                transform=transform,
            )
        )

        # Truth in the reference frame, on the noise-free blurred PET.
        _, suv_ref, labels_ref = _render(shape, voxel, RigidTransform.identity(ndim), t, cfg)
        pet_ref = _pet_blur(suv_ref, voxel, cfg.pet_fwhm_mm)
        for k, les in enumerate(cfg.lesions, start=1):
            if not les.present_at(t):
                continue
            inside = labels_ref == k
            n = int(inside.sum())
            if n == 0:
                logger.warning("lesion %d is not visible at time point %d (outside the field of view)", k, t)
                continue
            centroid = tuple(float(c) for c in np.argwhere(inside).mean(axis=0))
            size = n * voxel_volume / 1000.0 if ndim == 3 else n * voxel_volume
            truth.append(
                LesionTruth(
                    lesion_id=k,
                    timepoint=t,
                    volume_voxels=n,
                    physical_size=float(size),
                    physical_unit="ml" if ndim == 3 else "mm2",
                    mean_suv=float(pet_ref[inside].mean()),
                    max_suv=float(pet_ref[inside].max()),
                    nominal_suv=float(les.suv_at(t)),
                    radius_mm=float(les.radius_at(t)),
                    centroid=centroid,
                )
            )
    return LongitudinalPhantom(timepoints=tuple(tps), truth=tuple(truth), voxel_size_mm=voxel, config=cfg)
