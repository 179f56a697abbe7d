"""SD, CC, SCD, MSE and PSNR against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mdafuse.metrics import cc, mse, psnr, scd, sd


@pytest.fixture
def abf() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.random((3, 33, 35))


def test_sd_hand_values() -> None:
    f = np.array([[0.0, 1.0], [0.0, 1.0]])
    z = np.zeros_like(f)
    assert sd(z, z, f) == pytest.approx(127.5, abs=1e-12)
    assert sd(z, z, f, scale=1.0) == pytest.approx(0.5, abs=1e-15)
    assert sd(z, z, f, ddof=1) == pytest.approx(127.5 * math.sqrt(4 / 3), abs=1e-9)
    with pytest.raises(ValueError, match="ddof must be"):
        sd(z, z, f, ddof=2)


def test_cc_identity_inverse_and_constant(abf) -> None:
    a, b, _ = abf
    assert cc(a, a, a) == pytest.approx(1.0, abs=1e-12)
    assert cc(a, a, 1.0 - a) == pytest.approx(-1.0, abs=1e-12)
    assert cc(a, np.full_like(a, 0.4), a) == pytest.approx(0.5, abs=1e-12)
    assert cc(a, b, a, reduction="sum") == pytest.approx(2 * cc(a, b, a), rel=1e-12)


def test_scd_of_sum_is_two() -> None:
    rng = np.random.default_rng(4)
    a, b = 0.5 * rng.random((2, 16, 16))
    assert scd(a, b, a + b) == pytest.approx(2.0, abs=1e-12)


def test_scd_any_trace_of_b_saturates_one_term() -> None:
    """For F = A + cB, r(F - A, B) = 1 for every c > 0: SCD = 1 + r(A - (1 - c)B, A), however faint B is."""
    rng = np.random.default_rng(5)
    a, b = 0.5 * rng.random((2, 20, 20))
    for c in (0.01, 0.2, 1.0):
        expected = 1.0 + np.corrcoef((a - (1 - c) * b).ravel(), a.ravel())[0, 1]
        assert scd(a, b, a + c * b) == pytest.approx(expected, abs=1e-12)
    # without the trace, the second term is 0 (F - A constant) and SCD drops by about 1
    assert scd(a, b, a) < scd(a, b, a + 0.01 * b) - 0.9


def test_scd_hand_values_and_sign() -> None:
    """A and B are uncorrelated with equal variance (2 x 2 patterns)."""
    a = np.array([[0.0, 0.0], [0.5, 0.5]])
    b = np.array([[0.0, 0.5], [0.0, 0.5]])
    # F = A: r(A - B, A) = 1/sqrt(2); F - A = 0 is constant, so r = 0.
    assert scd(a, b, a) == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    # F = B - A + 0.5: r(0.5 - A, A) = -1 and r(B - 2A + 0.5, B) = 1/sqrt(5).
    f = b - a + 0.5
    assert scd(a, b, f) == pytest.approx(-1.0 + 1 / math.sqrt(5), abs=1e-12)
    assert scd(a, b, f) < 0


def test_mse_hand_value() -> None:
    a = np.zeros((3, 4))
    b = np.ones((3, 4))
    f = np.full((3, 4), 0.25)
    assert mse(a, b, f) == pytest.approx((0.0625 + 0.5625) / 2, abs=1e-15)
    assert mse(a, b, f, reduction="sum") == pytest.approx(0.625, abs=1e-15)
    assert mse(a, b, f, scale=255.0) == pytest.approx(0.3125 * 255**2, rel=1e-12)


def test_psnr_hand_value() -> None:
    a = np.full((4, 4), 0.2)
    f = np.full((4, 4), 0.3)
    assert psnr(a, a, f) == pytest.approx(20.0, abs=1e-9)
    assert psnr(a, a, f, data_range=2.0) == pytest.approx(20.0 + 20 * math.log10(2), abs=1e-9)
    assert psnr(a, a, a) == math.inf
    with pytest.raises(ValueError, match="data_range"):
        psnr(a, a, f, data_range=0.0)


@pytest.mark.parametrize("metric", [cc, mse, scd])
def test_symmetric_in_sources(metric, abf) -> None:
    a, b, f = abf
    assert metric(a, b, f) == pytest.approx(metric(b, a, f), rel=1e-12, abs=1e-15)


def test_cc_drops_with_noise() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.random((2, 48, 48))
    f0 = 0.5 * (a + b)
    values = [cc(a, b, np.clip(f0 + s * rng.standard_normal(f0.shape), 0, 1)) for s in (0.0, 0.05, 0.2)]
    assert values[0] > values[1] > values[2]
