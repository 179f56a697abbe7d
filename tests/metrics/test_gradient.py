"""SF, AG, rSFe and Qabf against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mdafuse.metrics import ag, extended_spatial_frequency, qabf, rsfe, sf, spatial_frequency
from mdafuse.metrics.gradient import QABF_CONSTANTS


def _delta3() -> np.ndarray:
    x = np.zeros((3, 3))
    x[1, 1] = 1.0
    return x


def test_sf_hand_values() -> None:
    stripes = np.array([[0.0, 1.0, 0.0]] * 3)
    assert spatial_frequency(stripes) == pytest.approx(255.0, abs=1e-9)
    # delta: 2 of 6 row differences and 2 of 6 column differences are +-1.
    assert spatial_frequency(_delta3(), scale=1.0) == pytest.approx(math.sqrt(2 / 3), abs=1e-12)
    z = np.zeros((3, 3))
    assert sf(z, z, stripes) == pytest.approx(255.0, abs=1e-9)
    assert sf(stripes, stripes, np.full((5, 6), 0.7)[:3, :3]) == 0.0


def test_extended_sf_hand_value_on_3x3() -> None:
    """Delta at the centre: each of the four directions has two +-1 differences, M N = 9."""
    expected = math.sqrt((2 + 2 + 2 / math.sqrt(2) + 2 / math.sqrt(2)) / 9)
    assert extended_spatial_frequency(_delta3()) == pytest.approx(expected, abs=1e-12)
    assert extended_spatial_frequency(np.full((4, 4), 0.2)) == 0.0


def test_ag_hand_value() -> None:
    """Ramp along columns by 0.1: dx = 25.5, dy = 0, so AG = 25.5 / sqrt(2)."""
    f = np.tile(np.arange(5) * 0.1, (4, 1))
    z = np.zeros_like(f)
    assert ag(z, z, f) == pytest.approx(25.5 / math.sqrt(2), abs=1e-9)
    assert ag(z, z, z) == 0.0


def test_rsfe_zero_when_f_is_reference_activity() -> None:
    """A and B live on disjoint supports separated by a zero gap, so every directional gradient of
    F = A + B equals the larger absolute gradient of the two sources."""
    rng = np.random.default_rng(0)
    a = np.zeros((12, 12))
    b = np.zeros((12, 12))
    a[1:5, 1:5] = rng.random((4, 4))
    b[7:11, 7:11] = rng.random((4, 4))
    assert rsfe(a, b, a + b) == pytest.approx(0.0, abs=1e-12)
    assert rsfe(a, b, 0.5 * (a + b)) == pytest.approx(-0.5, abs=1e-12)
    assert rsfe(a, b, np.zeros_like(a)) == pytest.approx(-1.0, abs=1e-12)


def test_rsfe_constant_source_and_degenerate() -> None:
    d = _delta3()
    z = np.zeros((3, 3))
    assert rsfe(d, z, d) == pytest.approx(0.0, abs=1e-12)
    assert rsfe(d, z, 0.5 * d) == pytest.approx(-0.5, abs=1e-12)
    assert rsfe(z, z, z) == 0.0
    assert rsfe(z, z, d) == math.inf


def _qabf_max() -> float:
    c = QABF_CONSTANTS
    q_g = c["gamma_g"] / (1 + math.exp(c["kappa_g"] * (1 - c["sigma_g"])))
    q_a = c["gamma_a"] / (1 + math.exp(c["kappa_a"] * (1 - c["sigma_a"])))
    return q_g * q_a


def test_qabf_f_equal_a_with_constant_b() -> None:
    """B carries no edges (weight 0), and F = A gives G = A = 1 everywhere: Q_g(1) Q_a(1)."""
    rng = np.random.default_rng(1)
    a = rng.random((20, 21))
    b = np.full_like(a, 0.3)
    assert _qabf_max() == pytest.approx(0.97479, abs=1e-5)
    assert qabf(a, b, a) == pytest.approx(_qabf_max(), abs=1e-12)
    assert qabf(a, b, np.full_like(a, 0.5)) < 0.01
    assert qabf(b, b, b) == 0.0


def test_qabf_symmetric_and_drops_with_blur() -> None:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(2)
    a, b = gaussian_filter(rng.random((2, 40, 40)), (0, 1, 1))
    f = 0.5 * (a + b)
    assert qabf(a, b, f) == pytest.approx(qabf(b, a, f), rel=1e-12)
    assert qabf(a, b, gaussian_filter(f, 2)) < qabf(a, b, f)
    with pytest.raises(ValueError, match="exponent"):
        qabf(a, b, f, exponent=-1)


def test_gradient_metrics_need_2x2() -> None:
    x = np.zeros((1, 5))
    with pytest.raises(ValueError, match="at least 2 x 2"):
        spatial_frequency(x)
    with pytest.raises(ValueError, match="at least 2 x 2"):
        rsfe(x, x, x)
