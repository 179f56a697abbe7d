"""Tests of energy-based colour enhancement (mdafuse.fusion.enhance)."""

from __future__ import annotations

import numpy as np
import pytest

from mdafuse.color import rgb_to_ycbcr
from mdafuse.fusion.enhance import EnhanceConfig, apply_colormap, energy_map, energy_weight, enhance


def _scene(h: int = 96, w: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A textured grey anatomy with a red-orange uptake disc; returns fused, functional, disc, ring."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - h / 2, xx - w / 2)
    disc = r < 10
    ring = (r > 16) & (r < 26)
    anatomy = np.clip(0.45 + 0.1 * np.sin(xx / 5.0) + rng.normal(0, 0.02, (h, w)), 0, 1)
    functional = np.zeros((h, w, 3))
    functional[disc] = (0.9, 0.45, 0.1)
    fused = np.repeat(anatomy[..., None], 3, axis=-1)
    fused[disc] = 0.5 * fused[disc] + 0.5 * functional[disc]
    return fused.astype(np.float32), functional.astype(np.float32), disc, ring & (r > 0)


def test_energy_map_reference_values():
    # Hand-computed: a single unit pixel spreads 1/9 over its 3x3 neighbourhood.
    y = np.zeros((9, 11), np.float32)
    y[4, 5] = 1.0
    e = energy_map(y, window=3)
    expected = np.zeros_like(y)
    expected[3:6, 4:7] = 1.0 / 9.0
    np.testing.assert_allclose(e, expected, atol=1e-7)
    # A constant image has energy c^2 everywhere (reflected borders).
    np.testing.assert_allclose(energy_map(np.full((33, 35), 0.6, np.float32), 7), 0.36, atol=1e-6)


def test_energy_map_range_and_shape():
    y = np.random.default_rng(1).uniform(0, 1, (33, 35)).astype(np.float32)
    e = energy_map(y, 5)
    assert e.shape == (33, 35) and e.dtype == np.float32
    assert 0.0 <= e.min() and e.max() <= 1.0
    # Energy is monotone in the signal: doubling a dim image quadruples its energy.
    np.testing.assert_allclose(energy_map(y * 0.5, 5) * 4.0, energy_map(y, 5), rtol=1e-5)


def test_energy_weight_properties():
    e = np.linspace(0, 1, 101)
    w = energy_weight(e, threshold=0.3, softness=0.05)
    assert w[0] == 0.0
    assert np.all(np.diff(w) >= 0)
    s0 = 1.0 / (1.0 + np.exp(0.3 / 0.05))
    assert w[30] == pytest.approx((0.5 - s0) / (1 - s0), abs=1e-5)
    assert w[-1] == pytest.approx(1.0, abs=1e-5)


def test_enhance_raises_contrast_and_spares_anatomy():
    fused, functional, disc, ring = _scene()
    out = enhance(fused, functional)
    assert out.shape == fused.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0

    def contrast(img: np.ndarray) -> float:
        return float(np.linalg.norm(img[disc].mean(axis=0) - img[ring].mean(axis=0)))

    factor = contrast(out) / contrast(fused)
    # Measured 1.86 with the default configuration; require a clear gain, bounded above.
    assert 1.3 < factor < 3.0
    # Chroma saturation rises inside the uptake.
    chroma = lambda img: np.hypot(*(rgb_to_ycbcr(img)[..., 1:] - 0.5).transpose(2, 0, 1))  # noqa: E731
    assert chroma(out)[disc].mean() > 1.3 * chroma(fused)[disc].mean()
    # Anatomy far from the uptake changes by less than one 8-bit level on average.
    far = np.hypot(*np.mgrid[:96, :96] - 48.0) > 20
    assert np.abs(out[far] - fused[far]).mean() < 1.0 / 255.0


def test_enhance_grey_inputs_use_colormap():
    fused, functional, disc, _ = _scene()
    grey_fused = fused[..., 0]
    grey_fn = rgb_to_ycbcr(functional)[..., 0]
    out = enhance(grey_fused, grey_fn, EnhanceConfig(colormap="hot"))
    assert out.shape == (96, 96, 3)
    far = np.hypot(*np.mgrid[:96, :96] - 48.0) > 20
    assert np.abs(out[far] - grey_fused[far][:, None]).mean() < 1.0 / 255.0
    # The "hot" map makes the uptake red-orange: red well above blue inside the disc.
    centre = out[44:52, 44:52]
    assert (centre[..., 0] - centre[..., 2]).mean() > 0.3
    jet = enhance(grey_fused, grey_fn, EnhanceConfig(colormap="jet"))
    assert not np.allclose(jet[disc], out[disc])


def test_apply_colormap_reference_values():
    np.testing.assert_allclose(apply_colormap(np.array([[0.0, 0.5, 1.0]]), "hot")[0], [[0, 0, 0], [1, 0.5, 0], [1, 1, 1]], atol=1e-6)
    np.testing.assert_allclose(apply_colormap(np.array([[0.5]]), "jet")[0, 0], [0.5, 1.0, 0.5], atol=1e-6)


def test_enhance_deterministic_and_dark_functional_is_identity():
    fused, functional, _, _ = _scene()
    np.testing.assert_array_equal(enhance(fused, functional), enhance(fused, functional))
    np.testing.assert_allclose(enhance(fused, np.zeros_like(functional)), fused, atol=1e-5)


@pytest.mark.parametrize(
    ("fused", "functional", "exc", "match"),
    [
        (np.zeros((8, 8, 3), np.float32), np.zeros((9, 8), np.float32), ValueError, "size"),
        (np.zeros((8, 8, 4), np.float32), np.zeros((8, 8), np.float32), ValueError, "fused must have shape"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.float32), TypeError, "float"),
        (np.full((8, 8), 2.0, np.float32), np.zeros((8, 8), np.float32), ValueError, r"\[0, 1\]"),
        (np.zeros((8, 8), np.float32), np.full((8, 8), np.nan, np.float32), ValueError, "NaN"),
    ],
)
def test_enhance_bad_input_raises(fused, functional, exc, match):
    with pytest.raises(exc, match=match):
        enhance(fused, functional)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="window"):
        EnhanceConfig(window=4)
    with pytest.raises(ValueError, match="colormap"):
        EnhanceConfig(colormap="viridis")
    with pytest.raises(ValueError, match="softness"):
        EnhanceConfig(softness=0.0)
    with pytest.raises(ValueError, match="window"):
        energy_map(np.zeros((8, 8), np.float32), window=2)
