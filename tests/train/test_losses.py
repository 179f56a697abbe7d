"""Unsupervised losses against hand-derived values."""

from __future__ import annotations

import pytest
import torch

from mdafuse.train.losses import LossWeights, fusion_loss, sobel_magnitude, ssim_map


def test_ssim_of_image_with_itself_is_one_and_drops_with_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 32, 33, generator=g)
    torch.testing.assert_close(ssim_map(x, x), torch.ones_like(x), atol=1e-5, rtol=0)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert ssim_map(x, noisy).mean() < 0.9


def test_sobel_of_constant_is_zero_and_of_ramp_is_known():
    assert sobel_magnitude(torch.full((1, 1, 8, 8), 0.3)).abs().max() < 1e-6
    ramp = torch.arange(10.0).repeat(10, 1).view(1, 1, 10, 10) * 0.1  # +0.1 per column
    # interior: |Sobel_x| = (1 + 2 + 1) * 2 * 0.1 = 0.8, Sobel_y = 0
    torch.testing.assert_close(sobel_magnitude(ramp)[0, 0, 2:-2, 2:-2], torch.full((6, 6), 0.8), atol=1e-5, rtol=0)


def test_intensity_and_gradient_terms_vanish_for_max_when_sources_do_not_overlap():
    a = torch.zeros(1, 1, 24, 24)
    b = torch.zeros(1, 1, 24, 24)
    a[..., 2:8, 2:8] = 0.8
    b[..., 14:20, 14:20] = 0.6
    f = torch.maximum(a, b)
    _, terms = fusion_loss(f, a, b, LossWeights())
    assert terms["intensity"] == pytest.approx(0.0, abs=1e-7)
    assert terms["gradient"] == pytest.approx(0.0, abs=1e-6)
    _, worse = fusion_loss((a + b) / 2, a, b, LossWeights())
    assert worse["intensity"] > 0.01 and worse["total"] > terms["total"]


def test_weights_scale_total():
    g = torch.Generator().manual_seed(1)
    a, b, f = (torch.rand(1, 1, 16, 16, generator=g) for _ in range(3))
    _, t = fusion_loss(f, a, b, LossWeights(1, 1, 1, 1, 0, 0))
    total, _ = fusion_loss(f, a, b, LossWeights(2, 0, 3, 0, 0, 0))
    assert float(total) == pytest.approx(2 * t["ssim_mr"] + 3 * t["intensity"], rel=1e-5)


def test_pearson_matches_numpy_and_is_scale_invariant():
    import numpy as np

    from mdafuse.train.losses import pearson

    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 1, 9, 11, generator=g), torch.rand(2, 1, 9, 11, generator=g)
    ref = [np.corrcoef(a[i].flatten().numpy(), b[i].flatten().numpy())[0, 1] for i in range(2)]
    torch.testing.assert_close(pearson(a, b), torch.tensor(ref, dtype=torch.float32), atol=1e-5, rtol=0)
    torch.testing.assert_close(pearson(3 * a + 1, b), pearson(a, b), atol=1e-5, rtol=0)
    _, terms = fusion_loss(a, a, a, LossWeights(correlation=1.0))
    assert terms["correlation"] == pytest.approx(0.0, abs=1e-5)


def test_fidelity_term_is_mean_of_the_two_mse():
    g = torch.Generator().manual_seed(3)
    a, b, f = (torch.rand(1, 1, 12, 12, generator=g) for _ in range(3))
    _, terms = fusion_loss(f, a, b, LossWeights())
    expected = 0.5 * (((f - a) ** 2).mean() + ((f - b) ** 2).mean())
    assert terms["fidelity"] == pytest.approx(float(expected), rel=1e-5)
    # the plain average minimises it: any other image scores higher
    _, at_mean = fusion_loss((a + b) / 2, a, b, LossWeights())
    assert at_mean["fidelity"] < terms["fidelity"]
