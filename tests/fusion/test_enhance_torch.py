"""The batched torch enhancement against the numpy reference, and the device 8-bit conversion against the CPU one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mdafuse.fusion.enhance import EnhanceConfig, enhance
from mdafuse.fusion.enhance_torch import enhance_batch, to_uint8_torch
from mdafuse.io.encode import to_uint8


def _slices(b: int, h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    blob = np.exp(-((yy - h / 2) ** 2 + (xx - w / 3) ** 2) / (h * 2.0))
    functional = np.stack([np.clip(np.stack([blob * (1 + 0.2 * k), 0.6 * blob, 0.1 * blob], -1) + 0.02 * rng.random((h, w, 3)), 0, 1) for k in range(b)]).astype(np.float32)
    fused = np.clip(0.5 * functional + 0.4 * rng.random((b, h, w, 1)), 0, 1).astype(np.float32)
    return fused, functional


@pytest.mark.parametrize(("config", "grey"), [(EnhanceConfig(), False), (EnhanceConfig(window=5, gain=1.4, brightness=0.4), False), (EnhanceConfig(), True), (EnhanceConfig(colormap="jet", gain=0.6), True)])
def test_matches_numpy_enhance(config, grey):
    fused, functional = _slices(3, 37, 41, seed=3)
    if grey:
        fused = fused.mean(axis=-1)
    ref = np.stack([enhance(f, g, config) for f, g in zip(fused, functional)])
    got = enhance_batch(torch.from_numpy(fused), torch.from_numpy(functional), config).numpy()
    assert got.shape == ref.shape == (3, 37, 41, 3) and got.dtype == np.float32
    assert np.abs(got - ref).max() < 2e-6  # float32 rounding of the same formulas
    diff = np.abs(to_uint8(got).astype(int) - to_uint8(ref).astype(int))
    assert diff.max() <= 1 and np.mean(diff > 0) < 1e-3


def test_grey_functional_and_errors():
    fused, functional = _slices(2, 20, 24, seed=4)
    grey_fn = functional.mean(axis=-1)
    ref = np.stack([enhance(f, g) for f, g in zip(fused, grey_fn)])
    assert np.abs(enhance_batch(torch.from_numpy(fused), torch.from_numpy(grey_fn)).numpy() - ref).max() < 2e-6
    with pytest.raises(ValueError, match="one size"):
        enhance_batch(torch.from_numpy(fused), torch.from_numpy(functional[:, :10]))


def test_to_uint8_torch_equals_the_cpu_conversion():
    rng = np.random.default_rng(5)
    x = rng.random((4, 64, 64, 3)).astype(np.float32)
    x[0, 0, :4, 0] = [-0.1, 1.2, 0.5, 127.5 / 255]  # clipping and exact halves (round half to even)
    assert np.array_equal(to_uint8_torch(torch.from_numpy(x)).numpy(), to_uint8(x))
