"""Tests of mdafuse.io.windows: MR percentile window, SUV window and the 'hot' PET colour map."""

from __future__ import annotations

import numpy as np
import pytest

from mdafuse.color import luminance
from mdafuse.io.windows import normalise_mr, pet_colormap, pet_to_rgb, window_suv


def test_normalise_mr_percentiles() -> None:
    """A ramp 0..1000 (1001 values): the 1st and 99.5th percentiles are 10 and 995 (numpy linear)."""
    ramp = np.arange(1001.0)
    out = normalise_mr(ramp)
    assert out.dtype == np.float32 and out.shape == ramp.shape
    assert out[10] == 0.0 and out[995] == 1.0 and out[0] == 0.0 and out[1000] == 1.0
    assert abs(out[500] - (500 - 10) / 985) < 1e-6


def test_normalise_mr_shapes_and_constant() -> None:
    rng = np.random.default_rng(0)
    vol = rng.normal(100, 20, size=(3, 33, 35))
    out = normalise_mr(vol)
    assert out.shape == (3, 33, 35) and 0.0 <= out.min() and out.max() <= 1.0
    assert np.all(normalise_mr(np.full((4, 5), 3.0)) == 0.0)
    with pytest.raises(ValueError, match="low_pct < high_pct"):
        normalise_mr(vol, low_pct=50, high_pct=10)


def test_window_suv() -> None:
    out = window_suv(np.array([-1.0, 0.0, 4.0, 8.0, 12.0]))
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(window_suv(np.array([3.0]), lo=2.0, hi=6.0), [0.25])
    with pytest.raises(ValueError, match="hi > lo"):
        window_suv(np.zeros(3), lo=2, hi=2)


def test_pet_colormap_anchor_colours() -> None:
    x = np.array([0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0, 1.0 / 6.0])
    rgb = pet_colormap(x)
    np.testing.assert_allclose(rgb, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1], [0.5, 0, 0]], atol=1e-6)


def test_pet_colormap_shape_and_monotone_luminance() -> None:
    x = np.linspace(0.0, 1.0, 33 * 35).reshape(33, 35)
    rgb = pet_colormap(x)
    assert rgb.shape == (33, 35, 3) and rgb.dtype == np.float32
    y = luminance(rgb).ravel()
    assert np.all(np.diff(y) >= -1e-6)
    assert pet_to_rgb(np.full((2, 2), 8.0)).shape == (2, 2, 3)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        pet_colormap(np.array([0.5, 1.5]))
