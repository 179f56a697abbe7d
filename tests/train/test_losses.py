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


def test_differentiable_vif_and_sf_match_the_metrics():
    import numpy as np

    from mdafuse.metrics.gradient import extended_spatial_frequency, rsfe
    from mdafuse.metrics.structural import vif_index as vif_metric
    from mdafuse.train.losses import extended_sf, reference_sf, vif_index

    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:64, :64]
    a = np.clip(0.5 + 0.3 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + 0.05 * rng.standard_normal((64, 64)), 0, 1)
    b = np.clip(np.exp(-((xx - 30) ** 2 + (yy - 36) ** 2) / 150.0) + 0.02 * rng.standard_normal((64, 64)), 0, 1)
    f = np.clip(0.6 * a + 0.5 * b, 0, 1)
    ta, tb, tf = (torch.tensor(x, dtype=torch.float64).view(1, 1, 64, 64) for x in (a, b, f))
    assert float(vif_index(ta, tf)) == pytest.approx(vif_metric(a, f), rel=1e-9)
    assert float(vif_index(ta, ta)) == pytest.approx(1.0, abs=1e-9)
    assert float(extended_sf(tf)) == pytest.approx(extended_spatial_frequency(f), rel=1e-9)
    sf_r = reference_sf(ta, tb)
    assert float((extended_sf(tf) - sf_r) / sf_r) == pytest.approx(rsfe(a, b, f), rel=1e-9)
    # gradients reach the fused image through every new term
    tf.requires_grad_(True)
    total, terms = fusion_loss(tf, ta, tb, LossWeights(vif=1.0, rsfe=1.0, contrast=1.0, mse_cap=1.0))
    total.backward()
    assert tf.grad is not None and torch.isfinite(tf.grad).all() and tf.grad.abs().sum() > 0
    assert {"vif", "rsfe", "contrast", "mse_cap"} <= set(terms)


def test_contrast_and_mse_cap_are_zero_for_the_max_rule_and_positive_for_the_average():
    g = torch.Generator().manual_seed(5)
    a, b = torch.rand(2, 1, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g)
    w = LossWeights(ssim_mr=0, ssim_functional=0, intensity=0, gradient=0, correlation=0, fidelity=0, contrast=1.0, mse_cap=1.0)
    _, at_max = fusion_loss(torch.maximum(a, b), a, b, w)
    assert at_max["contrast"] == pytest.approx(0.0, abs=1e-7) and at_max["mse_cap"] == pytest.approx(0.0, abs=1e-7)
    _, at_avg = fusion_loss((a + b) / 2, a, b, w)
    top = torch.maximum(a, b)
    sd_top, sd_avg = top.std(dim=(1, 2, 3), unbiased=False), ((a + b) / 2).std(dim=(1, 2, 3), unbiased=False)
    assert at_avg["contrast"] == pytest.approx(float(((sd_top - sd_avg) / sd_top).mean()), rel=1e-5)
    assert at_avg["mse_cap"] == 0.0  # the average has less error than the max rule
    _, doubled = fusion_loss((2 * top).clamp(max=2.0), a, b, w)
    assert doubled["mse_cap"] > 0.5


def test_soft_entropy_matches_the_en_metric_on_level_images():
    import numpy as np

    from mdafuse.metrics.information import en
    from mdafuse.train.losses import soft_entropy

    two = torch.zeros(1, 1, 8, 8)
    two[..., :4] = 1.0
    assert float(soft_entropy(two)) == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(6)
    levels = rng.integers(0, 256, size=(32, 32)) / 255.0
    t = torch.tensor(levels, dtype=torch.float64).view(1, 1, 32, 32)
    assert float(soft_entropy(t)) == pytest.approx(en(levels, levels, levels), rel=1e-9)
    # half way between two levels splits the vote: one pixel value, two half-filled bins
    half = torch.full((1, 1, 4, 4), 10.5 / 255, dtype=torch.float64, requires_grad=True)
    assert float(soft_entropy(half.detach())) == pytest.approx(1.0, abs=1e-9)
    soft_entropy(half).sum().backward()
    assert torch.isfinite(half.grad).all()


def test_scd_term_matches_the_scd_metric():
    from mdafuse.metrics.statistics import scd

    g = torch.Generator().manual_seed(7)
    a, b = torch.rand(1, 1, 24, 24, generator=g, dtype=torch.float64), torch.rand(1, 1, 24, 24, generator=g, dtype=torch.float64)
    f = (0.6 * a + 0.7 * b).clamp(0, 1)
    w = LossWeights(ssim_mr=0, ssim_functional=0, intensity=0, gradient=0, correlation=0, fidelity=0, scd=1.0)
    total, terms = fusion_loss(f, a, b, w)
    expected = 2.0 - scd(a[0, 0].numpy(), b[0, 0].numpy(), f[0, 0].numpy())
    assert terms["scd"] == pytest.approx(expected, rel=1e-4)  # pearson has a 1e-6 guard in its denominator
    assert float(total) == pytest.approx(terms["scd"], rel=1e-12)
    # F = A + B (unclipped) takes exactly each source: SCD = 2, the term vanishes
    _, exact = fusion_loss(a + b, a, b, w)
    assert exact["scd"] == pytest.approx(0.0, abs=1e-4)


def test_separable_filtering_matches_the_training_path():
    """Rows-then-columns filtering gives SSIM and VIF equal to the 2-D window's, with equal gradients."""
    from mdafuse.train.losses import vif_index

    g = torch.Generator().manual_seed(7)
    ref = torch.rand(2, 1, 64, 60, generator=g, dtype=torch.float64)
    dist = (0.7 * ref + 0.3 * torch.rand(2, 1, 64, 60, generator=g, dtype=torch.float64)).requires_grad_(True)
    torch.testing.assert_close(ssim_map(dist, ref, separable=True), ssim_map(dist, ref), atol=1e-12, rtol=0)
    v2d, vsep = vif_index(ref, dist), vif_index(ref, dist, separable=True)
    torch.testing.assert_close(vsep, v2d, atol=1e-10, rtol=0)
    assert 0.2 < float(v2d.detach().min()) < 1.0  # a real distortion, not a degenerate case
    (grad_2d,) = torch.autograd.grad(v2d.sum(), dist)
    (grad_sep,) = torch.autograd.grad(vsep.sum(), dist)
    torch.testing.assert_close(grad_sep, grad_2d, atol=1e-9, rtol=1e-6)
