"""Tests of the classical fusion baselines (mdafuse.baselines)."""

from __future__ import annotations

import numpy as np
import pytest

from mdafuse.baselines import BASELINES, average, dwt, fuse_color, gff, ihs, laplacian, latlrr, nsst, pca
from mdafuse.color import rgb_to_ycbcr


def _smooth_pair(shape: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] / max(shape)
    a = 0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy) + 0.05 * rng.standard_normal(shape)
    b = 0.4 + 0.3 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.4) ** 2) / 0.02) + 0.05 * rng.standard_normal(shape)
    return np.clip(a, 0, 1).astype(np.float32), np.clip(b, 0, 1).astype(np.float32)


def test_registry_lists_every_method():
    assert set(BASELINES) == {"average", "maximum", "minimum", "pca", "laplacian", "dwt", "ihs", "gff", "latlrr", "nsst"}


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("shape", [(33, 35), (64, 64), (6, 9)])
def test_shape_dtype_range(name, shape):
    a, b = _smooth_pair(shape)
    f = BASELINES[name](a, b)
    assert f.shape == shape
    assert f.dtype == np.float32
    assert np.isfinite(f).all()
    assert f.min() >= 0.0 and f.max() <= 1.0


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_bad_input_raises(name):
    a, b = _smooth_pair((16, 16))
    with pytest.raises(ValueError, match="same shape"):
        BASELINES[name](a, b[:15])
    with pytest.raises(ValueError, match=r"shape \(H, W\)"):
        BASELINES[name](np.stack([a, a, a], axis=-1), b)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        BASELINES[name](a * 255.0, b)
    with pytest.raises(ValueError, match="NaN"):
        BASELINES[name](np.full_like(a, np.nan), b)


def test_average_of_constants():
    a = np.full((8, 9), 0.2, np.float32)
    b = np.full((8, 9), 0.8, np.float32)
    np.testing.assert_allclose(average.fuse(a, b), 0.5, atol=1e-6)
    # 0.25 * 0.2 + 0.75 * 0.8 = 0.65
    np.testing.assert_allclose(average.fuse(a, b, weight=0.25), 0.65, atol=1e-6)
    with pytest.raises(ValueError, match="weight must be in"):
        average.fuse(a, b, weight=1.5)


def test_max_min_of_disjoint_squares():
    a = np.zeros((20, 21), np.float32)
    b = np.zeros((20, 21), np.float32)
    a[2:8, 3:9] = 0.7
    b[10:16, 12:18] = 0.9
    expected_max = a + b
    np.testing.assert_array_equal(BASELINES["maximum"](a, b), expected_max)
    np.testing.assert_array_equal(BASELINES["minimum"](a, b), np.zeros_like(a))
    np.testing.assert_array_equal(BASELINES["minimum"](a + 0.1, b + 0.1), np.minimum(a, b) + np.float32(0.1))


@pytest.mark.parametrize("name", ["laplacian", "dwt", "gff", "pca", "average", "maximum", "minimum", "nsst"])
@pytest.mark.parametrize("shape", [(33, 35), (64, 64)])
def test_fusing_image_with_itself_returns_it(name, shape):
    a, _ = _smooth_pair(shape, seed=3)
    np.testing.assert_allclose(BASELINES[name](a, a), a, rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(33, 35), (64, 64), (7, 5), (1, 1)])
def test_pyramid_round_trip(shape):
    a, _ = _smooth_pair(shape, seed=1)
    levels = laplacian.max_levels(shape)
    pyr = laplacian.build_pyramid(a, levels)
    assert len(pyr) == levels
    np.testing.assert_allclose(laplacian.collapse_pyramid(pyr), a, rtol=0, atol=1e-12)


def test_pyramid_level_sizes_for_odd_image():
    pyr = laplacian.build_pyramid(np.zeros((33, 35)), 4)
    assert [p.shape for p in pyr] == [(33, 35), (17, 18), (9, 9), (5, 5)]
    assert laplacian.max_levels((33, 35)) == 4


def test_laplacian_keeps_stronger_detail():
    # A flat image (no detail) fused with a textured one of the same mean keeps the texture
    # at the finest level: the result is closer to the textured image than plain averaging.
    a, _ = _smooth_pair((64, 64), seed=2)
    rng = np.random.default_rng(5)
    tex = np.clip(0.5 + 0.2 * rng.standard_normal((64, 64)), 0, 1).astype(np.float32)
    flat = np.full_like(tex, tex.mean())
    f = laplacian.fuse(flat, tex, levels=3)
    err_lap = np.abs(f - tex).mean()
    err_avg = np.abs(average.fuse(flat, tex) - tex).mean()
    assert err_lap < 0.5 * err_avg


def test_dwt_options():
    a, b = _smooth_pair((33, 35))
    assert dwt.fuse(a, b, wavelet="haar", level=5).shape == (33, 35)
    with pytest.raises(ValueError, match="wavelet"):
        dwt.fuse(a, b, wavelet="nope")
    with pytest.raises(ValueError, match="level must be"):
        dwt.fuse(a, b, level=0)
    with pytest.raises(ValueError, match="levels must be"):
        laplacian.fuse(a, b, levels=0)


