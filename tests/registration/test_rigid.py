"""Tests of mdafuse.registration.rigid: rigid PET-to-MR registration (SimpleITK, Mattes MI)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from mdafuse.io.volume import Volume
from mdafuse.registration import (
    METHOD,
    PatientRigidTransform,
    PetRegistrationConfig,
    PetRegistrationResult,
    RegistrationError,
    head_mask,
    register_pet_to_mr,
    resample_pet_to_mr,
)
from tests.registration.phantoms import brain_points, make_mr, make_pet, tre_mm

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mr() -> Volume:
    return make_mr()


def _rotation_error_deg(a: PatientRigidTransform, b: PatientRigidTransform) -> float:
    return PatientRigidTransform(tuple(map(tuple, a.rotation_matrix @ b.rotation_matrix.T))).angle_deg  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("axis", "angle", "translation", "origin_shift"),
    [
        ((0.3, 1.0, 0.2), 8.0, (6.0, -7.0, 5.0), (0.0, 0.0, 0.0)),
        ((0.0, 0.2, 1.0), 10.0, (-10.0, 10.0, -8.0), (0.0, 0.0, 0.0)),
        # a different scanner: its patient frame is 80 mm off along every axis (headers far apart)
        ((1.0, 0.0, 0.0), 5.0, (83.0, -78.0, 74.0), (80.0, -80.0, 80.0)),
    ],
)
def test_recovers_a_known_rigid_transform(mr, axis, angle, translation, origin_shift):
    centre = (0.0, 5.0, 0.0)
    truth = PatientRigidTransform.from_axis_angle(axis, angle, translation, centre)
    pet = make_pet(truth, seed=3, origin_shift=origin_shift)
    res = register_pet_to_mr(pet, mr)
    points = brain_points(mr)
    err = tre_mm(points, res.transform, truth)
    assert err < 1.5, f"TRE {err:.2f} mm (MR voxels are 3 x 3 x 4 mm)"
    assert _rotation_error_deg(res.transform, truth) < 1.0
    assert res.converged and res.iterations > 0 and res.seconds > 0
    assert res.quality > res.quality_before or math.isnan(res.quality_before)
    assert res.overlap > 0.85
    assert res.library.startswith("SimpleITK ")


def test_result_fields_row_and_reproducibility(mr):
    truth = PatientRigidTransform.from_axis_angle((1.0, 1.0, 0.0), 4.0, (2.0, -3.0, 4.0))
    pet = make_pet(truth, seed=4)
    a = register_pet_to_mr(pet, mr)
    b = register_pet_to_mr(pet, mr)
    # fixed sampling seed, one thread: reproducible (ITK's multi-threaded pyramid filters change the last bits: ~1e-9 mm)
    np.testing.assert_allclose(a.transform.matrix, b.transform.matrix, rtol=0, atol=1e-6)
    assert [f.name for f in fields(PetRegistrationResult)] == ["transform", "converged", "quality", "quality_before", "overlap", "mattes_mi", "iterations", "stop_reason", "seconds", "library"]
    row = json.loads(json.dumps(a.as_row()))
    assert row["registration"] == METHOD
    assert row["registration_quality"] == pytest.approx(a.quality)
    assert PatientRigidTransform.from_json(row["registration_transform"]) == a.transform
    assert a.mattes_mi < 0 and "\n" not in a.stop_reason


def test_registered_pet_matches_the_mr_anatomy(mr):
    truth = PatientRigidTransform.from_axis_angle((0.0, 0.0, 1.0), 7.0, (5.0, 5.0, 0.0))
    pet = make_pet(truth, seed=5)
    res = register_pet_to_mr(pet, mr)
    on_mr = resample_pet_to_mr(pet, mr, res.transform)
    ideal = resample_pet_to_mr(pet, mr, truth)
    naive = resample_pet_to_mr(pet, mr, PatientRigidTransform.identity())
    region = head_mask(mr.data)
    err_reg = np.abs(on_mr.data - ideal.data)[region].mean()
    err_naive = np.abs(naive.data - ideal.data)[region].mean()
    assert err_reg < 0.25 * err_naive


def test_an_mr_mask_restricts_the_similarity_when_asked(mr):
    truth = PatientRigidTransform.from_axis_angle((0.0, 1.0, 0.0), 3.0, (4.0, 0.0, -2.0))
    pet = make_pet(truth, seed=6)
    mask = ndimage.binary_dilation(head_mask(mr.data), iterations=2)
    res = register_pet_to_mr(pet, mr, PetRegistrationConfig(use_mask=True), mr_mask=mask)
    assert tre_mm(brain_points(mr), res.transform, truth) < 1.5
    with pytest.raises(ValueError, match="MR shape"):
        register_pet_to_mr(pet, mr, mr_mask=mask[1:])


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message and len(message) < 300
    return message


def test_empty_pet_raises_a_one_line_registration_error(mr):
    empty = Volume(np.zeros((24, 48, 48), dtype=np.float32), np.diag([4.0, 4.0, 4.0, 1.0]), modality="PT")
    with pytest.raises(RegistrationError) as exc:
        register_pet_to_mr(empty, mr)
    assert exc.value.reason == "degenerate"
    assert "flat" in _one_line(exc)
    nan_pet = make_pet(PatientRigidTransform.identity())
    nan_pet.data[0, 0, 0] = np.nan
    with pytest.raises(RegistrationError, match="non-finite"):
        register_pet_to_mr(nan_pet, mr)
    with pytest.raises(RegistrationError, match="empty|voxels"):
        register_pet_to_mr(make_pet(PatientRigidTransform.identity()), mr, mr_mask=np.zeros(mr.shape, dtype=bool))


def test_non_overlapping_volumes_raise_a_one_line_registration_error(mr):
    near = make_pet(PatientRigidTransform.identity())
    far_affine = near.affine.copy()
    far_affine[0, 3] += 1000.0  # the PET header puts it a metre to the left; headers trusted
    pet = Volume(near.data, far_affine, modality="PT")
    with pytest.raises(RegistrationError) as exc:
        register_pet_to_mr(pet, mr, PetRegistrationConfig(initialisation="header"))
    assert exc.value.reason == "no_overlap"
    assert "overlap" in _one_line(exc)


def test_hitting_the_iteration_limit_is_not_convergence(mr):
    pet = make_pet(PatientRigidTransform.from_axis_angle((0, 0, 1), 5.0, (5.0, 0.0, 0.0)))
    cfg = PetRegistrationConfig(iterations=2, shrink_factors=(1,), smoothing_mm=(1.0,))
    with pytest.raises(RegistrationError) as exc:
        register_pet_to_mr(pet, mr, cfg)
    assert exc.value.reason == "not_converged"
    assert "converge" in _one_line(exc)
    res = register_pet_to_mr(pet, mr, replace(cfg, require_convergence=False))
    assert not res.converged and res.iterations == 2


def test_config_validation():
    with pytest.raises(ValueError, match="smoothing_mm"):
        PetRegistrationConfig(shrink_factors=(4, 2), smoothing_mm=(1.0,))
    with pytest.raises(ValueError, match="sampling"):
        PetRegistrationConfig(sampling=0.0)
    with pytest.raises(ValueError, match="initialisation"):
        PetRegistrationConfig(initialisation="guess")
    with pytest.raises(ValueError, match="metric"):
        PetRegistrationConfig(metric="ncc")


def test_rgb_and_sheared_volumes_are_refused(mr):
    rgb = Volume(np.zeros((4, 4, 4, 3)), np.eye(4))
    with pytest.raises(RegistrationError, match="grey"):
        register_pet_to_mr(rgb, mr)
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    pet = make_pet(PatientRigidTransform.identity())
    with pytest.raises(RegistrationError, match="sheared"):
        register_pet_to_mr(Volume(pet.data, sheared @ pet.affine), mr)


def test_importing_the_package_loads_neither_simpleitk_nor_torch_nor_ray():
    code = "import sys, mdafuse.registration; sys.exit(bool({'SimpleITK', 'torch', 'ray'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], cwd=str(ROOT)).returncode == 0


def _synthetic_pet_from_t1(t1: np.ndarray, tumour: np.ndarray, slice_mm: float, seed: int) -> np.ndarray:
    """FDG-like SUV from a T1: brain 1.5-2.5 following the T1, tumour 6, 6 mm FWHM, noise (as benchmarks/tumor_progression.py)."""
    t1 = t1.astype(np.float64)
    p99 = float(np.percentile(t1, 99))
    brain = t1 > 0.1 * p99
    suv = np.where(brain, 2.0 * (0.75 + 0.5 * np.clip(t1 / p99, 0.0, 1.0)), 0.0)
    suv[tumour > 0.5] = 6.0
    sigma = 6.0 / 2.3548
    suv = ndimage.gaussian_filter(suv, (sigma / slice_mm, sigma, sigma))
    suv += 0.05 * np.sqrt(suv) * np.random.default_rng(seed).standard_normal(suv.shape)
    return np.clip(suv, 0.0, None).astype(np.float32)


def test_real_t1_with_synthetic_pet_from_another_scanner(tumor_root):
    """Brain-Tumor-Progression patient 01: a PET on a 2 x 2 x 5 mm grid, moved by a known transform, is recovered within a voxel."""
    from mdafuse.io.nifti import read_nifti

    folder = tumor_root / "01"
    t1 = read_nifti(folder / "Pre_Scan_T1.nii.gz")
    tumour = read_nifti(folder / "Pre_Mask.nii.gz").data
    affine = t1.affine.copy()
    affine[:3, 2] *= 5.0  # the slices are ~5 mm apart (the headers say 1 mm)
    mr = Volume(t1.data, affine, modality="MR", frame_of_reference_uid="mr")
    suv = _synthetic_pet_from_t1(mr.data, tumour, 5.0, seed=11)
    z, y, x = suv.shape
    pet_data = suv[:, : y // 2 * 2, : x // 2 * 2].reshape(z, y // 2, 2, x // 2, 2).mean(axis=(2, 4))
    block = np.diag([2.0, 2.0, 1.0, 1.0])
    block[:2, 3] = 0.5
    brain = np.argwhere(head_mask(mr.data))
    points = brain[:, ::-1] @ affine[:3, :3].T + affine[:3, 3]
    truth = PatientRigidTransform.from_axis_angle((0.2, -0.5, 1.0), 7.0, (8.0, -6.0, 5.0), points.mean(axis=0))
    pet = Volume(pet_data, truth.matrix @ affine @ block, modality="PT", frame_of_reference_uid="pet")
    res = register_pet_to_mr(pet, mr)
    d = res.transform.apply(points) - truth.apply(points)
    d_vox = np.linalg.solve(affine[:3, :3], d.T).T
    tre_vox = float(np.linalg.norm(d_vox, axis=1).mean())
    assert tre_vox < 1.0, f"TRE {tre_vox:.2f} MR voxels ({np.linalg.norm(d, axis=1).mean():.2f} mm)"
    assert res.quality > res.quality_before + 0.01
