"""EN and MI against hand-computed histogram values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mdafuse.metrics import en, entropy, mi, mutual_information


def _halves(h: int = 4, w: int = 4, axis: int = 1) -> np.ndarray:
    x = np.zeros((h, w), dtype=np.float32)
    if axis == 1:
        x[:, w // 2 :] = 1.0
    else:
        x[h // 2 :, :] = 1.0
    return x


def test_entropy_two_levels_is_one_bit() -> None:
    x = _halves()
    assert entropy(x) == pytest.approx(1.0, abs=1e-12)
    assert entropy(x, base=math.e) == pytest.approx(math.log(2), abs=1e-12)


def test_entropy_four_equal_levels_is_two_bits_and_constant_is_zero() -> None:
    x = np.repeat(np.array([0, 85, 170, 255], dtype=np.float64)[None, :] / 255.0, 3, axis=0)
    assert entropy(x) == pytest.approx(2.0, abs=1e-12)
    assert entropy(np.full((5, 7), 0.3)) == pytest.approx(0.0, abs=1e-15)


def test_en_scores_only_f() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((8, 8)), rng.random((8, 8))
    assert en(a, b, _halves(8, 8)) == pytest.approx(1.0, abs=1e-12)


def test_mi_of_image_with_itself_is_its_entropy() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(33, 35)) / 255.0
    h = entropy(a)
    assert mutual_information(a, a) == pytest.approx(h, abs=1e-9)
    assert mi(a, a, a) == pytest.approx(2 * h, abs=1e-9)
    assert mi(a, a, a, reduction="mean") == pytest.approx(h, abs=1e-9)


def test_mi_of_independent_halves_is_zero() -> None:
    """Left/right halves against top/bottom halves: joint histogram uniform over 4 cells."""
    a = _halves(axis=1)
    f = _halves(axis=0)
    assert mutual_information(a, f) == pytest.approx(0.0, abs=1e-12)
    assert mi(a, a, f) == pytest.approx(0.0, abs=1e-12)
    assert mi(a, f, f) == pytest.approx(1.0, abs=1e-12)


def test_mi_symmetric_in_sources() -> None:
    rng = np.random.default_rng(2)
    a, b, f = rng.random((3, 20, 22))
    assert mi(a, b, f) == pytest.approx(mi(b, a, f), rel=1e-12)


def test_information_bad_options_raise() -> None:
    x = _halves()
    with pytest.raises(ValueError, match="base must be"):
        entropy(x, base=1)
    with pytest.raises(ValueError, match="reduction must be"):
        mi(x, x, x, reduction="max")
    with pytest.raises(ValueError, match="y must have the same"):
        mutual_information(x, np.zeros((4, 5)))
