"""Configuration of the MdAFuse network."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


#: Fields every weights file written before 0.2 carries in its config (the output head was
#: selectable then); they are written with these fixed values so that shipped weights rebuild to
#: the same bytes and sha256, and only these values are accepted back.
LEGACY_FORMAT_FIELDS = {"head": "direct", "residual_scale": 0.2}
#: Fixed fusion rules the salient skip can copy from: the max rule or the plain average.
SKIP_RULES = ("max", "mean")


@dataclass(frozen=True)
class MdAFuseConfig:
    """Channel counts and kernel sizes of the network.

    The defaults are a CPU-sized version of the published design (Wen et al., IEEE TIP 2024):
    the same modules and fusion rules with fewer channels, so that it trains on a 2-core CPU.

    Attributes:
        cfm_channels: widths of the coarse chain of large-kernel convolutions (1 -> ... -> last).
        cfm_kernel: kernel of the coarse convolutions (large: low frequencies and contours).
        cfm_reduce_kernel: kernel of the convolutions reducing the concatenated coarse branches.
        ffm_channels: widths of the fine branch of small-kernel convolutions (many channels).
        ffm_kernel: kernel of the fine convolutions.
        mfm_stem: channels of the strided multi-scale stem (1/2 scale).
        mfm_channels: channels at 1/4 scale after depthwise-separable convolutions.
        mfm_expand: expansion ratio of the inverted-residual block.
        features: channels of each per-image feature map (CF, FF and MF all have this width).
        decoder_channels: widths of the decoder convolutions before the output layer, whose
            output ``(tanh + 1) / 2`` is the fused image (as in the paper).
        salient_skip: share ``g`` of the output taken straight from the max rule,
            ``F = (1 - g) * D + g * max(MR, Y)`` with ``D`` the decoded image. The paper's element-wise
            maximum keeps salient content in feature space; this skip also keeps a fixed share of the
            salient source intensities (uptake, bright anatomy) exactly. 0 is the paper's output.
        skip_rule: the fixed rule the salient skip copies from: ``"max"`` (``max(MR, Y)``, above) or
            ``"mean"`` (``(MR + Y) / 2``: the error-minimising image, so the skip spends none of the
            MSE budget on ``|MR - Y| / 2``, and contrast must come from the decoder).
    """

    cfm_channels: tuple[int, ...] = (2, 4, 8)
    cfm_kernel: int = 7
    cfm_reduce_kernel: int = 5
    ffm_channels: tuple[int, ...] = (16, 32)
    ffm_kernel: int = 3
    mfm_stem: int = 16
    mfm_channels: int = 32
    mfm_expand: int = 2
    features: int = 16
    decoder_channels: tuple[int, ...] = (16, 8)
    salient_skip: float = 0.0
    skip_rule: str = "max"

    def __post_init__(self) -> None:
        for name in ("cfm_kernel", "cfm_reduce_kernel", "ffm_kernel"):
            k = getattr(self, name)
            if k < 1 or k % 2 == 0:
                raise ValueError(f"{name} must be a positive odd kernel size; got {k}")
        for name in ("cfm_channels", "ffm_channels", "decoder_channels"):
            chans = getattr(self, name)
            if not chans or any(c < 1 for c in chans):
                raise ValueError(f"{name} must be a non-empty tuple of positive ints; got {chans}")
        if not 0.0 <= self.salient_skip < 1.0:
            raise ValueError(f"salient_skip must be in [0, 1); got {self.salient_skip}")
        if self.skip_rule not in SKIP_RULES:
            raise ValueError(f"skip_rule must be one of {SKIP_RULES}; got {self.skip_rule!r}")
        if min(self.mfm_stem, self.mfm_channels, self.mfm_expand, self.features) < 1:
            raise ValueError("mfm_stem, mfm_channels, mfm_expand and features must be positive")

    def to_json(self) -> str:
        return json.dumps({**asdict(self), **LEGACY_FORMAT_FIELDS}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "MdAFuseConfig":
        raw = json.loads(text)
        for key, value in LEGACY_FORMAT_FIELDS.items():
            found = raw.pop(key, value)
            if found != value:
                raise ValueError(f"{key}={found!r}: this network's output head was an experiment removed in 0.2 (docs/research/); only {key}={value!r} loads")
        for key in ("cfm_channels", "ffm_channels", "decoder_channels"):
            if key in raw:
                raw[key] = tuple(raw[key])
        return cls(**raw)
