"""Tests of mdafuse.io.nifti: (Z, Y, X)/LPS <-> NIfTI (i, j, k)/RAS conversion and round trips."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mdafuse.io.nifti import NiftiError, read_nifti, write_nifti
from mdafuse.io.volume import Volume
from tests.geometry import index_to_patient


def oblique_affine() -> np.ndarray:
    a = np.deg2rad(20.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.9, 1.1, 2.5])
    affine[:3, 3] = [-40.0, 12.5, 7.0]
    return affine


def test_round_trip_grey(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vol = Volume(data=rng.normal(size=(5, 33, 35)).astype(np.float32), affine=oblique_affine())
    path = write_nifti(vol, tmp_path / "v.nii.gz")
    back = read_nifti(path)
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)


def test_ras_conversion_and_axis_order(tmp_path: Path) -> None:
    """nibabel sees (i, j, k) = (x, y, z) order and the RAS affine diag(-1, -1, 1, 1) @ LPS."""
    data = np.zeros((4, 5, 6), dtype=np.float32)
    data[3, 1, 2] = 7.0  # slice 3, row 1, column 2
    affine = oblique_affine()
    path = write_nifti(data, tmp_path / "v.nii", affine=affine)
    img = nib.load(str(path))
    assert img.shape == (6, 5, 4)
    assert img.get_fdata()[2, 1, 3] == 7.0
    np.testing.assert_allclose(img.affine, np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine, atol=1e-5)
    # The voxel's RAS position from nibabel equals its LPS position from the Volume with x, y negated.
    ras = img.affine @ [2, 1, 3, 1]
    lps = index_to_patient(Volume(data=data, affine=affine), [3, 1, 2])
    np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-4)


def test_read_external_ras_file(tmp_path: Path) -> None:
    """A file made by nibabel directly (RAS, 1 mm, origin at 10, 20, 30) reads as LPS (-10, -20, 30)."""
    arr = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    affine_ras = np.eye(4)
    affine_ras[:3, 3] = [10.0, 20.0, 30.0]
    nib.save(nib.Nifti1Image(arr, affine_ras), str(tmp_path / "ext.nii.gz"))
    vol = read_nifti(tmp_path / "ext.nii.gz")
    assert vol.shape == (4, 3, 2)
    assert vol.data[3, 2, 1] == arr[1, 2, 3]
    np.testing.assert_allclose(index_to_patient(vol, [0, 0, 0]), [-10.0, -20.0, 30.0])
    np.testing.assert_allclose(index_to_patient(vol, [0, 0, 1]), [-11.0, -20.0, 30.0])


def test_round_trip_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.uniform(size=(3, 7, 9, 3)).astype(np.float32)
    path = write_nifti(rgb, tmp_path / "rgb.nii.gz", affine=oblique_affine())
    back = read_nifti(path)
    assert back.data.shape == (3, 7, 9, 3)
    err = np.abs(back.data - rgb)
    assert err.max() <= 0.5 / 255.0 + 1e-6


def test_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nii"
    bad.write_bytes(b"not nifti" * 50)
    with pytest.raises(NiftiError, match=r"bad\.nii: cannot read as NIfTI"):
        read_nifti(bad)
    with pytest.raises(FileNotFoundError, match="no such NIfTI file"):
        read_nifti(tmp_path / "missing.nii")
    with pytest.raises(ValueError, match="affine .* is required"):
        write_nifti(np.zeros((2, 3, 4)), tmp_path / "x.nii")
    with pytest.raises(ValueError, match=r"must end with \.nii"):
        write_nifti(np.zeros((2, 3, 4)), tmp_path / "x.png", affine=np.eye(4))
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4, 5), dtype=np.float32), np.eye(4)), str(tmp_path / "4d.nii"))
    with pytest.raises(NiftiError, match="expected a 3-D volume"):
        read_nifti(tmp_path / "4d.nii")


def test_volume_validation_and_with_data() -> None:
    vol = Volume(data=np.zeros((2, 3, 4)), affine=np.diag([2.0, 3.0, 4.0, 1.0]), warnings=["w"])
    assert vol.data.dtype == np.float32 and vol.spacing == (4.0, 3.0, 2.0)
    other = vol.with_data(np.ones((2, 3, 4, 3)), modality="OT")
    assert other.data.shape == (2, 3, 4, 3) and other.warnings == ["w"] and other.warnings is not vol.warnings
    with pytest.raises(ValueError, match="must keep the grid shape"):
        vol.with_data(np.ones((3, 3, 4)))
    with pytest.raises(ValueError, match=r"shape \(Z, Y, X\)"):
        Volume(data=np.zeros((3, 4)), affine=np.eye(4))
    with pytest.raises(ValueError, match="invertible"):
        Volume(data=np.zeros((2, 3, 4)), affine=np.zeros((4, 4)))


def test_gz_name_with_inflated_bytes_reads(tmp_path: Path) -> None:
    """An S3 server that stores .gz with Content-Encoding: gzip hands back plain NIfTI bytes under the .nii.gz name."""
    import gzip

    rng = np.random.default_rng(1)
    vol = Volume(data=rng.normal(size=(3, 8, 9)).astype(np.float32), affine=oblique_affine())
    packed = write_nifti(vol, tmp_path / "v.nii.gz")
    inflated = tmp_path / "inflated" / "v.nii.gz"
    inflated.parent.mkdir()
    inflated.write_bytes(gzip.decompress(packed.read_bytes()))
    np.testing.assert_array_equal(read_nifti(inflated).data, vol.data)
