"""Ensembles of MdAFuse networks: the mean fused image of several trained networks (and image flips)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from torch import nn

from mdafuse.model.config import MdAFuseConfig
from mdafuse.model.network import MdAFuseNet

__all__ = ["EnsembleConfig", "MdAFuseEnsemble", "FLIP_VIEWS"]

#: Image dimensions flipped for each view of a pair: as is, left-right, up-down, both.
FLIP_VIEWS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


@dataclass(frozen=True)
class EnsembleConfig:
    """The member networks of an ensemble and whether each also fuses the flipped pair.

    Attributes:
        members: one network configuration per member (at least one).
        flip_average: also fuse the pair flipped left-right, up-down and both, flip each output back and
            average all of them (four views per member, four times the compute).
    """

    members: tuple[MdAFuseConfig, ...]
    flip_average: bool = False

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("an ensemble needs at least one member network")
        if not all(isinstance(m, MdAFuseConfig) for m in self.members):
            raise TypeError("ensemble members must be MdAFuseConfig (ensembles do not nest)")

    @property
    def views(self) -> int:
        """Network evaluations per fused pair."""
        return len(self.members) * (len(FLIP_VIEWS) if self.flip_average else 1)

    def to_json(self) -> str:
        return json.dumps({"members": [json.loads(m.to_json()) for m in self.members], "flip_average": self.flip_average}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "EnsembleConfig":
        raw = json.loads(text)
        members = tuple(MdAFuseConfig.from_json(json.dumps(m)) for m in raw["members"])
        return cls(members=members, flip_average=bool(raw.get("flip_average", False)))


class MdAFuseEnsemble(nn.Module):
    """Mean fused image of member networks: ``(B, 1, H, W), (B, 1, H, W) -> (B, 1, H, W)``.

    Members trained with different losses, skip rules or seeds agree on what both sources support and
    differ in artefacts of their own; the mean keeps the first and cancels part of the second, which
    raises the correlation-type scores (SSIM, SCD) at a small cost in contrast (SD). Each member is a
    full :class:`MdAFuseNet`, so the ensemble is the paper's network evaluated several times.
    """

    def __init__(self, cfg: EnsembleConfig) -> None:
        super().__init__()
        self.config = cfg
        self.members = nn.ModuleList(MdAFuseNet(c) for c in cfg.members)

    def forward(self, mr: torch.Tensor, functional: torch.Tensor) -> torch.Tensor:
        views = FLIP_VIEWS if self.config.flip_average else FLIP_VIEWS[:1]
        total = torch.zeros_like(mr)
        for net in self.members:
            for dims in views:
                total = total + net(mr.flip(dims), functional.flip(dims)).flip(dims)  # dims () is the pair as is
        return total / self.config.views
