"""BT.601 YCbCr conversions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mdafuse.color import luminance, rebuilt_luminance, rgb_to_ycbcr, with_luminance, ycbcr_to_rgb
from mdafuse.fusion.color import rgb_to_ycbcr_torch, ycbcr_to_rgb_torch


def test_round_trip_exact_within_one_level():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (64, 64, 3)).astype(np.float32) / 255
    back = ycbcr_to_rgb(rgb_to_ycbcr(rgb))
    assert np.abs(back - rgb).max() < 1e-6  # far inside 1/255
    assert np.array_equal(np.rint(back * 255), np.rint(rgb * 255))


def test_reference_values():
    # BT.601 full range (JFIF): pure red -> Y 0.299, Cb 0.5 - 0.168736, Cr 1.0.
    ycc = rgb_to_ycbcr(np.array([[[1.0, 0.0, 0.0]]], np.float32))[0, 0]
    np.testing.assert_allclose(ycc, [0.299, 0.5 - 0.168736, 1.0], atol=2e-6)
    grey = rgb_to_ycbcr(np.full((1, 1, 3), 0.4, np.float32))[0, 0]
    np.testing.assert_allclose(grey, [0.4, 0.5, 0.5], atol=1e-6)


def test_torch_matches_numpy():
    rgb = np.random.default_rng(1).random((2, 5, 7, 3)).astype(np.float32)
    t = torch.from_numpy(rgb).permute(0, 3, 1, 2).double()
    np.testing.assert_allclose(rgb_to_ycbcr_torch(t).permute(0, 2, 3, 1).numpy(), rgb_to_ycbcr(rgb), atol=1e-6)
    np.testing.assert_allclose(ycbcr_to_rgb_torch(rgb_to_ycbcr_torch(t)).numpy(), t.numpy(), atol=1e-12)


def test_luminance_and_errors():
    g = np.random.default_rng(2).random((4, 4)).astype(np.float32)
    np.testing.assert_array_equal(luminance(g), g)
    np.testing.assert_allclose(luminance(np.repeat(g[..., None], 3, 2)), g, atol=1e-6)
    with pytest.raises(ValueError, match="3 channels"):
        rgb_to_ycbcr(np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        rgb_to_ycbcr_torch(torch.zeros(1, 4, 2, 2))


def test_with_luminance_replaces_y_and_keeps_chroma():
    rng = np.random.default_rng(2)
    rgb = 0.2 + 0.6 * rng.random((6, 7, 3)).astype(np.float32)
    ycc = rgb_to_ycbcr(rgb)
    before = ycc.copy()
    np.testing.assert_allclose(with_luminance(ycc, ycc[..., 0]), rgb, atol=1e-6)
    y = np.full((6, 7), 0.5, dtype=np.float32)
    out = rgb_to_ycbcr(with_luminance(ycc, y))
    np.testing.assert_allclose(out[..., 0], 0.5, atol=1e-6)
    np.testing.assert_allclose(out[..., 1:], ycc[..., 1:], atol=1e-6)
    np.testing.assert_array_equal(ycc, before)  # the input is not changed
    with pytest.raises(ValueError, match="shape of ycbcr"):
        with_luminance(ycc, y[:5])


def test_rebuilt_luminance_is_y_in_gamut_and_lower_where_rgb_clips():
    rng = np.random.default_rng(3)
    ycc = rgb_to_ycbcr(0.2 + 0.6 * rng.random((5, 6, 3)).astype(np.float32))
    y = np.full((5, 6), 0.5)
    np.testing.assert_allclose(rebuilt_luminance(ycc, y), 0.5, atol=1e-6)  # mid-grey luminance: no channel clips
    # pure red has Cr = 0.5 + 0.5 * (1 - 0.299) / (1 - 0.299) = 1.0; at Y = 0.9 red would need R > 1, so it clips
    red = rgb_to_ycbcr(np.array([[[1.0, 0.0, 0.0]]], dtype=np.float32))
    rebuilt = rebuilt_luminance(red, np.array([[0.9]]))
    r, g, b = np.clip(ycbcr_to_rgb(np.array([[[0.9, red[0, 0, 1], red[0, 0, 2]]]]), clip=False)[0, 0], 0.0, 1.0)
    assert rebuilt[0, 0] == pytest.approx(0.299 * r + 0.587 * g + 0.114 * b, abs=1e-6)
    assert rebuilt[0, 0] < 0.9 - 0.05
    grey = np.linspace(0.0, 1.0, 12).reshape(3, 4)
    assert rebuilt_luminance(None, grey) is grey
