"""Round trips and errors of mdafuse.io.images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mdafuse.io.images import ImageReadError, read_image, read_pair, write_image


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_grey_8bit_round_trip_is_exact(tmp_path, suffix):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (33, 35)).astype(np.float32) / 255
    path = write_image(tmp_path / f"g{suffix}", img)
    back = read_image(path)
    assert back.dtype == np.float32 and back.shape == (33, 35)
    np.testing.assert_array_equal(back, img)


def test_rgb_round_trip_and_16bit(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (17, 19, 3)).astype(np.float32) / 255
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "c.png", rgb)), rgb)
    g16 = rng.integers(0, 65536, (9, 11)).astype(np.float64) / 65535
    back = read_image(write_image(tmp_path / "g16.png", g16, bits=16))
    assert np.abs(back - g16).max() < 1e-6


def test_jpeg_reads_close(tmp_path):
    img = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))
    back = read_image(write_image(tmp_path / "x.jpg", img))
    assert back.shape == (64, 64) and np.abs(back - img).mean() < 2 / 255


def test_write_rounds_instead_of_truncating(tmp_path):
    # 200.6 levels must become 201 (rounding), not 200 (truncation).
    img = np.full((4, 4), 200.6 / 255, np.float32)
    img[0, 0] = 0.0
    back = read_image(write_image(tmp_path / "r.png", img))
    assert np.all(back[1:] == np.float32(201 / 255)) and back[0, 0] == 0


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="no such image file"):
        read_image(tmp_path / "missing.png")
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ImageReadError, match="corrupt.png: cannot decode"):
        read_image(bad)
    (tmp_path / "x.bmp").write_bytes(b"x")
    with pytest.raises(ImageReadError, match="unsupported image type"):
        read_image(tmp_path / "x.bmp")
    write_image(tmp_path / "blank.png", np.zeros((8, 8)))
    with pytest.raises(ImageReadError, match="blank.png: image is blank"):
        read_image(tmp_path / "blank.png")
    with pytest.raises(ValueError, match="NaN"):
        write_image(tmp_path / "n.png", np.full((3, 3), np.nan))


def test_pair_size_mismatch_and_resample(tmp_path):
    write_image(tmp_path / "mr.png", np.eye(32, dtype=np.float32))
    write_image(tmp_path / "pet.png", np.full((16, 16, 3), 0.5, np.float32) * np.array([1.0, 0.2, 0.1], np.float32))
    with pytest.raises(ImageReadError, match="pet.png: size 16x16 differs from MR"):
        read_pair(tmp_path / "mr.png", tmp_path / "pet.png")
    mr, pet = read_pair(tmp_path / "mr.png", tmp_path / "pet.png", resample=True)
    assert mr.shape == (32, 32) and pet.shape == (32, 32, 3)
    np.testing.assert_allclose(pet[..., 0], 0.5, atol=1 / 255)


def test_grey_saved_as_rgb_becomes_grey(tmp_path):
    g = np.random.default_rng(2).random((8, 8)).astype(np.float32)
    Image.fromarray(np.repeat((g[..., None] * 255).round().astype(np.uint8), 3, axis=2)).save(tmp_path / "ct.png")
    write_image(tmp_path / "mr.png", g)
    _, ct = read_pair(tmp_path / "mr.png", tmp_path / "ct.png")
    assert ct.ndim == 2
