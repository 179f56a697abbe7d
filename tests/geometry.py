"""Geometry helpers of the tests (the library itself has no use for them)."""

from __future__ import annotations

import numpy as np


def index_to_patient(volume, zyx) -> np.ndarray:
    """LPS coordinates (mm) of fractional voxel indices ``(..., 3)`` in array order (z, y, x)."""
    zyx = np.asarray(zyx, dtype=np.float64)
    return zyx[..., ::-1] @ volume.affine[:3, :3].T + volume.affine[:3, 3]


def patient_to_index(volume, lps) -> np.ndarray:
    """Fractional voxel indices ``(..., 3)`` in array order (z, y, x) of LPS points ``(..., 3)``."""
    inv = np.linalg.inv(volume.affine)
    return (np.asarray(lps, dtype=np.float64) @ inv[:3, :3].T + inv[:3, 3])[..., ::-1]


def to_moving(transform, reference: np.ndarray, order: int = 1, cval: float = 0.0) -> np.ndarray:
    """A reference-frame image resampled into the moving frame: ``moving(p) = reference(T^-1(p))``."""
    return transform.inverse().to_reference(reference, order=order, cval=cval)
