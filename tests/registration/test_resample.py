"""Tests of mdafuse.registration.resample: putting a PET on the MR grid through a rigid transform."""

from __future__ import annotations

import numpy as np

from mdafuse.io.resample import resample_to
from mdafuse.io.volume import Volume
from mdafuse.registration import PatientRigidTransform, pet_in_mr_space, resample_pet_to_mr


def _grid(shape=(10, 12, 14), spacing=(2.0, 2.0, 3.0), origin=(-13.0, -11.0, -13.5)) -> np.ndarray:
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = origin
    return a


def test_identity_equals_same_frame_resampling():
    rng = np.random.default_rng(0)
    mr = Volume(rng.uniform(0, 1, (10, 12, 14)), _grid(), modality="MR", frame_of_reference_uid="1.2")
    pet = Volume(rng.uniform(0, 5, (8, 9, 10)), _grid((8, 9, 10), (3.0, 3.0, 3.0), (-12.0, -12.0, -10.0)), modality="PT", frame_of_reference_uid="9.9")
    out = resample_pet_to_mr(pet, mr, PatientRigidTransform.identity())
    ref = resample_to(pet, mr, allow_different_frames=True)
    np.testing.assert_array_equal(out.data, ref.data)
    np.testing.assert_array_equal(out.affine, mr.affine)
    assert out.shape == mr.shape and out.modality == "PT"
    assert out.warnings == pet.warnings  # no "different frames" warning once registered


def test_a_hot_voxel_lands_where_the_transform_says():
    mr = Volume(np.zeros((20, 20, 20)), _grid((20, 20, 20), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0)), modality="MR")
    # PET: one hot voxel at PET LPS point p; the MR voxel showing it is x = T^-1(p).
    pet_affine = _grid((20, 20, 20), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    data = np.zeros((20, 20, 20), dtype=np.float32)
    data[12, 8, 10] = 1.0  # (z, y, x) -> LPS (20, 16, 24)
    pet = Volume(data, pet_affine, modality="PT")
    t = PatientRigidTransform.from_axis_angle((0, 0, 1), 90.0, (2.0, 0.0, -4.0), centre=(20.0, 20.0, 20.0))
    x = t.inverse().apply(np.array([20.0, 16.0, 24.0]))
    out = resample_pet_to_mr(pet, mr, t, order=0)
    hot = np.argwhere(out.data > 0.5)
    assert len(hot) == 1
    zyx = hot[0]
    np.testing.assert_allclose(mr.affine[:3, :3] @ zyx[::-1] + mr.affine[:3, 3], x, atol=1e-6)


def test_pet_in_mr_space_moves_only_the_affine_and_the_frame():
    pet = Volume(np.ones((4, 5, 6)), _grid((4, 5, 6)), modality="PT", frame_of_reference_uid="pet")
    mr = Volume(np.ones((4, 5, 6)), _grid((4, 5, 6)), modality="MR", frame_of_reference_uid="mr")
    t = PatientRigidTransform.from_axis_angle((1, 0, 0), 5.0, (1.0, 2.0, 3.0))
    moved = pet_in_mr_space(pet, mr, t)
    np.testing.assert_array_equal(moved.data, pet.data)
    np.testing.assert_allclose(t.matrix @ moved.affine, pet.affine, atol=1e-12)
    assert moved.frame_of_reference_uid == "mr" and pet.frame_of_reference_uid == "pet"


def test_outside_the_pet_is_cval():
    mr = Volume(np.zeros((6, 6, 6)), _grid((6, 6, 6), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    pet = Volume(np.ones((6, 6, 6)), _grid((6, 6, 6), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    out = resample_pet_to_mr(pet, mr, PatientRigidTransform.from_axis_angle((0, 0, 1), 0.0, (100.0, 0.0, 0.0)), cval=np.nan)
    assert np.isnan(out.data).all()
