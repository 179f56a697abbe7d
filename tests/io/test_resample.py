"""Tests of mdafuse.io.resample: affine-based resampling between grids, and slice selection."""

from __future__ import annotations

import numpy as np
import pytest

from mdafuse.io.resample import FrameOfReferenceError, resample_to, select_slices
from mdafuse.io.volume import Volume
from tests.geometry import index_to_patient


def grid_affine(spacing, angles_deg=(0.0, 0.0), origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Voxel (x, y, z) -> LPS with rotation about z then x (degrees), spacing (sx, sy, sz)."""
    az, ax = np.deg2rad(angles_deg)
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    affine = np.eye(4)
    affine[:3, :3] = rx @ rz @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def sphere_volume(shape, affine, center, radius, frame="1.2.3") -> Volume:
    vol = Volume(data=np.zeros(shape, np.float32), affine=affine, frame_of_reference_uid=frame, modality="PT", units="SUVbw")
    zyx = np.stack(np.indices(shape), axis=-1).astype(np.float64)
    dist = np.linalg.norm(index_to_patient(vol, zyx) - center, axis=-1)
    vol.data[...] = np.where(dist <= radius, 10.0, 1.0)
    return vol


def weighted_centroid_lps(vol: Volume, background: float = 1.0) -> np.ndarray:
    w = np.clip(vol.data - background, 0.0, None).astype(np.float64)
    zyx = np.stack(np.indices(vol.shape), axis=-1).reshape(-1, 3)
    c = (zyx * w.reshape(-1, 1)).sum(axis=0) / w.sum()
    return index_to_patient(vol, c)


def test_lesion_centroid_keeps_its_patient_position() -> None:
    """A 'lesion' sphere on an oblique 3 mm PET grid, resampled onto an axial 1.5 mm MR grid with a
    different origin and field of view, keeps its LPS centroid within one MR voxel (1.5 mm)."""
    center = np.array([12.3, -20.7, 41.9])
    pet = sphere_volume((14, 22, 20), grid_affine((3.0, 3.0, 3.0), (12.0, 7.0), (-15.0, -55.0, 15.0)), center, 9.0)
    assert np.linalg.norm(weighted_centroid_lps(pet) - center) < 1.5  # the PET rendering itself is right
    mr = Volume(data=np.zeros((30, 48, 44), np.float32), affine=grid_affine((1.5, 1.5, 1.5), origin=(-20.0, -50.0, 20.0)), frame_of_reference_uid="1.2.3")
    out = resample_to(pet, mr)
    assert out.shape == mr.shape
    np.testing.assert_array_equal(out.affine, mr.affine)
    assert out.modality == "PT" and out.units == "SUVbw"
    assert np.linalg.norm(weighted_centroid_lps(out) - center) <= 1.5
    # The resampled lesion sits where the MR grid says the centre is (a transposed axis would move it by tens of mm).
    peak = np.array(np.unravel_index(np.argmax(out.data), out.shape))
    assert np.linalg.norm(index_to_patient(mr, peak) - center) <= 9.0


def test_identity_and_integer_shift() -> None:
    rng = np.random.default_rng(0)
    vol = Volume(data=rng.uniform(size=(5, 9, 11)).astype(np.float32), affine=grid_affine((1.0, 2.0, 3.0), (30.0, 0.0), (1, 2, 3)))
    same = resample_to(vol, vol)
    np.testing.assert_allclose(same.data, vol.data, atol=1e-5)
    # Reference grid shifted by +2 columns and +1 slice in voxel space.
    ref_aff = vol.affine.copy()
    ref_aff[:3, 3] = vol.affine[:3, :3] @ [2, 0, 1] + vol.affine[:3, 3]
    ref = Volume(data=np.zeros((4, 9, 9), np.float32), affine=ref_aff)
    out = resample_to(vol, ref, order=1, cval=-1.0)
    np.testing.assert_allclose(out.data, vol.data[1:5, :, 2:11], atol=1e-5)
    nearest = resample_to(vol, ref, order=0)
    np.testing.assert_array_equal(nearest.data, vol.data[1:5, :, 2:11])
    assert any("FrameOfReferenceUID unknown" in w for w in out.warnings)


def test_rgb_resampled_per_channel() -> None:
    rng = np.random.default_rng(1)
    rgb = Volume(data=rng.uniform(size=(3, 5, 6, 3)).astype(np.float32), affine=np.eye(4))
    out = resample_to(rgb, Volume(data=np.zeros((3, 5, 6), np.float32), affine=np.eye(4)))
    np.testing.assert_allclose(out.data, rgb.data, atol=1e-6)


def test_different_frames_of_reference() -> None:
    a = Volume(data=np.ones((2, 3, 4), np.float32), affine=np.eye(4), frame_of_reference_uid="1.1", series_uid="9.1")
    b = Volume(data=np.ones((2, 3, 4), np.float32), affine=np.eye(4), frame_of_reference_uid="1.2", series_uid="9.2")
    with pytest.raises(FrameOfReferenceError, match="FrameOfReferenceUID 1.1 .* has 1.2"):
        resample_to(a, b)
    out = resample_to(a, b, allow_different_frames=True)
    assert out.frame_of_reference_uid == "1.2"
    assert any("different frames of reference" in w for w in out.warnings)
    with pytest.raises(ValueError, match="order must be"):
        resample_to(a, a, order=5)


def test_select_slices() -> None:
    data = np.zeros((8, 10, 10), np.float32)
    data[2:6, 2:8, 2:8] = 1.0
    data[1, 0, 0] = 1.0  # a single bright pixel is not brain
    vol = Volume(data=data, affine=np.eye(4))
    np.testing.assert_array_equal(select_slices(vol), np.arange(8))
    np.testing.assert_array_equal(select_slices(vol, "brain"), [2, 3, 4, 5])
    np.testing.assert_array_equal(select_slices(vol, (3, 6)), [3, 4, 5])
    np.testing.assert_array_equal(select_slices(vol, slice(None, None, 3)), [0, 3, 6])
    with pytest.raises(ValueError, match="0 <= start < stop <= 8"):
        select_slices(vol, (4, 9))
    with pytest.raises(ValueError, match="mode must be"):
        select_slices(vol, "brian")
