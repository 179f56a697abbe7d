"""Resample a PET volume onto the MR grid through a registration transform.

The transform ``T`` (MR LPS -> PET LPS, :class:`PatientRigidTransform`) is folded into the PET's
affine: ``A_pet' = M^-1 @ A_pet`` maps PET voxel indices into MR patient space, after which the
ordinary same-frame resampling :func:`mdafuse.io.resample.resample_to` applies unchanged
(``inv(A_pet') @ A_mr = inv(A_pet) @ M @ A_mr``). With the identity transform the result is the
one ``resample_to(pet, mr, allow_different_frames=True)`` gives, bit for bit.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mdafuse.io.resample import resample_to
from mdafuse.io.volume import Volume
from mdafuse.registration.transform import PatientRigidTransform

__all__ = ["resample_pet_to_mr", "pet_in_mr_space"]


def pet_in_mr_space(pet: Volume, mr: Volume, transform: PatientRigidTransform) -> Volume:
    """The PET volume, data untouched, with its affine moved into the MR's patient space.

    Returns:
        A copy of ``pet`` whose affine is ``inv(transform.matrix) @ pet.affine`` and whose
        FrameOfReferenceUID is the MR's (the affine now refers to the MR's frame).
    """
    affine = np.linalg.inv(transform.matrix) @ pet.affine
    return replace(pet, affine=affine, frame_of_reference_uid=mr.frame_of_reference_uid, warnings=list(pet.warnings))


def resample_pet_to_mr(pet: Volume, mr: Volume, transform: PatientRigidTransform, order: int = 1, *, cval: float = 0.0) -> Volume:
    """Resample ``pet`` onto ``mr``'s grid, evaluating it at ``transform(x)`` for each MR voxel centre ``x``.

    Args:
        pet: the PET/SPECT volume ``(Z, Y, X)`` with its own affine (any frame of reference).
        mr: the target grid.
        transform: MR LPS -> PET LPS, e.g. ``register_pet_to_mr(pet, mr).transform``.
        order: spline order (1: trilinear, as :func:`mdafuse.io.pair.load_pair` uses; 0 for labels).
        cval: value outside the PET field of view.

    Returns:
        A Volume on the MR grid with the PET's modality, units and warnings (a missing
        FrameOfReferenceUID is no degradation once registered, so no warning is added for it).
    """
    moved = pet_in_mr_space(pet, mr, transform)
    out = resample_to(moved, mr, order=order, allow_different_frames=True, cval=cval)
    return replace(out, warnings=list(pet.warnings))
