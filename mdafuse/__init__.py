"""MdAFuse: MR-PET/SPECT brain image fusion with multi-dimensional features."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["fuse_pair", "Fuser", "__version__"]

if TYPE_CHECKING:
    from mdafuse.fusion.pipeline import Fuser, fuse_pair


def __getattr__(name: str) -> Any:
    # Lazy so that `import mdafuse` (e.g. in Ray drivers and the CLI's --help) does not import torch.
    if name in ("fuse_pair", "Fuser"):
        from mdafuse.fusion import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'mdafuse' has no attribute {name!r}")
