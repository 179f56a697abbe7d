"""A rigid transform in patient (LPS) millimetres, serialisable to JSON.

Convention (the one ITK uses for registration): the transform maps a point ``x`` of the *fixed*
space (the MR's LPS coordinates) to the point of the *moving* space (the PET's LPS coordinates)
where the same anatomy was recorded:

    T(x) = R (x - c) + c + t

with ``R`` a proper rotation (orthonormal, determinant +1), ``c`` the centre of rotation and ``t``
the translation, all in LPS millimetres. As a 4x4 homogeneous matrix
``M = [[R, t + c - R c], [0, 0, 0, 1]]``. Resampling the PET onto the MR grid evaluates the PET at
``T(x)`` for every MR voxel centre ``x`` (:func:`mdafuse.registration.resample.resample_pet_to_mr`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PatientRigidTransform", "TRANSFORM_KIND"]

#: The ``kind`` written in the JSON form; :meth:`PatientRigidTransform.from_dict` checks it.
TRANSFORM_KIND = "rigid-lps-mm"
_ORTHO_TOL = 1e-6


def _vector(value: Any, name: str) -> tuple[float, float, float]:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (3,) or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be 3 finite numbers; got {value!r}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


@dataclass(frozen=True)
class PatientRigidTransform:
    """``T(x) = R (x - c) + c + t`` from fixed (MR) to moving (PET) LPS millimetres.

    Attributes:
        rotation: ``R`` as three rows of three floats (row-major).
        translation: ``t`` in mm.
        centre: ``c`` in mm (LPS).
    """

    rotation: tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        r = np.asarray(self.rotation, dtype=np.float64)
        if r.shape != (3, 3) or not np.isfinite(r).all():
            raise ValueError(f"rotation must be a finite 3x3 matrix; got {self.rotation!r}")
        if not np.allclose(r @ r.T, np.eye(3), atol=_ORTHO_TOL) or not abs(np.linalg.det(r) - 1.0) < _ORTHO_TOL:
            raise ValueError(f"rotation must be orthonormal with determinant +1 (a proper rotation); got det {np.linalg.det(r):.6g}")
        object.__setattr__(self, "rotation", tuple(tuple(float(v) for v in row) for row in r))
        object.__setattr__(self, "translation", _vector(self.translation, "translation"))
        object.__setattr__(self, "centre", _vector(self.centre, "centre"))

    @staticmethod
    def identity(centre: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> "PatientRigidTransform":
        """The identity (the headers' alignment)."""
        return PatientRigidTransform(tuple(map(tuple, np.eye(3))), (0.0, 0.0, 0.0), centre)  # type: ignore[arg-type]

    @staticmethod
    def from_axis_angle(axis: Any, angle_deg: float, translation: Any = (0.0, 0.0, 0.0), centre: Any = (0.0, 0.0, 0.0)) -> "PatientRigidTransform":
        """Rotation by ``angle_deg`` about the unit direction ``axis`` (Rodrigues' formula).

        Raises:
            ValueError: ``axis`` has zero length.
        """
        a = np.asarray(axis, dtype=np.float64)
        norm = float(np.linalg.norm(a))
        if a.shape != (3,) or not norm > 0:
            raise ValueError(f"axis must be a non-zero 3-vector; got {axis!r}")
        k = a / norm
        theta = math.radians(float(angle_deg))
        kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
        r = np.eye(3) + math.sin(theta) * kx + (1.0 - math.cos(theta)) * (kx @ kx)
        return PatientRigidTransform(tuple(map(tuple, r)), translation, centre)  # type: ignore[arg-type]

    @staticmethod
    def from_matrix(matrix: Any, centre: Any = (0.0, 0.0, 0.0)) -> "PatientRigidTransform":
        """From a 4x4 homogeneous matrix, keeping ``centre`` as the centre of rotation.

        Raises:
            ValueError: not 4x4, last row not (0, 0, 0, 1), or the 3x3 part is not a proper rotation.
        """
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape != (4, 4) or not np.allclose(m[3], (0.0, 0.0, 0.0, 1.0)):
            raise ValueError(f"matrix must be 4x4 with last row (0, 0, 0, 1); got shape {m.shape}")
        r = m[:3, :3]
        c = np.asarray(_vector(centre, "centre"))
        t = m[:3, 3] - c + r @ c
        return PatientRigidTransform(tuple(map(tuple, r)), tuple(t), tuple(c))  # type: ignore[arg-type]

    @property
    def rotation_matrix(self) -> np.ndarray:
        """``R`` as a ``(3, 3)`` float64 array."""
        return np.asarray(self.rotation, dtype=np.float64)

    @property
    def matrix(self) -> np.ndarray:
        """The ``(4, 4)`` homogeneous matrix ``[[R, t + c - R c], [0, 0, 0, 1]]``."""
        r = self.rotation_matrix
        c = np.asarray(self.centre)
        m = np.eye(4)
        m[:3, :3] = r
        m[:3, 3] = np.asarray(self.translation) + c - r @ c
        return m

    @property
    def angle_deg(self) -> float:
        """Rotation angle about the rotation axis, in degrees (0 to 180)."""
        cos = (float(np.trace(self.rotation_matrix)) - 1.0) / 2.0
        return math.degrees(math.acos(min(1.0, max(-1.0, cos))))

    def apply(self, points: Any) -> np.ndarray:
        """Map ``(N, 3)`` (or ``(3,)``) fixed-space LPS points to moving-space LPS points."""
        p = np.asarray(points, dtype=np.float64)
        m = self.matrix
        return p @ m[:3, :3].T + m[:3, 3]

    def inverse(self) -> "PatientRigidTransform":
        """The transform from moving to fixed space (same centre mapped: ``c' = T(c)``)."""
        r = self.rotation_matrix
        c_new = np.asarray(self.centre) + np.asarray(self.translation)
        # T^-1(y) = R^T (y - c') + c, i.e. centre c', translation c - c'.
        return PatientRigidTransform(tuple(map(tuple, r.T)), tuple(np.asarray(self.centre) - c_new), tuple(c_new))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: kind, direction, rotation, translation, centre, 4x4 matrix, angle."""
        return {
            "kind": TRANSFORM_KIND,
            "maps": "fixed (MR) LPS mm -> moving (PET) LPS mm",
            "rotation": [list(row) for row in self.rotation],
            "translation_mm": list(self.translation),
            "centre_mm": list(self.centre),
            "matrix": [[float(v) for v in row] for row in self.matrix],
            "angle_deg": self.angle_deg,
        }

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict` (floats written exactly, so the round trip is lossless)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "PatientRigidTransform":
        """Read back :meth:`to_dict` (rotation, translation and centre; the matrix is checked against them).

        Raises:
            ValueError: wrong ``kind``, missing keys, not a proper rotation, or a matrix that disagrees.
        """
        if not isinstance(data, dict) or data.get("kind") != TRANSFORM_KIND:
            raise ValueError(f"transform must be a dict with kind {TRANSFORM_KIND!r}; got kind {data.get('kind') if isinstance(data, dict) else type(data).__name__!r}")
        missing = [k for k in ("rotation", "translation_mm", "centre_mm") if k not in data]
        if missing:
            raise ValueError(f"transform dict lacks {missing}")
        out = PatientRigidTransform(data["rotation"], data["translation_mm"], data["centre_mm"])
        if "matrix" in data and not np.allclose(np.asarray(data["matrix"], dtype=np.float64), out.matrix, atol=1e-6):
            raise ValueError("transform 'matrix' disagrees with its rotation, translation and centre")
        return out

    @staticmethod
    def from_json(text: str) -> "PatientRigidTransform":
        """Read back :meth:`to_json`."""
        return PatientRigidTransform.from_dict(json.loads(text))
