"""The methods a benchmark compares: MdAFuse and the classical baselines, and their display names."""

from __future__ import annotations

__all__ = ["MDAFUSE", "available_methods", "display_name"]

MDAFUSE = "mdafuse"


_DISPLAY = {MDAFUSE: "MdAFuse", "pca": "PCA", "dwt": "DWT", "ihs": "IHS", "gff": "GFF", "latlrr": "LatLRR", "nsst": "NSST"}


def available_methods() -> list[str]:
    """Method names accepted by :func:`run_benchmark`: ``"mdafuse"`` then every baseline."""
    from mdafuse.baselines import BASELINES

    return [MDAFUSE, *BASELINES]


def display_name(method: str) -> str:
    """How a method is named in tables and figures (`"gff"` -> `"GFF"`, MdAFuse as written)."""
    return _DISPLAY.get(method, method.capitalize())
