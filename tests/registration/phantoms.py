"""Synthetic head phantoms for the registration tests: an MR-like and a PET-like volume of one anatomy."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mdafuse.io.volume import Volume
from mdafuse.registration import PatientRigidTransform

#: MR grid: 64 x 64 x 32 voxels of 3 x 3 x 4 mm (x, y, z), origin chosen so the head sits near LPS 0.
MR_SHAPE = (32, 64, 64)
MR_SPACING = (3.0, 3.0, 4.0)


def mr_affine() -> np.ndarray:
    a = np.diag([*MR_SPACING, 1.0])
    a[:3, 3] = [-(MR_SHAPE[2] - 1) * MR_SPACING[0] / 2, -(MR_SHAPE[1] - 1) * MR_SPACING[1] / 2, -(MR_SHAPE[0] - 1) * MR_SPACING[2] / 2]
    return a


def _anatomy(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mr, pet) intensities at LPS points ``(..., 3)``: an asymmetric head with scalp, grey/white matter, ventricles and a lesion."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]

    def ell(cx, cy, cz, rx, ry, rz):
        return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 <= 1.0

    head = ell(0, 0, 0, 70, 85, 55)
    brain = ell(0, 3, 4, 62, 76, 47)
    white = ell(0, 5, 8, 42, 55, 30)
    vent_l = ell(12, -5, 10, 6, 22, 9)
    vent_r = ell(-10, -2, 12, 5, 18, 8)
    lesion = ell(28, -30, -10, 10, 10, 9)
    nose = ell(0, -88, -20, 12, 14, 16)  # breaks symmetry along y
    mr = np.where(head, 0.9, 0.0)
    mr = np.where(brain, 0.55, mr)
    mr = np.where(white, 0.8, mr)
    mr = np.where(vent_l | vent_r, 0.15, mr)
    mr = np.where(lesion, 1.0, mr)
    mr = np.where(nose, 0.7, mr)
    pet = np.where(brain, 2.5, np.where(head | nose, 0.4, 0.0))
    pet = np.where(white, 1.2, pet)
    pet = np.where(vent_l | vent_r, 0.2, pet)
    pet = np.where(lesion, 7.0, pet)
    return mr, pet


def grid_points(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    zyx = np.indices(shape, dtype=np.float64).reshape(3, -1).T
    return (zyx[:, ::-1] @ affine[:3, :3].T + affine[:3, 3]).reshape(*shape, 3)


def make_mr(seed: int = 0) -> Volume:
    affine = mr_affine()
    mr, _ = _anatomy(grid_points(MR_SHAPE, affine))
    mr = ndimage.gaussian_filter(mr, 0.6)
    mr = mr + 0.02 * np.random.default_rng(seed).standard_normal(mr.shape)
    return Volume(np.clip(mr, 0, None) * 1000.0, affine, modality="MR", frame_of_reference_uid="1.2.3.mr")


def make_pet(truth: PatientRigidTransform, seed: int = 1, shape: tuple[int, int, int] = (24, 48, 48), spacing: float = 4.0, origin_shift=(0.0, 0.0, 0.0)) -> Volume:
    """A PET of the phantom on its own grid (4 mm voxels, axes-aligned in its own frame).

    The anatomy at MR-frame point ``x`` is at PET-frame point ``truth(x)``: the PET voxel at PET
    point ``p`` shows the anatomy at ``truth^-1(p)``.
    """
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = [-(shape[2] - 1) * spacing / 2 + origin_shift[0], -(shape[1] - 1) * spacing / 2 + origin_shift[1], -(shape[0] - 1) * spacing / 2 + origin_shift[2]]
    pts = grid_points(shape, affine)
    inv = truth.inverse()
    _, pet = _anatomy(inv.apply(pts.reshape(-1, 3)).reshape(pts.shape))
    pet = ndimage.gaussian_filter(pet, 6.0 / 2.355 / spacing)  # 6 mm FWHM
    rng = np.random.default_rng(seed)
    pet = np.clip(pet + 0.05 * np.sqrt(np.clip(pet, 0, None)) * rng.standard_normal(pet.shape), 0, None)
    return Volume(pet.astype(np.float32), affine, modality="PT", units="SUVbw", frame_of_reference_uid="1.2.3.pet")


def brain_points(mr: Volume) -> np.ndarray:
    """LPS points of the MR voxels above 40 % of the maximum (the brain), ``(N, 3)``."""
    zyx = np.argwhere(mr.data > 0.4 * mr.data.max()).astype(np.float64)
    return zyx[:, ::-1] @ mr.affine[:3, :3].T + mr.affine[:3, 3]


def tre_mm(points: np.ndarray, estimate: PatientRigidTransform, truth: PatientRigidTransform) -> float:
    return float(np.linalg.norm(estimate.apply(points) - truth.apply(points), axis=1).mean())
