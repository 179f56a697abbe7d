"""The SimpleITK side of :func:`mdafuse.registration.register_pet_to_mr`: images, the run, its result."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from mdafuse.io.volume import Volume
from mdafuse.registration.rigid import PetRegistrationConfig, RegistrationError
from mdafuse.registration.transform import PatientRigidTransform

__all__ = ["LIBRARY", "SitkRun", "to_sitk", "run_registration"]

LIBRARY = f"SimpleITK {sitk.Version.VersionString()}"
_INIT = {"moments": sitk.CenteredTransformInitializerFilter.MOMENTS, "geometry": sitk.CenteredTransformInitializerFilter.GEOMETRY}


@dataclass(frozen=True)
class SitkRun:
    """What one SimpleITK registration returned."""

    transform: PatientRigidTransform
    converged: bool
    metric: float
    iterations: int
    stop_reason: str
    library: str = LIBRARY


def to_sitk(volume: Volume, data: np.ndarray | None = None) -> sitk.Image:
    """A SimpleITK image with ``volume``'s geometry (index (x, y, z) -> LPS through its affine).

    Raises:
        RegistrationError: the affine is sheared (ITK needs orthonormal direction cosines).
    """
    arr = volume.data if data is None else data
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    spacing = np.linalg.norm(volume.affine[:3, :3], axis=0)
    direction = volume.affine[:3, :3] / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise RegistrationError("the volume's affine is sheared (direction cosines not orthogonal); ITK cannot place it", "degenerate")
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in volume.affine[:3, 3]])
    image.SetDirection([float(v) for v in direction.ravel()])
    return image


def _one_line(exc: Exception) -> str:
    text = str(exc)
    match = re.search(r"ITK ERROR: [^:]*: (.+)", text)
    line = match.group(1) if match else text.strip().splitlines()[-1] if text.strip() else type(exc).__name__
    return line.strip()[:200]


def _euler_to_patient(tx: sitk.Transform) -> PatientRigidTransform:
    euler = sitk.Euler3DTransform(tx) if not isinstance(tx, sitk.Euler3DTransform) else tx
    rotation = np.asarray(euler.GetMatrix(), dtype=np.float64).reshape(3, 3)
    # Euler3D is a proper rotation up to float rounding; re-orthonormalise so the transform validates.
    u, _, vt = np.linalg.svd(rotation)
    rotation = u @ vt
    return PatientRigidTransform(tuple(map(tuple, rotation)), tuple(euler.GetTranslation()), tuple(euler.GetCenter()))  # type: ignore[arg-type]


def run_registration(pet: Volume, mr: Volume, mask: np.ndarray | None, cfg: PetRegistrationConfig) -> SitkRun:
    """Register PET (moving) to MR (fixed) with SimpleITK (see :mod:`mdafuse.registration.rigid`)."""
    fixed = to_sitk(mr)
    moving = to_sitk(pet)
    if cfg.initialisation == "header":
        initial = sitk.Euler3DTransform()
        centre = fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in fixed.GetSize()])
        initial.SetCenter(centre)
    else:
        initial = sitk.Euler3DTransform(sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(), _INIT[cfg.initialisation]))
    method = sitk.ImageRegistrationMethod()
    method.SetNumberOfThreads(cfg.threads)
    if cfg.metric == "mattes_mi":
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=cfg.histogram_bins)
    elif cfg.metric == "correlation":
        method.SetMetricAsCorrelation()
    else:
        method.SetMetricAsMeanSquares()
    method.SetMetricSamplingStrategy(method.RANDOM)
    # ITK reads seed 0 as "seed from the wall clock" (sitk.sitkWallClock): shift by one so every
    # configured seed, 0 included, is a fixed one and the run is reproducible.
    method.SetMetricSamplingPercentage(cfg.sampling, cfg.seed + 1)
    if mask is not None:
        method.SetMetricFixedMask(to_sitk(mr, mask.astype(np.uint8)))
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=cfg.learning_rate_mm,
        minStep=cfg.min_step_mm,
        numberOfIterations=cfg.iterations,
        relaxationFactor=cfg.relaxation,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([int(f) for f in cfg.shrink_factors])
    method.SetSmoothingSigmasPerLevel([float(s) for s in cfg.smoothing_mm])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=True)
    try:
        method.Execute(fixed, moving)
    except RuntimeError as exc:
        line = _one_line(exc)
        if "outside moving image buffer" in line or "overlap" in line.lower():
            raise RegistrationError(f"PET and MR do not overlap in patient space ({line})", "no_overlap") from None
        raise RegistrationError(f"SimpleITK registration failed: {line}", "library") from None
    stop = method.GetOptimizerStopConditionDescription()
    iterations = int(method.GetOptimizerIteration())
    converged = iterations < cfg.iterations and "Maximum number of iterations" not in stop
    # inPlace=True: ``initial`` now holds the optimised Euler3DTransform (Execute would return a composite).
    transform = _euler_to_patient(initial)
    return SitkRun(transform, converged, float(method.GetMetricValue()), iterations, stop.strip())
