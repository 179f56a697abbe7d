"""Locate the shared real-image data (``../shared/data``) and list Harvard fusion pairs.

The data folder is found from ``MDAFUSE_DATA`` or beside the project root. Set
``MDAFUSE_REQUIRE_DATA=1`` (as CI does) to turn its absence into an error instead of a skip.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PairPaths", "find_data_root", "harvard_pairs", "series_of", "MODALITY_FOLDERS", "load_split", "split_pairs"]

MODALITY_FOLDERS = {"MR-PET": "PET", "MR-SPECT": "SPECT", "MR-CT": "CT"}


@dataclass(frozen=True)
class PairPaths:
    """One registered MR/functional slice pair of the Harvard atlas."""

    dataset: str  # "MR-PET", "MR-SPECT" or "MR-CT"
    name: str  # file stem, e.g. "25016": series "25", slice "016"
    mr: Path
    functional: Path

    @property
    def series(self) -> str:
        return series_of(self.name)


def series_of(name: str) -> str:
    """Series id of a Harvard pair name: its first two digits."""
    return Path(name).stem[:2]


def find_data_root() -> Path | None:
    """Return the shared data folder, or None when it cannot be found."""
    env = os.environ.get("MDAFUSE_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parent.parent
    candidates += [here.parent / "shared" / "data", Path.cwd().parent / "shared" / "data", Path.cwd() / "shared" / "data"]
    for c in candidates:
        if (c / "harvard").is_dir() or (c / "tumor-progression").is_dir():
            return c
    return None


def harvard_pairs(dataset: str, root: str | Path | None = None) -> list[PairPaths]:
    """All pairs of one Harvard folder (``MR-PET``, ``MR-SPECT``, ``MR-CT``), sorted by name.

    ``root`` may be the shared data folder, the ``harvard`` folder, or the dataset folder itself.
    """
    if dataset not in MODALITY_FOLDERS:
        raise ValueError(f"dataset must be one of {sorted(MODALITY_FOLDERS)}; got {dataset!r}")
    base = Path(root) if root is not None else find_data_root()
    if base is None:
        raise FileNotFoundError("shared data not found: set MDAFUSE_DATA to the folder holding harvard/")
    for cand in (base / "harvard" / dataset, base / dataset, base):
        if (cand / "MR").is_dir() and (cand / MODALITY_FOLDERS[dataset]).is_dir():
            folder = cand
            break
    else:
        raise FileNotFoundError(f"{base}: no {dataset} folder with MR/ and {MODALITY_FOLDERS[dataset]}/ inside")
    fdir = folder / MODALITY_FOLDERS[dataset]
    pairs = []
    for mr in sorted((folder / "MR").glob("*.png")):
        fn = fdir / mr.name
        if fn.is_file():
            pairs.append(PairPaths(dataset, mr.stem, mr, fn))
    return pairs


def load_split() -> dict[str, dict[str, list[str]]]:
    """The recorded series split: ``{dataset: {"train": [series...], "test": [series...]}}``."""
    import json

    text = (Path(__file__).resolve().parent / "splits" / "harvard_split.json").read_text()
    raw = json.loads(text)
    return {k: v for k, v in raw.items() if k in MODALITY_FOLDERS}


def split_pairs(dataset: str, part: str, root: str | Path | None = None) -> list[PairPaths]:
    """Pairs of ``dataset`` whose series belong to ``part`` ("train" or "test") of the recorded split."""
    if part not in ("train", "test"):
        raise ValueError(f"part must be 'train' or 'test'; got {part!r}")
    series = set(load_split()[dataset][part])
    return [p for p in harvard_pairs(dataset, root) if p.series in series]
