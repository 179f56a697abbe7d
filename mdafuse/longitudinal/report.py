"""Writers for lesion-tracking results: the lesion and response tables (Parquet + CSV) and the figure."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mdafuse.fusion.enhance import enhance

if TYPE_CHECKING:
    from mdafuse.longitudinal.track import TimepointInput, TrackConfig, TrackResult

__all__ = ["write_report", "write_table", "write_response_table", "write_figure", "display_slice", "fuse_for_display"]

logger = logging.getLogger(__name__)


def write_table(table: pa.Table, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``lesions.parquet`` and ``lesions.csv`` into ``out_dir`` (created); returns both paths."""
    return _write_parquet_and_csv(table, out_dir, "lesions")


def write_response_table(table: pa.Table, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``response.parquet`` and ``response.csv`` (one row per follow-up) into ``out_dir``; returns both paths."""
    return _write_parquet_and_csv(table, out_dir, "response")


def _write_parquet_and_csv(table: pa.Table, out_dir: str | Path, stem: str) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parquet_path, csv_path = out / f"{stem}.parquet", out / f"{stem}.csv"
    pq.write_table(table, parquet_path)
    pacsv.write_csv(table, csv_path)
    return parquet_path, csv_path


def display_slice(track_labels: list[np.ndarray]) -> int:
    """Slice index (volumes) with the most lesion voxels summed over time points; 0 for 2-D."""
    if track_labels[0].ndim == 2:
        return 0
    counts = sum((lab > 0).sum(axis=(1, 2)) for lab in track_labels)
    return int(np.argmax(counts))


def write_report(result: "TrackResult", timepoints: list["TimepointInput"], config: "TrackConfig", out_dir: str | Path, figure: bool = True) -> "TrackResult":
    """Write a tracked subject's ``lesions.parquet``/``.csv``, ``response.parquet``/``.csv`` and (``figure``) ``tracking.png``.

    Returns:
        ``result`` with its ``parquet_path``, ``csv_path``, ``response_parquet_path``,
        ``response_csv_path`` and ``figure_path`` set.
    """
    out = Path(out_dir)
    result.parquet_path, result.csv_path = write_table(result.table, out)
    result.response_parquet_path, result.response_csv_path = write_response_table(result.responses, out)
    if figure:
        result.figure_path = write_figure(result, timepoints, config, out / "tracking.png")
    return result


def fuse_for_display(mr: np.ndarray, pet: np.ndarray, config: "TrackConfig") -> np.ndarray:
    """Fused grey slice for display; falls back to the MR/PET average if fusion is unavailable."""
    if config.fuse:
        try:
            from mdafuse.fusion.pipeline import fuse_pair

            return np.asarray(fuse_pair(mr, pet, weights=config.fusion_weights, device=config.device, modality=config.fusion_modality), dtype=np.float32)
        except (ImportError, OSError, ValueError, RuntimeError) as exc:
            warnings.warn(f"fusion unavailable for the tracking figure ({exc}); showing the MR/PET average", stacklevel=3)
    return (0.5 * (mr + pet)).astype(np.float32)


def _normalise(mr: np.ndarray, hi: float) -> np.ndarray:
    return np.clip(mr / hi, 0.0, 1.0).astype(np.float32) if hi > 0 else np.zeros_like(mr, dtype=np.float32)


def write_figure(result: "TrackResult", timepoints: list["TimepointInput"], config: "TrackConfig", path: str | Path) -> Path:
    """Draw the time points side by side (fused + enhanced, lesion outlines), size and peak over time.

    Each follow-up's title gives its response category and new/resolved lesion counts; new
    lesions are labelled ``N`` after their track id, and a time point without PET says so.

    The MR is scaled by the baseline's 99.5th percentile, the SUV by ``config.suv_display_max``
    (default: baseline 99.9th percentile), both clipped to [0, 1]; they are fused with
    :func:`mdafuse.fuse_pair` (average when unavailable) and enhanced with
    :func:`mdafuse.fusion.enhance.enhance`.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    z = display_slice(result.track_labels)
    take = (lambda a: a[z]) if result.track_labels[0].ndim == 3 else (lambda a: a)
    mr_hi = float(np.percentile(result.aligned_mr[0], 99.5))
    suv_hi = config.suv_display_max or float(np.percentile(result.aligned_suv[0], 99.9))
    n = len(timepoints)
    fig, axes = plt.subplots(1, n + 2, figsize=(3.2 * (n + 2), 3.6), gridspec_kw={"width_ratios": [1] * n + [1.2, 1.2]})
    colours = plt.get_cmap("tab10")
    tab = result.table.to_pydict()
    status = {(tid, t): st for tid, t, st in zip(tab["track_id"], tab["timepoint"], tab.get("status_at_timepoint", []))}
    resp = {r["timepoint"]: r for r in result.responses.to_pylist()}
    for t in range(n):
        mr = _normalise(take(result.aligned_mr[t]), mr_hi)
        pet = _normalise(take(result.aligned_suv[t]), suv_hi)
        fused = fuse_for_display(mr, pet, config)
        shown = enhance(fused, pet, config.enhance)
        ax = axes[t]
        ax.imshow(shown, interpolation="nearest")
        labels = take(result.track_labels[t])
        for tid in np.unique(labels[labels > 0]):
            ax.contour(labels == tid, levels=[0.5], colors=[colours((int(tid) - 1) % 10)], linewidths=1.0)
            cy, cx = np.argwhere(labels == tid).mean(axis=0)
            mark = " N" if status.get((int(tid), t)) == "new" else ""
            ax.text(cx + 4, cy - 4, f"{int(tid)}{mark}", color="white", fontsize=8)
        title = timepoints[t].label or f"t{t}"
        if timepoints[t].suv is None:
            title += "\n(no PET)"
        elif t in resp:
            r = resp[t]
            title += f"\n{r['response']}: {r['n_new_lesions'] or 0} new, {r['n_resolved_lesions'] or 0} resolved"
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    tids = sorted({v for v in tab["track_id"] if v is not None})
    for ax, column, name in ((axes[n], "size", "lesion size"), (axes[n + 1], "suv_peak", "SUVpeak")):
        for tid in tids:
            idx = [i for i, v in enumerate(tab["track_id"]) if v == tid]
            ax.plot([tab["timepoint"][i] for i in idx], [tab[column][i] for i in idx], "o-", color=colours((tid - 1) % 10), label=f"lesion {tid}")
        ax.set_xlabel("time point")
        ax.set_xticks(range(n))
        if tids:
            ax.legend(fontsize=7)
        ax.set_title(name, fontsize=9)
    axes[n].set_ylabel(f"size ({tab['size_unit'][0] if tab['size_unit'] else ''})")
    axes[n + 1].set_ylabel("SUVpeak")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    logger.info("wrote %s", path)
    return path
