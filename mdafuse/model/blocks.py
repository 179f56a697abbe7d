"""Building blocks of the MdAFuse network; every block maps ``(B, C_in, H, W)`` to ``(B, C_out, H', W')``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mdafuse.model.config import SKIP_RULES, MdAFuseConfig


class ConvBNReLU(nn.Sequential):
    """Convolution, batch norm, ReLU: ``(B, C_in, H, W) -> (B, C_out, H/stride, W/stride)``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False, padding_mode="reflect"),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class DepthwiseSeparable(nn.Sequential):
    """Depthwise 3x3 then pointwise 1x1, each with BN-ReLU: ``(B, C_in, H, W) -> (B, C_out, H/s, W/s)``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__(ConvBNReLU(c_in, c_in, 3, stride=stride, groups=c_in), ConvBNReLU(c_in, c_out, 1))


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise 3x3, project (1x1) with an identity skip: ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int, expand: int) -> None:
        super().__init__()
        hidden = channels * expand
        self.body = nn.Sequential(
            ConvBNReLU(channels, hidden, 1),
            ConvBNReLU(hidden, hidden, 3, groups=hidden),
            nn.Conv2d(hidden, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PyramidPooling(nn.Module):
    """Average-pool to half size, 1x1 conv, upsample and concatenate: ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch = ConvBNReLU(channels, channels // 2, 1)
        self.merge = ConvBNReLU(channels + channels // 2, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x, 2, ceil_mode=True)
        up = F.interpolate(self.branch(pooled), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.merge(torch.cat([x, up], dim=1))


class CoarseFeatureModule(nn.Module):
    """CFM: large-kernel, few-channel paths for contours and low frequencies: ``(B, 1, H, W) -> (B, F, H, W)``.

    Two branches as in the published design: a single large-kernel conv, and a chain of large-kernel
    convs with growing width; they are concatenated and reduced by ``cfm_reduce_kernel`` convs.
    """

    def __init__(self, cfg: MdAFuseConfig) -> None:
        super().__init__()
        k = cfg.cfm_kernel
        last = cfg.cfm_channels[-1]
        self.single = ConvBNReLU(1, last, k)
        chain, c_in = [], 1
        for c in cfg.cfm_channels:
            chain.append(ConvBNReLU(c_in, c, k))
            c_in = c
        self.chain = nn.Sequential(*chain)
        self.reduce = ConvBNReLU(2 * last, cfg.features, cfg.cfm_reduce_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(torch.cat([self.single(x), self.chain(x)], dim=1))


class FineFeatureModule(nn.Module):
    """FFM: small-kernel, many-channel paths for texture and high frequencies: ``(B, 1, H, W) -> (B, F, H, W)``.

    A full-resolution branch of 3x3 convs and a U-shaped branch (one pooled scale, bilinear
    upsampling) of the same widths; concatenated and reduced by a 1x1 then a 3x3 conv.
    """

    def __init__(self, cfg: MdAFuseConfig) -> None:
        super().__init__()
        k = cfg.ffm_kernel
        plain, c_in = [], 1
        for c in cfg.ffm_channels:
            plain.append(ConvBNReLU(c_in, c, k))
            c_in = c
        self.plain = nn.Sequential(*plain)
        first, *rest = cfg.ffm_channels
        self.u_in = ConvBNReLU(1, first, k)
        down, c_in = [], first
        for c in rest or [first]:
            down.append(ConvBNReLU(c_in, c, k))
            c_in = c
        self.u_down = nn.Sequential(*down)
        width = cfg.ffm_channels[-1]
        self.u_out = ConvBNReLU(c_in + first, width, k)
        self.reduce = nn.Sequential(ConvBNReLU(2 * width, width, 1), ConvBNReLU(width, cfg.features, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.u_in(x)
        low = self.u_down(F.max_pool2d(skip, 2, ceil_mode=True))
        up = F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)
        u = self.u_out(torch.cat([up, skip], dim=1))
        return self.reduce(torch.cat([self.plain(x), u], dim=1))


class MultiScaleFeatureModule(nn.Module):
    """MFM: strided stem, depthwise-separable pyramid to 1/4 scale, inverted residual, pyramid pooling;
    features of each scale brought back to full size and summed: ``(B, 1, H, W) -> (B, F, H, W)``."""

    def __init__(self, cfg: MdAFuseConfig) -> None:
        super().__init__()
        self.full = ConvBNReLU(1, cfg.features, 3)
        self.stem = ConvBNReLU(1, cfg.mfm_stem, 3, stride=2)
        self.down = DepthwiseSeparable(cfg.mfm_stem, cfg.mfm_channels, stride=2)
        self.residual = InvertedResidual(cfg.mfm_channels, cfg.mfm_expand)
        self.pool = PyramidPooling(cfg.mfm_channels)
        self.from_half = nn.Conv2d(cfg.mfm_stem, cfg.features, 1)
        self.from_quarter = nn.Conv2d(cfg.mfm_channels, cfg.features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        half = self.stem(x)
        quarter = self.pool(self.residual(self.down(half)))
        up_half = F.interpolate(self.from_half(half), size=size, mode="bilinear", align_corners=False)
        up_quarter = F.interpolate(self.from_quarter(quarter), size=size, mode="bilinear", align_corners=False)
        return self.full(x) + up_half + up_quarter


class AdaptiveAffine(nn.Module):
    """Learned per-channel affine map ``alpha * x + beta`` (alpha init 1, beta init 0): ``(B, C, H, W) -> same``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * x + self.beta


class Decoder(nn.Module):
    """5x5 then 3x3 convolutions to ``out_channels`` maps: ``(B, C, H, W) -> (B, out_channels, H, W)``."""

    def __init__(self, c_in: int, widths: tuple[int, ...], out_channels: int = 1) -> None:
        super().__init__()
        layers, c = [], c_in
        for i, w in enumerate(widths):
            layers.append(ConvBNReLU(c, w, 5 if i == 0 else 3))
            c = w
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(c, out_channels, 3, padding=1, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


class DirectHead(nn.Module):
    """The paper's output, tanh mapped to [0, 1], optionally mixed with a fixed rule: ``(B, 1, H, W) -> (B, 1, H, W)``.

    ``F = (1 - g) * (tanh(logits) + 1) / 2 + g * R`` with ``R = max(MR, Y)`` (``rule="max"``) or
    ``(MR + Y) / 2`` (``rule="mean"``); ``g = 0`` is the paper's head.
    """

    def __init__(self, salient_skip: float = 0.0, rule: str = "max") -> None:
        super().__init__()
        if rule not in SKIP_RULES:
            raise ValueError(f"rule must be {' or '.join(map(repr, SKIP_RULES))}; got {rule!r}")
        self.salient_skip = salient_skip
        self.rule = rule

    def forward(self, logits: torch.Tensor, mr: torch.Tensor, functional: torch.Tensor) -> torch.Tensor:
        decoded = 0.5 * (torch.tanh(logits) + 1.0)
        if not self.salient_skip:
            return decoded
        ref = torch.maximum(mr, functional) if self.rule == "max" else 0.5 * (mr + functional)
        return (1.0 - self.salient_skip) * decoded + self.salient_skip * ref
