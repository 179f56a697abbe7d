"""The full network: fusion rule, gradients, any input size."""

from __future__ import annotations

import pytest
import torch

from mdafuse.model.config import MdAFuseConfig
from mdafuse.model.network import MdAFuseNet, fuse_features

SMALL = MdAFuseConfig(cfm_channels=(2, 4), ffm_channels=(8, 16), mfm_stem=8, mfm_channels=16, features=8, decoder_channels=(8, 4))


def test_fusion_rule_takes_elementwise_maximum_across_modalities():
    g = torch.Generator().manual_seed(0)
    mr = tuple(torch.randn(2, 3, 4, 4, generator=g) for _ in range(3))
    fn = tuple(torch.randn(2, 3, 4, 4, generator=g) for _ in range(3))
    fused = fuse_features(mr, fn)
    detail, scale = fused[:, :3], fused[:, 3:]
    expected_detail = torch.where(mr[0] + mr[1] >= fn[0] + fn[1], mr[0] + mr[1], fn[0] + fn[1])
    torch.testing.assert_close(detail, expected_detail)
    torch.testing.assert_close(scale, torch.where(mr[2] >= fn[2], mr[2], fn[2]))
    # symmetric in the two modalities, and never below either input
    torch.testing.assert_close(fuse_features(fn, mr), fused)
    assert torch.all(detail >= mr[0] + mr[1]) and torch.all(detail >= fn[0] + fn[1])


@pytest.mark.parametrize("skip", [0.0, 0.4])
@pytest.mark.parametrize("hw", [(33, 35), (64, 48), (8, 9)])
def test_any_input_size(hw, skip):
    from dataclasses import replace

    net = MdAFuseNet(replace(SMALL, salient_skip=skip)).eval()
    x = torch.rand(3, 1, *hw)
    with torch.no_grad():
        out = net(x, torch.rand_like(x))
    assert out.shape == (3, 1, *hw)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("skip", [0.0, 0.4])
def test_gradients_reach_every_parameter(skip):
    from dataclasses import replace

    torch.manual_seed(0)
    net = MdAFuseNet(replace(SMALL, salient_skip=skip)).train()
    mr, fn = torch.rand(2, 1, 24, 24), torch.rand(2, 1, 24, 24)
    net(mr, fn).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert missing == []


def test_bad_shapes_raise():
    net = MdAFuseNet(SMALL)
    with pytest.raises(ValueError, match=r"mr must have shape \(B, 1, H, W\)"):
        net(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="functional must have shape"):
        net(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))


def test_default_config_size_is_small():
    n = sum(p.numel() for p in MdAFuseNet().parameters())
    assert 10_000 < n < 1_000_000
