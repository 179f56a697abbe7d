"""fuse_pair / Fuser on synthetic and real pairs."""

from __future__ import annotations

import numpy as np
import pytest

from mdafuse.data import MODALITY_FOLDERS, split_pairs
from mdafuse.color import rgb_to_ycbcr, ycbcr_to_rgb
from mdafuse.fusion.pipeline import Fuser, fuse_pair
from mdafuse.io.images import read_pair
from mdafuse.metrics import compute_all
from mdafuse.model.weights import default_weights_path


@pytest.fixture(scope="module")
def fuser() -> Fuser:
    return Fuser()


def test_grey_functional_gives_grey_result(fuser):
    rng = np.random.default_rng(0)
    mr, ct = rng.random((33, 35), dtype=np.float32), rng.random((33, 35), dtype=np.float32)
    out = fuser.fuse(mr, ct)
    assert out.shape == (33, 35) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1


def test_colour_keeps_functional_chroma_where_in_gamut(fuser):
    # A low-saturation colour stays in gamut for any luminance, so Cb/Cr must be copied exactly.
    rng = np.random.default_rng(1)
    ycc = np.empty((40, 40, 3), np.float32)
    ycc[..., 0] = rng.uniform(0.3, 0.7, (40, 40))
    ycc[..., 1] = 0.5 + 0.02 * np.sign(rng.standard_normal((40, 40)))
    ycc[..., 2] = 0.5 - 0.02
    pet = ycbcr_to_rgb(ycc)
    mr = rng.uniform(0.1, 0.9, (40, 40)).astype(np.float32)
    fused = fuser.fuse(mr, pet)
    fused_ycc = rgb_to_ycbcr(fused)
    inside = (fused_ycc[..., 0] > 0.1) & (fused_ycc[..., 0] < 0.9)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(fused_ycc[inside][:, 1:], rgb_to_ycbcr(pet)[inside][:, 1:], atol=1e-5)


def test_batch_equals_single(fuser):
    rng = np.random.default_rng(2)
    mr, fy = rng.random((3, 32, 32), dtype=np.float32), rng.random((3, 32, 32), dtype=np.float32)
    batch = fuser.fuse_batch(mr, fy)
    for i in range(3):
        np.testing.assert_allclose(batch[i], fuser.fuse(mr[i], fy[i]), atol=1e-5)


def test_bad_input_raises(fuser):
    with pytest.raises(ValueError, match="functional must match mr size"):
        fuser.fuse(np.zeros((8, 8), np.float32), np.zeros((8, 9), np.float32))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        fuser.fuse(np.full((8, 8), 2.0, np.float32), np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        fuser.fuse(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.float32))


def test_modality_selects_shipped_weights(fuser):
    rng = np.random.default_rng(3)
    mr, fn = rng.random((48, 40), dtype=np.float32), rng.random((48, 40, 3), dtype=np.float32)
    spect = Fuser(default_weights_path("SPECT"))
    np.testing.assert_array_equal(fuse_pair(mr, fn, modality="NM"), spect.fuse(mr, fn))
    np.testing.assert_array_equal(fuse_pair(mr, fn, modality="PET"), fuser.fuse(mr, fn))
    assert spect.weights_sha256 != fuser.weights_sha256
    assert not np.allclose(spect.fuse(mr, fn), fuser.fuse(mr, fn), atol=1e-3)
    # explicit weights win over the modality
    assert Fuser(default_weights_path(), modality="SPECT").weights_sha256 == fuser.weights_sha256
    with pytest.raises(ValueError, match="unknown functional modality"):
        fuse_pair(mr, fn, modality="US")


@pytest.mark.parametrize("dataset", ["MR-PET", "MR-SPECT"])
def test_real_held_out_pair_keeps_anatomy_and_uptake(harvard_root, dataset):
    pair = split_pairs(dataset, "test", harvard_root.parent)[5]
    mr, fn = read_pair(pair.mr, pair.functional)
    fused = fuse_pair(mr, fn, modality=MODALITY_FOLDERS[dataset])
    assert fused.shape == fn.shape
    fy, y = rgb_to_ycbcr(fused)[..., 0], rgb_to_ycbcr(fn)[..., 0]
    scores = compute_all(mr, y, fy)
    # SSIM(MR, F) + SSIM(Y, F) must exceed SSIM(Y, MR) + 0.3: compute_all(mr, y, mr)["SSIM"] is
    # SSIM(MR, MR) + SSIM(Y, MR) = 1 + SSIM(Y, MR), hence the "- 1.0".
    base = compute_all(mr, y, mr)
    assert scores["SSIM"] > base["SSIM"] - 1.0 + 0.3
    assert 0.0 < scores["CC"] <= 1.0
    # Uptake is kept: where the functional image is brightest, the fused luminance is bright too.
    hot = y > np.percentile(y, 99)
    assert fy[hot].mean() > 0.8 * y[hot].mean()
