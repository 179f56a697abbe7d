"""The MdAFuse network: multi-dimensional features of MR and functional images, fused and decoded."""

from __future__ import annotations

import torch
from torch import nn

from mdafuse.model.blocks import AdaptiveAffine, CoarseFeatureModule, Decoder, DirectHead, FineFeatureModule, MultiScaleFeatureModule
from mdafuse.model.config import MdAFuseConfig


class FeatureExtractor(nn.Module):
    """CFM, FFM and MFM of one image: ``(B, 1, H, W) -> ((B, F, H, W),) * 3`` as (CF, FF, MF)."""

    def __init__(self, cfg: MdAFuseConfig) -> None:
        super().__init__()
        self.cfm = CoarseFeatureModule(cfg)
        self.ffm = FineFeatureModule(cfg)
        self.mfm = MultiScaleFeatureModule(cfg)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.cfm(x), self.ffm(x), self.mfm(x)


def fuse_features(
    mr: tuple[torch.Tensor, torch.Tensor, torch.Tensor], fn: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """The paper's fusion rule on the six features of a pair: ``(B, 2F, H, W)``.

    Per image coarse and fine features are added; across modalities the element-wise maximum keeps
    the salient (bright functional) response; the multi-scale features are fused the same way and
    joined along channels.
    """
    cf_mr, ff_mr, mf_mr = mr
    cf_fn, ff_fn, mf_fn = fn
    detail = torch.maximum(cf_mr + ff_mr, cf_fn + ff_fn)
    scale = torch.maximum(mf_mr, mf_fn)
    return torch.cat([detail, scale], dim=1)


class MdAFuseNet(nn.Module):
    """MR + functional luminance -> fused luminance: ``(B, 1, H, W), (B, 1, H, W) -> (B, 1, H, W)``.

    One feature extractor is shared by both modalities (as in the published design); any input
    size works, odd sizes included.
    """

    def __init__(self, cfg: MdAFuseConfig | None = None) -> None:
        super().__init__()
        self.config = cfg or MdAFuseConfig()
        self.extractor = FeatureExtractor(self.config)
        self.affine = AdaptiveAffine(2 * self.config.features)
        self.decoder = Decoder(2 * self.config.features, self.config.decoder_channels, out_channels=1)
        self.head = DirectHead(self.config.salient_skip, self.config.skip_rule)

    def forward(self, mr: torch.Tensor, functional: torch.Tensor) -> torch.Tensor:
        if mr.ndim != 4 or mr.shape[1] != 1:
            raise ValueError(f"mr must have shape (B, 1, H, W); got {tuple(mr.shape)}")
        if functional.shape != mr.shape:
            raise ValueError(f"functional must have shape {tuple(mr.shape)} matching mr; got {tuple(functional.shape)}")
        if min(mr.shape[-2:]) < 4:
            raise ValueError(f"images must be at least 4x4 pixels; got {tuple(mr.shape[-2:])}")
        fused = fuse_features(self.extractor(mr), self.extractor(functional))
        return self.head(self.decoder(self.affine(fused)), mr, functional)
