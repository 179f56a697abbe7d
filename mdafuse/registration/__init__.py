"""Rigid PET-to-MR registration for pairs without a shared frame of reference (different scanners).

``register_pet_to_mr(pet, mr, config) -> PetRegistrationResult`` finds the rigid transform (MR
LPS mm -> PET LPS mm, :class:`PatientRigidTransform`, JSON-serialisable) by Mattes mutual
information with SimpleITK, multi-resolution; ``resample_pet_to_mr(pet, mr, transform)`` puts the
PET on the MR grid through :func:`mdafuse.io.resample.resample_to`. Failures raise
:class:`RegistrationError` with a one-line reason. Imports neither Ray nor torch; SimpleITK is
imported only when a registration runs.
"""

from __future__ import annotations

from mdafuse.registration.quality import head_mask, normalised_mutual_information, registration_quality
from mdafuse.registration.resample import pet_in_mr_space, resample_pet_to_mr
from mdafuse.registration.rigid import INITIALISATIONS, METHOD, METRICS, PetRegistrationConfig, PetRegistrationResult, RegistrationError, register_pet_to_mr
from mdafuse.registration.transform import PatientRigidTransform

__all__ = [
    "INITIALISATIONS",
    "METHOD",
    "METRICS",
    "PatientRigidTransform",
    "PetRegistrationConfig",
    "PetRegistrationResult",
    "RegistrationError",
    "head_mask",
    "normalised_mutual_information",
    "pet_in_mr_space",
    "register_pet_to_mr",
    "registration_quality",
    "resample_pet_to_mr",
]
