"""Shapes and behaviour of each network block."""

from __future__ import annotations

import json

import pytest
import torch

from mdafuse.model.blocks import (
    AdaptiveAffine,
    CoarseFeatureModule,
    ConvBNReLU,
    Decoder,
    DepthwiseSeparable,
    DirectHead,
    FineFeatureModule,
    InvertedResidual,
    MultiScaleFeatureModule,
    PyramidPooling,
)
from mdafuse.model.config import MdAFuseConfig

CFG = MdAFuseConfig()


@pytest.mark.parametrize("hw", [(32, 32), (33, 35), (17, 64)])
@pytest.mark.parametrize("batch", [1, 3])
def test_feature_modules_keep_size(hw, batch):
    x = torch.rand(batch, 1, *hw)
    for module in (CoarseFeatureModule(CFG), FineFeatureModule(CFG), MultiScaleFeatureModule(CFG)):
        assert module(x).shape == (batch, CFG.features, *hw)


def test_small_blocks_shapes():
    x = torch.rand(2, 8, 33, 35)
    assert ConvBNReLU(8, 4, 5)(x).shape == (2, 4, 33, 35)
    assert DepthwiseSeparable(8, 16, stride=2)(x).shape == (2, 16, 17, 18)
    assert InvertedResidual(8, 2)(x).shape == x.shape
    assert PyramidPooling(8)(x).shape == x.shape
    assert Decoder(8, (6, 4))(x).shape == (2, 1, 33, 35)
    assert Decoder(8, (6, 4), out_channels=2)(x).shape == (2, 2, 33, 35)


def test_head_maps_to_the_image_range():
    logits = torch.randn(2, 1, 5, 6) * 10
    out = DirectHead()(logits, None, None)
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out, 0.5 * (torch.tanh(logits) + 1.0))


def test_salient_skip_mixes_the_max_rule_in_exactly():
    logits = torch.randn(2, 1, 5, 6) * 3
    mr, fn = torch.rand(2, 1, 5, 6), torch.rand(2, 1, 5, 6)
    decoded = DirectHead()(logits, mr, fn)
    torch.testing.assert_close(DirectHead(0.0)(logits, mr, fn), decoded, rtol=0, atol=0)
    expected = 0.7 * decoded + 0.3 * torch.maximum(mr, fn)
    torch.testing.assert_close(DirectHead(0.3)(logits, mr, fn), expected)
    # where the decoder copies the max rule, the skip changes nothing
    target = torch.maximum(mr, fn).clamp(0.01, 0.99)
    torch.testing.assert_close(DirectHead(0.3)(torch.atanh(2 * target - 1), target, target), target)


def test_mean_skip_mixes_the_average_in_exactly():
    logits = torch.randn(2, 1, 5, 6) * 3
    mr, fn = torch.rand(2, 1, 5, 6), torch.rand(2, 1, 5, 6)
    decoded = DirectHead()(logits, mr, fn)
    torch.testing.assert_close(DirectHead(0.4, "mean")(logits, mr, fn), 0.6 * decoded + 0.2 * (mr + fn))
    # where the decoder copies the average, the skip changes nothing
    avg = ((mr + fn) / 2).clamp(0.01, 0.99)
    torch.testing.assert_close(DirectHead(0.4, "mean")(torch.atanh(2 * avg - 1), avg, avg), avg)
    with pytest.raises(ValueError, match="rule must be 'max' or 'mean'"):
        DirectHead(0.4, "min")
    with pytest.raises(ValueError, match="skip_rule must be one of"):
        MdAFuseConfig(skip_rule="min")
    assert MdAFuseConfig.from_json(MdAFuseConfig(salient_skip=0.3, skip_rule="mean").to_json()).skip_rule == "mean"
    # weights saved before the option existed load with the max rule
    assert MdAFuseConfig.from_json('{"salient_skip": 0.4}').skip_rule == "max"


def test_coarse_module_uses_large_kernels_and_fine_small():
    cfm_kernels = {m.kernel_size[0] for m in CoarseFeatureModule(CFG).modules() if isinstance(m, torch.nn.Conv2d)}
    ffm_kernels = {m.kernel_size[0] for m in FineFeatureModule(CFG).modules() if isinstance(m, torch.nn.Conv2d)}
    assert cfm_kernels == {7, 5}
    assert ffm_kernels <= {1, 3}
    cfm_width = max(m.out_channels for m in CoarseFeatureModule(CFG).modules() if isinstance(m, torch.nn.Conv2d))
    ffm_width = max(m.out_channels for m in FineFeatureModule(CFG).modules() if isinstance(m, torch.nn.Conv2d))
    assert ffm_width > cfm_width


def test_depthwise_separable_is_grouped():
    ds = DepthwiseSeparable(8, 16)
    convs = [m for m in ds.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].groups == 8 and convs[0].kernel_size == (3, 3)
    assert convs[1].groups == 1 and convs[1].kernel_size == (1, 1)


def test_affine_is_identity_at_init_and_per_channel():
    aff = AdaptiveAffine(4)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(aff(x), x)
    with torch.no_grad():
        aff.alpha[0, 1] = 2.0
        aff.beta[0, 2] = -1.0
    y = aff(x)
    torch.testing.assert_close(y[:, 1], 2 * x[:, 1])
    torch.testing.assert_close(y[:, 2], x[:, 2] - 1)
    torch.testing.assert_close(y[:, 0], x[:, 0])


def test_config_validation_and_json():
    with pytest.raises(ValueError, match="odd kernel"):
        MdAFuseConfig(cfm_kernel=6)
    with pytest.raises(ValueError, match="ffm_channels"):
        MdAFuseConfig(ffm_channels=())
    with pytest.raises(ValueError, match=r"salient_skip must be in \[0, 1\)"):
        MdAFuseConfig(salient_skip=1.0)
    with pytest.raises(ValueError, match="head='blend': this network's output head was an experiment removed"):
        MdAFuseConfig.from_json('{"head": "blend"}')
    # written with the fields older weights carry, so shipped weights rebuild to the same bytes
    assert json.loads(MdAFuseConfig().to_json())["head"] == "direct" and json.loads(MdAFuseConfig().to_json())["residual_scale"] == 0.2
    assert MdAFuseConfig.from_json(MdAFuseConfig(salient_skip=0.25).to_json()).salient_skip == 0.25
    # weights written before the option existed load as the paper's head
    assert MdAFuseConfig.from_json('{"head": "direct"}').salient_skip == 0.0
    cfg = MdAFuseConfig(features=8, ffm_channels=(8, 16))
    assert MdAFuseConfig.from_json(cfg.to_json()) == cfg
