"""Rigid registration of a follow-up MR onto the baseline MR (numpy + scipy only).

Model: the :class:`~mdafuse.longitudinal.transform.RigidTransform` of this package, in-plane
rotation about the grid centre plus a translation (2-D: ``dy, dx``; 3-D: ``dz, dy, dx``). For
volumes the rotation is in-plane only (about the slice axis), which covers head repositioning in
the scanner plane; out-of-plane tilt is not modelled.

Similarity: normalised cross-correlation (NCC) between the reference image and the moving image
resampled at ``T(q)`` (linear interpolation), evaluated over reference voxels; a follow-up MR of the
same sequence differs from the baseline mostly by a gain and an offset, which NCC ignores.

Only reference voxels that the transform maps inside the moving image are compared (the overlap),
so shifting an edge slice out of the field of view is not penalised.

Optimisation: multi-resolution, coarse to fine. At a level with factor ``f`` both images are
Gaussian-smoothed in-plane with ``sigma = f / 2`` voxels and the similarity is evaluated on every
``f``-th reference voxel in-plane, so parameters stay in full-resolution voxel units. The start is
the difference of intensity centroids (translation) and the best angle of a coarse grid
(``angle_grid_deg``); Powell's method then refines angle and in-plane shift at each level. For
volumes with ``integer_z=True`` (default; thick slices make sub-slice shifts meaningless) each whole
slice shift in ``[-max_shift_z, max_shift_z]`` is tried at the coarsest level and the best is kept;
otherwise ``dz`` is optimised as a continuous parameter with the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize

from mdafuse.longitudinal.transform import RigidTransform

__all__ = ["RegistrationConfig", "RegistrationResult", "register_rigid", "ncc"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistrationConfig:
    """Parameters of :func:`register_rigid`.

    Attributes:
        levels: in-plane subsampling factors, coarse to fine (each >= 1, last usually 1).
        angle_grid_deg: candidate start angles tried at the coarsest level.
        max_shift_z: largest whole-slice shift searched for volumes.
        integer_z: restrict the slice shift of volumes to whole slices.
        xtol: Powell parameter tolerance (degrees / voxels) at the finest level.
    """

    levels: tuple[int, ...] = (4, 2, 1)
    angle_grid_deg: tuple[float, ...] = (-10.0, -5.0, 0.0, 5.0, 10.0)
    max_shift_z: int = 2
    integer_z: bool = True
    xtol: float = 0.01

    def __post_init__(self) -> None:
        if not self.levels or any(int(f) != f or f < 1 for f in self.levels):
            raise ValueError(f"levels must be a non-empty tuple of integers >= 1; got {self.levels}")
        if not self.angle_grid_deg:
            raise ValueError("angle_grid_deg must hold at least one angle")
        if self.max_shift_z < 0 or self.xtol <= 0:
            raise ValueError(f"max_shift_z must be >= 0 and xtol > 0; got {self.max_shift_z}, {self.xtol}")


@dataclass(frozen=True)
class RegistrationResult:
    """Outcome of a registration.

    Attributes:
        transform: reference frame -> moving frame (resample the moving image with
            ``transform.to_reference``).
        ncc_before: NCC of the unregistered pair (identity transform).
        ncc_after: NCC after registration.
        evaluations: number of similarity evaluations.
    """

    transform: RigidTransform
    ncc_before: float
    ncc_after: float
    evaluations: int


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two arrays (Pearson correlation of the values); 0 if flat."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


class _Level:
    """Smoothed images and the subsampled reference grid of one resolution level."""

    def __init__(self, reference: np.ndarray, moving: np.ndarray, factor: int) -> None:
        sigma = [0.0] * (reference.ndim - 2) + [factor / 2.0, factor / 2.0] if factor > 1 else 0.0
        self.shape = reference.shape
        ref = ndimage.gaussian_filter(reference, sigma) if factor > 1 else reference
        self.moving = (ndimage.gaussian_filter(moving, sigma) if factor > 1 else moving).astype(np.float32)
        sl = tuple([slice(None)] * (reference.ndim - 2) + [slice(0, None, factor), slice(0, None, factor)])
        grid = np.indices(reference.shape, dtype=np.float64)
        self.points = grid[(slice(None), *sl)].reshape(reference.ndim, -1)
        self.ref_values = ref[sl].ravel().astype(np.float64)

    def similarity(self, transform: RigidTransform) -> float:
        coords = transform.apply(self.points, self.shape)
        # Only reference voxels that map inside the moving image count: zero padding would
        # otherwise penalise every shift that moves an edge slice out of the field of view.
        inside = np.ones(coords.shape[1], dtype=bool)
        for axis, n in enumerate(self.shape):
            inside &= (coords[axis] >= 0.0) & (coords[axis] <= n - 1)
        if inside.sum() < 0.25 * inside.size:
            return -1.0
        values = ndimage.map_coordinates(self.moving, coords[:, inside], order=1, mode="nearest", prefilter=False)
        return ncc(self.ref_values[inside], values)


def _centroid(image: np.ndarray) -> np.ndarray:
    w = np.clip(image.astype(np.float64), 0.0, None)
    total = w.sum()
    if total <= 0:
        return (np.asarray(image.shape, dtype=np.float64) - 1) / 2.0
    return np.array([(np.arange(n).reshape([-1 if i == ax else 1 for i in range(image.ndim)]) * w).sum() / total for ax, n in enumerate(image.shape)])


def register_rigid(reference: np.ndarray, moving: np.ndarray, config: RegistrationConfig | None = None) -> RegistrationResult:
    """Find the rigid transform that aligns ``moving`` onto ``reference`` (see module docstring).

    Args:
        reference: ``(H, W)`` or ``(Z, H, W)`` baseline MR (any intensity scale).
        moving: follow-up MR with the same shape.
        config: optimiser settings.

    Returns:
        A :class:`RegistrationResult`; ``result.transform.to_reference(moving)`` is aligned with
        ``reference``.

    Raises:
        ValueError: shapes differ, are not 2-D/3-D, or hold non-finite values.
    """
    cfg = config if config is not None else RegistrationConfig()
    reference = np.asarray(reference, dtype=np.float32)
    moving = np.asarray(moving, dtype=np.float32)
    if reference.ndim not in (2, 3):
        raise ValueError(f"reference must have shape (H, W) or (Z, H, W); got {reference.shape}")
    if moving.shape != reference.shape:
        raise ValueError(f"moving must have the reference shape {reference.shape}; got {moving.shape}")
    if not (np.isfinite(reference).all() and np.isfinite(moving).all()):
        raise ValueError("reference and moving must hold finite values")
    three_d = reference.ndim == 3
    counter = [0]

    def make(params: np.ndarray, dz: float | None) -> RigidTransform:
        if three_d:
            z = float(params[3]) if dz is None else dz
            return RigidTransform(float(params[0]), (z, float(params[1]), float(params[2])))
        return RigidTransform(float(params[0]), (float(params[1]), float(params[2])))

    def cost(params: np.ndarray, level: _Level, dz: float | None) -> float:
        counter[0] += 1
        return -level.similarity(make(params, dz))

    levels = [_Level(reference, moving, f) for f in cfg.levels]
    start_shift = _centroid(moving) - _centroid(reference)
    identity = RigidTransform.identity(reference.ndim)
    ncc_before = levels[-1].similarity(identity)

    coarse = levels[0]
    z_candidates: list[float | None]
    if three_d and cfg.integer_z:
        z_candidates = [float(z) for z in range(-cfg.max_shift_z, cfg.max_shift_z + 1)]
    else:
        z_candidates = [None]
    best: tuple[float, np.ndarray, float | None] | None = None
    for dz in z_candidates:
        for angle in cfg.angle_grid_deg:
            p0 = [angle, start_shift[-2], start_shift[-1]]
            if three_d and dz is None:
                p0.append(float(start_shift[0]))
            p0 = np.asarray(p0, dtype=np.float64)
            c = cost(p0, coarse, dz)
            if best is None or c < best[0]:
                best = (c, p0, dz)
    assert best is not None
    _, params, dz = best
    # Refine the best start at the coarsest level, then at each finer level.
    for i, level in enumerate(levels):
        xtol = cfg.xtol * max(1, cfg.levels[i])
        res = optimize.minimize(cost, params, args=(level, dz), method="Powell", options={"xtol": xtol, "ftol": 1e-7, "maxfev": 4000})
        params = np.asarray(res.x, dtype=np.float64)
    transform = make(params, dz)
    ncc_after = levels[-1].similarity(transform)
    logger.info("registered: angle %.3f deg, shift %s, NCC %.4f -> %.4f (%d evaluations)", transform.angle_deg, tuple(round(s, 3) for s in transform.shift), ncc_before, ncc_after, counter[0])
    return RegistrationResult(transform=transform, ncc_before=ncc_before, ncc_after=ncc_after, evaluations=counter[0])