def test_pca_weights():
    a, b = _smooth_pair((33, 35))
    wa, wb = pca.pca_weights(a, a)
    assert wa == pytest.approx(0.5, abs=1e-9) and wb == pytest.approx(0.5, abs=1e-9)
    # Covariance [[v, 0], [0, 0]] (b constant): principal eigenvector (1, 0), all weight on a.
    wa, wb = pca.pca_weights(a, np.full_like(a, 0.3))
    assert wa == pytest.approx(1.0, abs=1e-9) and wb == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(pca.fuse(a, np.full_like(a, 0.3)), a, atol=1e-6)
    assert pca.pca_weights(np.full_like(a, 0.2), np.full_like(a, 0.7)) == (0.5, 0.5)
    # Hand check: b = 2a - c has variance 4 var(a); eigenvector of [[1, 2], [2, 4]] is (1, 2) -> 1/3, 2/3.
    x = np.linspace(0.3, 0.45, 100).reshape(10, 10)
    wa, wb = pca.pca_weights(x, 2 * x - 0.5)
    assert wa == pytest.approx(1 / 3, abs=1e-9) and wb == pytest.approx(2 / 3, abs=1e-9)


def test_guided_filter_properties():
    rng = np.random.default_rng(0)
    guide = rng.random((33, 35))
    # A constant input stays constant; tiny eps with the input as its own guide preserves it.
    np.testing.assert_allclose(gff.guided_filter(np.full((33, 35), 0.4), guide, 3, 0.1), 0.4, atol=1e-12)
    np.testing.assert_allclose(gff.guided_filter(guide, guide, 2, 1e-10), guide, atol=1e-5)
    # A huge eps turns it into a double box mean of p.
    p = rng.random((33, 35))
    np.testing.assert_allclose(gff.guided_filter(p, guide, 2, 1e9), gff.box_mean(gff.box_mean(p, 2), 2), atol=1e-6)
    with pytest.raises(ValueError, match="eps must be > 0"):
        gff.guided_filter(p, guide, 2, 0.0)


def test_gff_prefers_salient_source():
    # Left half textured in a, right half textured in b; flat elsewhere. GFF keeps each texture.
    rng = np.random.default_rng(7)
    tex = 0.5 + 0.2 * rng.standard_normal((64, 64))
    a = np.full((64, 64), 0.5)
    b = np.full((64, 64), 0.5)
    a[:, :32] = tex[:, :32]
    b[:, 32:] = tex[:, 32:]
    f = gff.fuse(np.clip(a, 0, 1), np.clip(b, 0, 1))
    inner = (slice(8, 56), np.r_[4:24, 40:60])
    assert np.abs(f - np.clip(tex, 0, 1))[inner].mean() < 0.25 * np.abs(np.clip(tex, 0, 1) - 0.5)[inner].mean()


