"""SSIM and VIF: ideal values, a brute-force SSIM reference, symmetry and monotonicity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mdafuse.metrics import ssim, ssim_index, vif, vif_index


def _smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    x = 0.5 + 0.3 * np.sin(6 * xx + 3 * yy) + 0.1 * rng.standard_normal((h, w))
    return np.clip(x, 0, 1)


def _ssim_bruteforce(x: np.ndarray, y: np.ndarray) -> float:
    """Reference: explicit 11 x 11 Gaussian (sigma 1.5) weighted statistics at each valid position,
    written from Wang et al. (2004), eq. 13-15, independently of the library's filters."""
    t = np.arange(11) - 5.0
    g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * 1.5**2))
    g /= g.sum()
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = np.sum(g * px), np.sum(g * py)
            vx, vy = np.sum(g * (px - mx) ** 2), np.sum(g * (py - my) ** 2)
            cxy = np.sum(g * (px - mx) * (py - my))
            vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_ssim_identity_is_one() -> None:
    a = _smooth_image(33, 35, 0)
    assert ssim_index(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, a, a) == pytest.approx(2.0, abs=1e-12)
    assert ssim(a, a, a, reduction="mean") == pytest.approx(1.0, abs=1e-12)
    assert ssim_index(a, a, gaussian=False, win_size=7) == pytest.approx(1.0, abs=1e-12)


def test_ssim_matches_bruteforce_reference() -> None:
    x = _smooth_image(14, 16, 1)
    y = np.clip(x + 0.1 * np.random.default_rng(2).standard_normal(x.shape), 0, 1)
    ref = _ssim_bruteforce(x, y)
    assert 0.2 < ref < 0.99
    assert ssim_index(x, y) == pytest.approx(ref, abs=1e-10)


def test_ssim_symmetric_and_drops_with_noise() -> None:
    rng = np.random.default_rng(3)
    a, b = _smooth_image(48, 48, 4), _smooth_image(48, 48, 5)
    f0 = 0.5 * (a + b)
    assert ssim(a, b, f0) == pytest.approx(ssim(b, a, f0), rel=1e-12)
    values = [ssim(a, b, np.clip(f0 + s * rng.standard_normal(f0.shape), 0, 1)) for s in (0.0, 0.05, 0.2)]
    assert values[0] > values[1] > values[2]


def test_ssim_bad_options_raise() -> None:
    a = _smooth_image(12, 12, 0)
    with pytest.raises(ValueError, match="at least win_size=11"):
        ssim_index(a[:8, :8], a[:8, :8])
    with pytest.raises(ValueError, match="win_size must be an odd"):
        ssim_index(a, a, win_size=4)


def test_vif_identity_is_one_per_source() -> None:
    a = _smooth_image(45, 47, 6)
    b = _smooth_image(45, 47, 7)
    assert vif_index(a, a) == pytest.approx(1.0, abs=1e-9)
    assert vif(a, a, a) == pytest.approx(2.0, abs=1e-9)
    assert vif(a, a, a, reduction="mean") == pytest.approx(1.0, abs=1e-9)
    # On [0, 1] the 1e-10 regulariser of the gain g = s_xy / (s_x^2 + 1e-10) is no longer negligible.
    assert vif_index(a, a, scale=1.0) == pytest.approx(1.0, abs=1e-6)
    assert vif(a, b, a) == pytest.approx(vif_index(a, a) + vif_index(b, a), abs=1e-12)


def test_vif_gain_and_noise() -> None:
    """A pure contrast gain g (no noise) scores above 1 for g > 1 and below 1 for g < 1."""
    rng = np.random.default_rng(8)
    a = 0.25 + 0.5 * _smooth_image(48, 48, 9)
    assert vif_index(a, 0.5 + 1.5 * (a - 0.5)) > 1.0
    assert vif_index(a, 0.5 + 0.5 * (a - 0.5)) < 1.0
    noisy = [vif_index(a, np.clip(a + s * rng.standard_normal(a.shape), 0, 1)) for s in (0.02, 0.1)]
    assert 1.0 > noisy[0] > noisy[1] > 0.0


def test_vif_symmetric_and_too_small_raises() -> None:
    a, b, f = (_smooth_image(41, 41, s) for s in (10, 11, 12))
    assert vif(a, b, f) == pytest.approx(vif(b, a, f), rel=1e-12)
    assert math.isfinite(vif(a, b, f))
    with pytest.raises(ValueError, match="too small for the 4-scale VIF"):
        vif_index(a[:40, :40], a[:40, :40])
    with pytest.raises(ValueError, match="scale must be"):
        vif_index(a, a, scale=0)
