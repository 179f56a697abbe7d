"""Rigid transforms used by the phantom and by longitudinal registration.

Convention (one for the whole package): a :class:`RigidTransform` ``T`` maps a point ``q`` of the
*reference* frame (time point 0) to the point ``p = T(q)`` of the *moving* frame (a later time
point) where the same anatomy appears:

    p_inplane = R(angle) @ (q_inplane - c) + c + shift_inplane,    p_z = q_z + shift_z

with ``c = ((H - 1) / 2, (W - 1) / 2)`` the centre of the in-plane grid, points written as
(row, column) = (y, x) in voxel units, and

    R(angle) = [[cos a, -sin a],
                [sin a,  cos a]]   acting on (y, x).

Rotation is in-plane only (about the z axis); for volumes the shift is ``(dz, dy, dx)``, for
single slices ``(dy, dx)``. Resampling a moving image into the reference frame is therefore
``aligned(q) = moving(T(q))`` (see :meth:`RigidTransform.to_reference`), and simulating a moving
image from a reference-frame image is ``moving(p) = reference(T^-1(p))``
(the inverse transform's :meth:`RigidTransform.to_reference`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["RigidTransform"]


@dataclass(frozen=True)
class RigidTransform:
    """In-plane rotation plus 2-D or 3-D translation, in voxel units (see module docstring).

    Attributes:
        angle_deg: in-plane rotation angle in degrees.
        shift: ``(dy, dx)`` for 2-D images, ``(dz, dy, dx)`` for volumes, in voxels.
    """

    angle_deg: float = 0.0
    shift: tuple[float, ...] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if len(self.shift) not in (2, 3):
            raise ValueError(f"shift must have 2 (dy, dx) or 3 (dz, dy, dx) components; got {self.shift}")
        if not all(math.isfinite(v) for v in (self.angle_deg, *self.shift)):
            raise ValueError(f"angle_deg and shift must be finite; got {self.angle_deg}, {self.shift}")

    @property
    def ndim(self) -> int:
        """2 for a slice transform, 3 for a volume transform."""
        return len(self.shift)

    @staticmethod
    def identity(ndim: int) -> "RigidTransform":
        """The identity for 2-D (``ndim=2``) or 3-D (``ndim=3``) images."""
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3; got {ndim}")
        return RigidTransform(0.0, (0.0,) * ndim)

    def rotation_matrix(self) -> np.ndarray:
        """``(2, 2)`` float64 matrix R acting on (y, x)."""
        a = math.radians(self.angle_deg)
        return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) != self.ndim:
            raise ValueError(f"image must be {self.ndim}-D to match shift {self.shift}; got shape {shape}")

    def apply(self, points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Map reference-frame points to the moving frame.

        Args:
            points: ``(ndim, ...)`` coordinates (z first for volumes, then y, x) in voxels.
            shape: image shape, which fixes the rotation centre.

        Returns:
            ``(ndim, ...)`` float64 moving-frame coordinates.
        """
        self._check_shape(tuple(shape))
        pts = np.asarray(points, dtype=np.float64)
        cy, cx = (shape[-2] - 1) / 2.0, (shape[-1] - 1) / 2.0
        r = self.rotation_matrix()
        y, x = pts[-2] - cy, pts[-1] - cx
        out = np.empty_like(pts)
        out[-2] = r[0, 0] * y + r[0, 1] * x + cy + self.shift[-2]
        out[-1] = r[1, 0] * y + r[1, 1] * x + cx + self.shift[-1]
        if self.ndim == 3:
            out[0] = pts[0] + self.shift[0]
        return out

    def inverse(self) -> "RigidTransform":
        """The transform mapping moving-frame points back to the reference frame."""
        r_inv = self.rotation_matrix().T
        s = np.asarray(self.shift[-2:], dtype=np.float64)
        # T^-1(p) = R^T (p - c - s) + c, i.e. angle -a and shift -R^T s.
        s_inv = -(r_inv @ s)
        shift = (float(s_inv[0]), float(s_inv[1]))
        if self.ndim == 3:
            shift = (-float(self.shift[0]), *shift)
        return RigidTransform(-self.angle_deg, shift)

    def to_reference(self, moving: np.ndarray, order: int = 1, cval: float = 0.0) -> np.ndarray:
        """Resample a moving-frame image onto the reference grid: ``aligned(q) = moving(T(q))``.

        Args:
            moving: ``(H, W)`` or ``(Z, H, W)`` image in the moving frame.
            order: spline order (0 nearest for labels, 1 linear for intensities).
            cval: value outside the moving image.

        Returns:
            Array with ``moving``'s shape and dtype (float32 for float input).
        """
        moving = np.asarray(moving)
        self._check_shape(moving.shape)
        grid = np.indices(moving.shape, dtype=np.float64)
        coords = self.apply(grid, moving.shape)
        src = moving.astype(np.float32) if order > 0 else moving
        out = ndimage.map_coordinates(src, coords, order=order, mode="constant", cval=cval, prefilter=order > 1)
        return out.astype(moving.dtype if order == 0 else np.float32)
