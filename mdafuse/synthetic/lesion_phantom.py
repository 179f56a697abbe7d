"""A configurable single-lesion PET phantom with exact truth, for segmentation accuracy benchmarks.

:func:`make_lesion_image` renders a uniform sphere (SUV ``lesion_suv``, radius ``radius_mm``) in a
uniform background (``background_suv``), blurred by an isotropic Gaussian PSF of ``fwhm_mm``,
sampled on a grid of cubic voxels of ``voxel_mm`` and given Poisson-like noise
``sigma = noise * sqrt(SUV)``. The blurred sphere is analytic (no discretisation of the sphere):
the value at distance ``r`` from the centre of a sphere of radius ``R`` convolved with a Gaussian
of standard deviation ``s`` is (e.g. Hoetjes et al., Phys Med Biol 2010, eq. 2)::

    f(r) = A [ (erf((R - r) / (s sqrt 2)) + erf((R + r) / (s sqrt 2))) / 2
               - s / (r sqrt(2 pi)) (exp(-(R - r)^2 / 2 s^2) - exp(-(R + r)^2 / 2 s^2)) ]

and each voxel is the mean of ``f`` over ``supersample^3`` points inside it (the scanner's voxel
integration). Truth is the sphere's exact volume ``4/3 pi R^3`` and its SUV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from mdafuse.longitudinal.segmentation import FWHM_TO_SIGMA

__all__ = ["LesionImageConfig", "blurred_sphere", "make_lesion_image", "FWHM_TO_SIGMA"]

#: Gaussian sigma per unit FWHM: ``1 / (2 sqrt(2 ln 2))``.


@dataclass(frozen=True)
class LesionImageConfig:
    """Parameters of :func:`make_lesion_image` (lengths in mm, uptake in SUV).

    Attributes:
        radius_mm: sphere radius (0: no lesion, background only).
        fwhm_mm: FWHM of the isotropic Gaussian PSF (0: no blur).
        voxel_mm: edge of the cubic voxels.
        lesion_suv: uniform uptake inside the sphere.
        background_suv: uniform uptake outside.
        noise: noise scale; sigma is ``noise * sqrt(SUV)`` (0: noise-free).
        offset_vox: sub-voxel offset ``(z, y, x)`` of the sphere centre from the central voxel's centre.
        field_mm: edge of the cubic field of view (rounded up to whole voxels, made odd).
        supersample: points per voxel and axis for the voxel integration.
    """

    radius_mm: float
    fwhm_mm: float = 6.0
    voxel_mm: float = 2.0
    lesion_suv: float = 10.0
    background_suv: float = 2.5
    noise: float = 0.05
    offset_vox: tuple[float, float, float] = (0.0, 0.0, 0.0)
    field_mm: float = 120.0
    supersample: int = 3

    def __post_init__(self) -> None:
        if self.radius_mm < 0 or self.fwhm_mm < 0 or self.voxel_mm <= 0 or self.noise < 0:
            raise ValueError(f"radius_mm, fwhm_mm, noise must be >= 0 and voxel_mm > 0; got {self}")
        if self.field_mm < 2 * self.radius_mm + 4 * self.fwhm_mm:
            raise ValueError(f"field_mm must be >= 2 radius_mm + 4 fwhm_mm = {2 * self.radius_mm + 4 * self.fwhm_mm}; got {self.field_mm}")
        if self.supersample < 1:
            raise ValueError(f"supersample must be >= 1; got {self.supersample}")

    @property
    def true_volume_ml(self) -> float:
        """Exact sphere volume in ml."""
        return 4.0 / 3.0 * math.pi * self.radius_mm**3 / 1000.0


def blurred_sphere(r_mm: np.ndarray, radius_mm: float, fwhm_mm: float) -> np.ndarray:
    """Unit-amplitude sphere of ``radius_mm`` convolved with a Gaussian of ``fwhm_mm``, at distances ``r_mm`` (any shape)."""
    r = np.abs(np.asarray(r_mm, dtype=np.float64))
    if radius_mm <= 0:
        return np.zeros_like(r)
    if fwhm_mm <= 0:
        return (r <= radius_mm).astype(np.float64)
    s = fwhm_mm * FWHM_TO_SIGMA
    q = s * math.sqrt(2.0)
    big = 0.5 * (special.erf((radius_mm - r) / q) + special.erf((radius_mm + r) / q))
    # the r -> 0 limit of the second term is 2 R / (s sqrt(2 pi)) exp(-R^2 / 2 s^2); avoid 0/0 there
    rr = np.maximum(r, 1e-6 * s)
    small = s / (rr * math.sqrt(2.0 * math.pi)) * (np.exp(-((radius_mm - rr) ** 2) / (2 * s * s)) - np.exp(-((radius_mm + rr) ** 2) / (2 * s * s)))
    return big - small


def make_lesion_image(config: LesionImageConfig, seed: int = 0) -> np.ndarray:
    """Render the phantom of ``config`` as a float32 ``(N, N, N)`` SUV volume (N odd, lesion at the centre + offset)."""
    cfg = config
    n = int(math.ceil(cfg.field_mm / cfg.voxel_mm)) | 1
    c = (n - 1) / 2.0
    k = cfg.supersample
    sub = (np.arange(k) + 0.5) / k - 0.5  # point offsets inside a voxel, in voxels
    axis = np.arange(n, dtype=np.float64)
    acc = np.zeros((n, n, n))
    for dz in sub:
        z = (axis + dz - c - cfg.offset_vox[0]) * cfg.voxel_mm
        for dy in sub:
            y = (axis + dy - c - cfg.offset_vox[1]) * cfg.voxel_mm
            for dx in sub:
                x = (axis + dx - c - cfg.offset_vox[2]) * cfg.voxel_mm
                r = np.sqrt(z[:, None, None] ** 2 + y[None, :, None] ** 2 + x[None, None, :] ** 2)
                acc += blurred_sphere(r, cfg.radius_mm, cfg.fwhm_mm)
    suv = cfg.background_suv + (cfg.lesion_suv - cfg.background_suv) * acc / k**3
    if cfg.noise > 0:
        rng = np.random.default_rng(seed)
        suv = suv + cfg.noise * np.sqrt(np.clip(suv, 0.0, None)) * rng.standard_normal(suv.shape)
    return np.clip(suv, 0.0, None).astype(np.float32)