def test_ihs_substitution():
    mr, _ = _smooth_pair((33, 35))
    rgb = np.zeros((33, 35, 3), np.float32)
    rgb[..., 0] = 0.6
    rgb[..., 1] = 0.3
    rgb[..., 2] = 0.3
    out = ihs.fuse_rgb(mr, rgb)
    # I = 0.4; F = rgb + (mr - 0.4), clipped. Intensity of the result is the MR where not clipped.
    expected = np.clip(rgb + (mr - 0.4)[..., None], 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(ihs.fuse(mr, rgb[..., 0]), mr, atol=0)
    np.testing.assert_allclose(fuse_color("ihs", mr, rgb), expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"shape \(H, W, 3\)"):
        ihs.fuse_rgb(mr, rgb[..., :2])


def test_fuse_color_keeps_chroma():
    mr, fy = _smooth_pair((33, 35))
    rng = np.random.default_rng(4)
    rgb = np.clip(np.stack([fy, 0.5 * fy, 0.2 + 0.1 * rng.random(fy.shape)], axis=-1), 0, 1).astype(np.float32)
    out = fuse_color("average", mr, rgb)
    assert out.shape == (33, 35, 3) and out.dtype == np.float32
    ycc_in, ycc_out = rgb_to_ycbcr(rgb), rgb_to_ycbcr(out)
    np.testing.assert_allclose(ycc_out[..., 0], 0.5 * mr + 0.5 * ycc_in[..., 0], atol=2e-3)
    np.testing.assert_allclose(ycc_out[..., 1:], ycc_in[..., 1:], atol=2e-2)
    grey = fuse_color(BASELINES["maximum"], mr, fy)
    np.testing.assert_array_equal(grey, np.maximum(mr, fy))
    with pytest.raises(ValueError, match="method must be one of"):
        fuse_color("nope", mr, fy)
    with pytest.raises(ValueError, match=r"functional must have shape"):
        fuse_color("average", mr, rgb[..., :2])


def test_latlrr_decomposition_is_exact_and_optimises_its_objective():
    a, _ = _smooth_pair((24, 20))
    x = a.astype(np.float64)
    cfg = latlrr.LatLRRConfig()
    low, sal, e = latlrr.latlrr(x, cfg)
    # the solver stops once every constraint residual is below tol * ||X||_F
    np.testing.assert_allclose(low + sal + e, x, atol=cfg.tol * float(np.linalg.norm(x)))
    # recover Z and L from the parts to score the objective ||Z||_* + ||L||_* + lam ||E||_1
    z = np.linalg.lstsq(x, low, rcond=None)[0]
    l_mat = np.linalg.lstsq(x.T, sal.T, rcond=None)[0].T
    nuc = lambda m: float(np.linalg.svd(m, compute_uv=False).sum())  # noqa: E731
    objective = nuc(z) + nuc(l_mat) + cfg.lam * float(np.abs(e).sum())
    # trivial feasible points: all of X as the sparse part, or Z = I (X = X I)
    assert objective < cfg.lam * float(np.abs(x).sum())
    assert objective < nuc(np.eye(x.shape[1]))
    # LatLRR splits off structure: neither part is empty on a textured image
    assert np.abs(low).mean() > 0.01 and np.abs(sal).mean() > 0.01


def test_latlrr_fusion_rule_by_hand():
    a, b = _smooth_pair((20, 18), seed=3)
    low_a, sal_a, _ = latlrr.latlrr(a.astype(np.float64))
    low_b, sal_b, _ = latlrr.latlrr(b.astype(np.float64))
    expected = np.clip((low_a + low_b) / 2 + sal_a + sal_b, 0, 1)
    np.testing.assert_allclose(latlrr.fuse(a, b), expected, atol=1e-6)
    np.testing.assert_allclose(latlrr.fuse(a, b), latlrr.fuse(b, a), atol=1e-6)  # the rule is symmetric
    np.testing.assert_array_equal(latlrr.fuse(np.zeros_like(a), np.zeros_like(b)), np.zeros_like(a))
    with pytest.raises(RuntimeError, match="no convergence in 3 iterations"):
        latlrr.latlrr(a.astype(np.float64), latlrr.LatLRRConfig(max_iter=3))


@pytest.mark.parametrize("shape", [(37, 50), (64, 64), (5, 3)])
def test_nsst_subbands_add_back_to_the_image(shape):
    x = np.random.default_rng(1).random(shape)
    low, bands = nsst.decompose(x, levels=3, directions=(16, 8, 4))
    assert [b.shape for b in bands] == [(16, *shape), (8, *shape), (4, *shape)]
    np.testing.assert_allclose(low + sum(b.sum(axis=0) for b in bands), x, atol=1e-12)
    # non-subsampled: shifting the image shifts every subband (periodic shift, no aliasing)
    shifted_low, shifted = nsst.decompose(np.roll(x, 3, axis=1), levels=3, directions=(16, 8, 4))
    np.testing.assert_allclose(shifted[1], np.roll(bands[1], 3, axis=2), atol=1e-12)
    np.testing.assert_allclose(shifted_low, np.roll(low, 3, axis=1), atol=1e-12)


def test_nsst_direction_windows_partition_orientation():
    w = nsst.direction_windows((32, 40), 8)
    np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=1e-12)
    assert w.min() >= 0
    # stripes that vary along x have their frequency on the x axis: wedge 0; along y: wedge directions / 2
    yy, xx = np.mgrid[0:64, 0:64]
    for stripes, wedge in ((np.sin(2 * np.pi * xx / 4), 0), (np.sin(2 * np.pi * yy / 4), 4)):
        _, bands = nsst.decompose(0.5 + 0.4 * stripes, levels=1, directions=8)
        energy = (bands[0] ** 2).sum(axis=(1, 2))
        assert int(np.argmax(energy)) == wedge and energy[wedge] > 0.99 * energy.sum()


def test_nsst_fusion_rule_by_hand():
    a, b = _smooth_pair((40, 36), seed=4)
    np.testing.assert_allclose(nsst.fuse(np.full((20, 20), 0.2), np.full((20, 20), 0.6)), 0.4, atol=1e-6)
    low_a, bands_a = nsst.decompose(a.astype(np.float64), 2, 4)
    low_b, bands_b = nsst.decompose(b.astype(np.float64), 2, 4)
    expected = (low_a + low_b) / 2 + sum(np.where(np.abs(x) >= np.abs(y), x, y).sum(axis=0) for x, y in zip(bands_a, bands_b))
    np.testing.assert_allclose(nsst.fuse(a, b, levels=2, directions=4, pad=0), np.clip(expected, 0, 1), atol=1e-6)
    np.testing.assert_allclose(nsst.fuse(a, b), nsst.fuse(b, a), atol=1e-6)
    for kwargs, message in (({"levels": 0}, "levels must be"), ({"directions": 0}, "directions must be"), ({"levels": 2, "directions": (4,)}, "one direction count or 2"), ({"pad": -1}, "pad must be")):
        with pytest.raises(ValueError, match=message):
            nsst.fuse(a, b, **kwargs)
