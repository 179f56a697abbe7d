"""The fusion job's result row: one per pair, its Parquet schema and how it is built from chunk records."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

__all__ = ["METRIC_NAMES", "TIMING_NAMES", "PAIR_META", "PAIR_FLOATS", "ROW_SCHEMA", "empty_row", "normalise_row", "json_row", "rows_to_table"]

METRIC_NAMES: tuple[str, ...] = ("EN", "MI", "SD", "VIF", "SSIM", "SCD", "CC", "MSE", "rSFe", "Qabf", "SF", "AG", "PSNR")
TIMING_NAMES: tuple[str, ...] = ("t_read_s", "t_fuse_s", "t_enhance_s", "t_metrics_s", "t_write_s", "t_total_s")
#: pair-table columns that may be written under OUT (the others name input locations or DICOM UIDs)
PAIR_META: tuple[str, ...] = ("pair_id", "subject_id", "session", "kind", "label", "mr_session")
#: float columns that say how the pair was read (NaN when they do not apply)
PAIR_FLOATS: tuple[str, ...] = ("mr_gap_days", "registration_quality")

ROW_SCHEMA = pa.schema(
    [
        ("pair_id", pa.string()),
        ("subject_id", pa.string()),
        ("session", pa.string()),
        ("kind", pa.string()),
        ("label", pa.string()),
        ("mr_session", pa.string()),
        ("mr_gap_days", pa.float64()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("n_slices", pa.int64()),
        ("n_scored", pa.int64()),
        ("height", pa.int64()),
        ("width", pa.int64()),
        *[(m, pa.float64()) for m in METRIC_NAMES],
        *[(t, pa.float64()) for t in TIMING_NAMES],
        ("model_version", pa.string()),
        ("weights_sha256", pa.string()),
        ("images_uri", pa.string()),
        ("warnings", pa.string()),
        ("pet_fields", pa.string()),
        ("registration", pa.string()),
        ("registration_quality", pa.float64()),
        ("registration_transform", pa.string()),
        ("worker", pa.string()),
        ("node_id", pa.string()),
        ("device", pa.string()),
        ("gpu_ids", pa.string()),
        ("finished_at", pa.string()),
    ]
)


def empty_row(pair: dict) -> dict:
    """A row for ``pair`` with every value missing (NaN metrics, zero counts), status "error"."""
    row = {name: "" for name in ROW_SCHEMA.names}
    for k in PAIR_META:
        row[k] = str(pair.get(k) or "")
    row.update({"status": "error", "n_slices": 0, "n_scored": 0, "height": 0, "width": 0})
    row.update({m: float("nan") for m in METRIC_NAMES})
    row.update({t: 0.0 for t in TIMING_NAMES})
    row.update({k: _float(pair.get(k)) for k in PAIR_FLOATS})
    return row


def _float(value) -> float:
    try:
        return float(value) if value not in (None, "") else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def normalise_row(row: dict) -> dict:
    """A row (possibly read back from a done record, with None for NaN) in :data:`ROW_SCHEMA` form."""
    out = {name: row.get(name) for name in ROW_SCHEMA.names}
    for m in (*METRIC_NAMES, *PAIR_FLOATS):
        out[m] = _float(out[m])
    for t in TIMING_NAMES:
        out[t] = 0.0 if out[t] is None else float(out[t])
    for k in ("n_slices", "n_scored", "height", "width"):
        out[k] = int(out[k] or 0)
    for k in ROW_SCHEMA.names:
        if ROW_SCHEMA.field(k).type == pa.string() and out[k] is None:
            out[k] = ""
    return out


def json_row(row: dict) -> str:
    """The row as JSON (NaN as null), as written to a pair's ``done.json``."""
    out = {}
    for k, v in row.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = None if isinstance(v, float) and not np.isfinite(v) else v
    return json.dumps(out)


def rows_to_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist([normalise_row(r) for r in rows], schema=ROW_SCHEMA)
