"""Shared pieces of the Ray cohort jobs: configuration, output layout, row schema, per-pair work.

Output layout under ``OUT`` (a local folder or ``s3://bucket/prefix``)::

    OUT/images/cohort=C/run=R/<pair_id>/fused_###.png      fused slice ### (RGB for PET)
    OUT/images/cohort=C/run=R/<pair_id>/enhanced_###.png   energy-enhanced slice ###
    OUT/images/cohort=C/run=R/<pair_id>/fused.nii.gz       fused RGB volume on the MR grid (volumes)
    OUT/images/cohort=C/run=R/<pair_id>/enhanced.nii.gz    enhanced RGB volume on the MR grid (volumes)
    OUT/images/cohort=C/run=R/<pair_id>/done.json          the pair's row, written last
    OUT/metrics/cohort=C/run=R/*.parquet                   one row per pair (hive-partitioned)
    OUT/runs/cohort=C/run=R/pairs.parquet                  the run's work units (pseudonymous columns only)
    OUT/runs/cohort=C/run=R/attempts/<attempt>.parquet     pair_ids still to do at each (re)start
    OUT/runs/cohort=C/run=R/summary.json                   counts, throughput, hashes, versions

Rows carry pseudonymous identifiers only (``pair_id``, ``subject_id``, ``session``); input
locations and series UIDs stay on the driver and in the workers' memory, never under ``OUT``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from mdafuse import storage
from mdafuse.cohort import IMAGE_KIND
from mdafuse.modality import functional_modality
from mdafuse.threads import THREAD_ENV_VARS

log = logging.getLogger("jobs.common")

METRIC_NAMES: tuple[str, ...] = ("EN", "MI", "SD", "VIF", "SSIM", "SCD", "CC", "MSE", "rSFe", "Qabf", "SF", "AG", "PSNR")
TIMING_NAMES: tuple[str, ...] = ("t_read_s", "t_fuse_s", "t_enhance_s", "t_metrics_s", "t_write_s", "t_total_s")
CRASH_ENV = "MDAFUSE_INJECT_CRASH"
#: pair-table columns that may be written under OUT (the others name input locations or DICOM UIDs)
PUBLIC_PAIR_COLUMNS: tuple[str, ...] = ("pair_id", "subject_id", "session", "kind", "label")
_UID_RE = re.compile(r"(?<![\w.])[0-2](?:\.\d+){4,}(?![\w.])")

ROW_SCHEMA = pa.schema(
    [
        ("pair_id", pa.string()),
        ("subject_id", pa.string()),
        ("session", pa.string()),
        ("kind", pa.string()),
        ("label", pa.string()),
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
        ("worker", pa.string()),
        ("finished_at", pa.string()),
    ]
)


@dataclass(frozen=True)
class JobConfig:
    """Everything a fusion worker needs (picklable; no secrets: S3 keys stay in the environment).

    Attributes:
        out: output root, local folder or ``s3://bucket/prefix``.
        cohort: cohort name (a hive partition value).
        run_id: run identifier (a hive partition value); rerunning the same id resumes.
        endpoint: S3 endpoint override (else the AWS variables).
        weights: safetensors weights; None for the shipped model of ``modality``.
        modality: functional modality of the cohort (PET, SPECT, CT or DICOM PT, NM) choosing
            the shipped weights when ``weights`` is None (SPECT has its own); None: the default.
        device: torch device of the workers ("cpu", "cuda").
        batch_size: slices per network call for volumes.
        slice_images: which slices get PNGs: "brain", "all" or "none".
        torch_threads: intra-op threads per worker.
        crash_on: test hook: ``pair_id`` on which a worker exits abruptly once.
        crash_marker: file that records that the crash happened (so the retry goes through).
    """

    out: str
    cohort: str
    run_id: str
    endpoint: str | None = None
    weights: str | None = None
    modality: str | None = None
    device: str = "cpu"
    batch_size: int = 4
    slice_images: str = "brain"
    torch_threads: int = 1
    crash_on: str | None = None
    crash_marker: str | None = None

    def __post_init__(self) -> None:
        for name in ("cohort", "run_id"):
            value = getattr(self, name)
            if not value or any(c in value for c in "/=\\ ") or value.startswith((".", "_")):
                raise ValueError(f"{name} must be a non-empty name without '/', '=', spaces or a leading '.'/'_'; got {value!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {self.batch_size}")
        if self.slice_images not in ("brain", "all", "none"):
            raise ValueError(f"slice_images must be 'brain', 'all' or 'none'; got {self.slice_images!r}")
        functional_modality(self.modality)  # raises on an unknown name before any worker starts

    @property
    def partition(self) -> str:
        return f"cohort={self.cohort}/run={self.run_id}"

    @property
    def images_root(self) -> str:
        return storage.join(self.out, "images", f"cohort={self.cohort}", f"run={self.run_id}")

    @property
    def metrics_root(self) -> str:
        return storage.join(self.out, "metrics", f"cohort={self.cohort}", f"run={self.run_id}")

    @property
    def run_root(self) -> str:
        return storage.join(self.out, "runs", f"cohort={self.cohort}", f"run={self.run_id}")

    def hash(self) -> str:
        """sha256 of the settings that change results (not the output place nor test hooks)."""
        keep = {k: v for k, v in asdict(self).items() if k in ("weights", "batch_size", "slice_images")}
        if self.modality is not None:  # absent when unset, so runs started before the option resume
            keep["modality"] = functional_modality(self.modality)
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


def crash_hook_from_env() -> tuple[str | None, str | None]:
    """``MDAFUSE_INJECT_CRASH=<pair_id>:<marker file>`` -> (pair_id, marker)."""
    value = os.environ.get(CRASH_ENV, "")
    if not value:
        return None, None
    pid, _, marker = value.partition(":")
    if not pid or not marker:
        raise ValueError(f"{CRASH_ENV} must be '<pair_id>:<marker file>'; got {value!r}")
    return pid, marker


def limit_threads(threads: int) -> int:
    """Size this process's torch (and OpenMP) pools to ``threads`` CPUs; returns the count used.

    Called in each actor's ``__init__`` so that fractional-CPU actors on a small node do not
    each start one thread per core (oversubscription).
    """
    import torch

    n = max(1, int(threads))
    for k in THREAD_ENV_VARS:
        os.environ.setdefault(k, str(n))
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work has started in this process
        pass
    return n


def empty_row(pair: dict) -> dict:
    """A row for ``pair`` with every value missing (NaN metrics, zero counts)."""
    row = {name: None for name in ROW_SCHEMA.names}
    for k in ("pair_id", "subject_id", "session", "kind", "label"):
        row[k] = pair.get(k) or ""
    row.update({"status": "error", "error": "", "n_slices": 0, "n_scored": 0, "height": 0, "width": 0})
    for m in METRIC_NAMES:
        row[m] = float("nan")
    for t in TIMING_NAMES:
        row[t] = 0.0
    row.update({"model_version": "", "weights_sha256": "", "images_uri": "", "warnings": "", "worker": "", "finished_at": ""})
    return row


def rows_to_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ROW_SCHEMA)


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    arr = np.clip(np.rint(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def read_volume(local, series_uid: str | None, what: str):
    from mdafuse.io.dicom import read_dicom_series
    from mdafuse.io.nifti import read_nifti

    name = str(local)
    if name.endswith((".nii", ".nii.gz")):
        return read_nifti(local)
    if os.path.isdir(name):
        return read_dicom_series(local, series_uid or None)
    raise ValueError(f"{what}: expected a DICOM series folder or a .nii/.nii.gz file")


def _window_pet(pet) -> tuple[np.ndarray, str]:
    """PET volume -> [0, 1]: SUV window 0..8 when in SUV, else 0..99.5th percentile."""
    from mdafuse.io.windows import window_suv

    if pet.units == "SUVbw":
        return window_suv(pet.data, 0.0, 8.0), ""
    hi = float(np.percentile(pet.data, 99.5)) if pet.data.size else 0.0
    if not hi > 0:
        raise ValueError("PET volume is empty (99.5th percentile <= 0)")
    return window_suv(pet.data, 0.0, hi), f"PET not in SUV (units {pet.units or 'unknown'}): windowed to its 99.5th percentile"


class PairProcessor:
    """Fuse, enhance, score and write one pair at a time with one loaded model per modality.

    Args:
        config: the job configuration.
        fuser: an object with ``fuse(mr, functional)``, ``fuse_batch(mr, fy)``, ``weights_sha256``
            and ``model_version``, used for every pair (default: :class:`mdafuse.fusion.pipeline.Fuser`
            with ``config.weights``, or the shipped weights for ``config.modality``; when neither is
            set, a pair whose ``modality`` has its own shipped weights, e.g. SPECT, gets those).
    """

    def __init__(self, config: JobConfig, fuser=None) -> None:
        self.config = config
        limit_threads(config.torch_threads)
        self._one_model = fuser is not None or config.weights is not None or config.modality is not None
        if fuser is None:
            from mdafuse.fusion.pipeline import Fuser

            fuser = Fuser(config.weights, device=config.device, modality=config.modality)
        self.fuser = fuser
        self._by_modality: dict[str, object] = {}
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        env_pid, env_marker = crash_hook_from_env()
        self.crash_on = config.crash_on or env_pid
        self.crash_marker = config.crash_marker or env_marker

    def fuser_for(self, pair: dict):
        """The model for ``pair``: the configured one, or the shipped weights for the pair's modality."""
        from mdafuse.model.weights import MODALITY_WEIGHTS

        modality = functional_modality(pair.get("modality"))
        if self._one_model or modality not in MODALITY_WEIGHTS:
            return self.fuser
        if modality not in self._by_modality:
            from mdafuse.fusion.pipeline import Fuser

            self._by_modality[modality] = Fuser(None, device=self.config.device, modality=modality)
        return self._by_modality[modality]

    # ------------------------------------------------------------------ one pair
    def process(self, pair: dict) -> dict:
        """Return the row of ``pair`` (a :data:`mdafuse.cohort.PAIR_SCHEMA` mapping); never raises."""
        cfg = self.config
        pid = pair["pair_id"]
        prefix = storage.join(cfg.images_root, pid)
        done_uri = storage.join(prefix, "done.json")
        fuser = self.fuser_for(pair)
        try:
            previous = json.loads(storage.read_bytes(done_uri, cfg.endpoint))
            if previous.get("status") == "ok" and previous.get("weights_sha256") == fuser.weights_sha256:
                log.info("pair %s already done; reusing its record", pid)
                return previous
        except FileNotFoundError:
            pass
        except Exception as exc:  # noqa: BLE001 - any storage/parse failure: recompute rather than fail the block
            log.warning("pair %s: unreadable done record (%s); recomputing", pid, scrub_locations(f"{type(exc).__name__}: {exc}", pair, ""))
        self._maybe_crash(pid)
        row = empty_row(pair)
        row["model_version"] = str(fuser.model_version)
        row["weights_sha256"] = str(fuser.weights_sha256)
        row["worker"] = self.worker
        t0 = time.perf_counter()
        work = tempfile.mkdtemp(prefix="mdafuse-pair-")
        warnings: list[str] = []
        try:
            if not pair.get("mr"):
                raise ValueError("missing MR location")
            if not pair.get("pet"):
                raise ValueError("missing PET location")
            if pair["kind"] == IMAGE_KIND:
                self._image_pair(fuser, pair, row, prefix, work, warnings)
            else:
                self._volume_pair(fuser, pair, row, prefix, work, warnings)
            row["status"] = "ok"
            row["images_uri"] = prefix
        except Exception as exc:  # noqa: BLE001 - a bad pair becomes an error row; the job goes on
            row["status"] = "error"
            row["error"] = scrub_locations(f"{type(exc).__name__}: {exc}", pair, work)[:2000]
            log.warning("pair %s failed: %s", pid, row["error"])
        finally:
            shutil.rmtree(work, ignore_errors=True)
        row["t_total_s"] = time.perf_counter() - t0
        row["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        row["warnings"] = "; ".join(warnings)[:2000]
        try:
            storage.write_bytes(done_uri, json.dumps(_json_row(row)).encode(), cfg.endpoint)
        except Exception as exc:  # noqa: BLE001 - the row still reaches the metrics table; only resume shortcuts are lost
            note = scrub_locations(f"done record not written ({type(exc).__name__}: {exc})", pair, work)
            log.warning("pair %s: %s", pid, note)
            warnings.append(note)
            row["warnings"] = "; ".join(warnings)[:2000]
        return row

    def _maybe_crash(self, pid: str) -> None:
        if not self.crash_on or pid != self.crash_on or not self.crash_marker:
            return
        if os.path.exists(self.crash_marker):
            return
        with open(self.crash_marker, "w") as f:
            f.write(f"crashed on {pid} in {self.worker}\n")
        log.error("injected crash on pair %s", pid)
        os._exit(17)

    def _put(self, uri: str, data: bytes) -> None:
        storage.write_bytes(uri, data, self.config.endpoint)

    def _image_pair(self, fuser, pair: dict, row: dict, prefix: str, work: str, warnings: list[str]) -> None:
        from mdafuse.fusion.enhance import enhance
        from mdafuse.io.images import read_pair
        from mdafuse.metrics import compute_all

        t = time.perf_counter()
        mr_local = storage.fetch_to_local(pair["mr"], work, self.config.endpoint)
        pet_local = storage.fetch_to_local(pair["pet"], work, self.config.endpoint)
        mr, fn = read_pair(mr_local, pet_local)
        row["t_read_s"] = time.perf_counter() - t
        row.update(n_slices=1, height=int(mr.shape[0]), width=int(mr.shape[1]))
        t = time.perf_counter()
        fused = fuser.fuse(mr, fn)
        row["t_fuse_s"] = time.perf_counter() - t
        t = time.perf_counter()
        enhanced = enhance(fused, fn)
        row["t_enhance_s"] = time.perf_counter() - t
        t = time.perf_counter()
        scores = compute_all(mr, fn, fused, names=list(METRIC_NAMES))
        row.update(scores)
        row["n_scored"] = 1
        row["t_metrics_s"] = time.perf_counter() - t
        t = time.perf_counter()
        if self.config.slice_images != "none":
            self._put(storage.join(prefix, "fused_000.png"), _png_bytes(fused))
            self._put(storage.join(prefix, "enhanced_000.png"), _png_bytes(enhanced))
        row["t_write_s"] = time.perf_counter() - t

    def _volume_pair(self, fuser, pair: dict, row: dict, prefix: str, work: str, warnings: list[str]) -> None:
        from mdafuse.fusion.color import rgb_to_ycbcr, ycbcr_to_rgb
        from mdafuse.fusion.enhance import enhance
        from mdafuse.io.nifti import write_nifti
        from mdafuse.io.resample import resample_to, select_slices
        from mdafuse.io.windows import normalise_mr, pet_colormap
        from mdafuse.metrics import compute_all

        cfg = self.config
        t = time.perf_counter()
        mr_vol = read_volume(storage.fetch_to_local(pair["mr"], work, cfg.endpoint), pair.get("mr_series_uid"), "mr")
        pet_vol = read_volume(storage.fetch_to_local(pair["pet"], work, cfg.endpoint), pair.get("pet_series_uid"), "pet")
        pet_on_mr = resample_to(pet_vol, mr_vol, order=1)
        warnings.extend(w for w in pet_on_mr.warnings if w not in warnings)
        mr_n = normalise_mr(mr_vol.data)
        pet_w, note = _window_pet(pet_on_mr)
        if note:
            warnings.append(note)
        pet_rgb = pet_colormap(pet_w)
        brain = select_slices(mr_vol, "brain")
        row["t_read_s"] = time.perf_counter() - t
        nz, ny, nx = mr_vol.shape
        row.update(n_slices=int(nz), height=int(ny), width=int(nx))
        if brain.size == 0:
            raise ValueError("MR volume has no slice with brain (all slices empty)")
        t = time.perf_counter()
        ycc = rgb_to_ycbcr(pet_rgb)
        fused_y = np.empty((nz, ny, nx), dtype=np.float32)
        for start in range(0, nz, cfg.batch_size):
            stop = min(nz, start + cfg.batch_size)
            fused_y[start:stop] = fuser.fuse_batch(mr_n[start:stop], ycc[start:stop, ..., 0])
        ycc[..., 0] = fused_y
        fused = ycbcr_to_rgb(ycc)
        row["t_fuse_s"] = time.perf_counter() - t
        t = time.perf_counter()
        enhanced = np.stack([enhance(fused[k], pet_rgb[k]) for k in range(nz)]).astype(np.float32, copy=False)
        row["t_enhance_s"] = time.perf_counter() - t
        t = time.perf_counter()
        per_slice = [compute_all(mr_n[k], pet_rgb[k], fused[k], names=list(METRIC_NAMES)) for k in brain]
        for m in METRIC_NAMES:
            vals = np.array([s[m] for s in per_slice], dtype=np.float64)
            finite = vals[np.isfinite(vals)]
            row[m] = float(finite.mean()) if finite.size else float("nan")
        row["n_scored"] = int(brain.size)
        row["t_metrics_s"] = time.perf_counter() - t
        t = time.perf_counter()
        if cfg.slice_images != "none":
            for k in brain if cfg.slice_images == "brain" else range(nz):
                self._put(storage.join(prefix, f"fused_{int(k):03d}.png"), _png_bytes(fused[k]))
                self._put(storage.join(prefix, f"enhanced_{int(k):03d}.png"), _png_bytes(enhanced[k]))
        for name, data in (("fused", fused), ("enhanced", enhanced)):
            nii = os.path.join(work, f"{name}.nii.gz")
            write_nifti(mr_vol.with_data(data, modality="OT", units="", source_files=[], source_sop_uids=[]), nii)
            with open(nii, "rb") as f:
                self._put(storage.join(prefix, f"{name}.nii.gz"), f.read())
        row["t_write_s"] = time.perf_counter() - t


def scrub_locations(message: str, pair: dict, work: str) -> str:
    """Remove identifying text from a message: input locations and DICOM UIDs.

    The pair's input locations become ``<mr>``/``<pet>`` (paths may name patients), its work
    folder ``<tmp>``, and every DICOM UID (the pair's ``mr_series_uid``/``pet_series_uid`` and any
    other dotted UID of 5+ components) ``<uid:XXXXXXXX>``, a short salted pseudonym that stays
    the same for the same UID, so that messages can still be grouped.
    """
    from mdafuse.io.volume import pseudonym

    subs = [(work, "<tmp>")] if work else []
    for key in ("mr_series_uid", "pet_series_uid"):
        uid = str(pair.get(key) or "")
        if uid:
            subs.append((uid, f"<uid:{pseudonym('uid|' + uid, length=8)}>"))
    for key in ("mr", "pet"):
        loc = str(pair.get(key) or "")
        if loc:
            subs.append((loc, f"<{key}>"))
            if not storage.is_s3(loc):
                subs.append((os.path.realpath(loc), f"<{key}>"))
    for old, new in sorted(subs, key=lambda s: -len(s[0])):
        message = message.replace(old, new)
    return _UID_RE.sub(lambda m: f"<uid:{pseudonym('uid|' + m.group(0), length=8)}>", message)


def _json_row(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if isinstance(v, float) and not np.isfinite(v):
            out[k] = None
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def normalise_row(row: dict) -> dict:
    """A row (possibly read back from a done record, with None for NaN) in :data:`ROW_SCHEMA` form."""
    out = {name: row.get(name) for name in ROW_SCHEMA.names}
    for m in METRIC_NAMES:
        out[m] = float("nan") if out[m] is None else float(out[m])
    for t in TIMING_NAMES:
        out[t] = 0.0 if out[t] is None else float(out[t])
    for k in ("n_slices", "n_scored", "height", "width"):
        out[k] = int(out[k] or 0)
    for k in ROW_SCHEMA.names:
        if ROW_SCHEMA.field(k).type == pa.string() and out[k] is None:
            out[k] = ""
    return out


class FusePairs:
    """Ray Data callable class: loads the model once per actor and turns pair rows into result rows."""

    def __init__(self, config: JobConfig) -> None:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        self.processor = PairProcessor(config)  # sizes torch/OpenMP pools to config.torch_threads

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = [normalise_row(self.processor.process(pair)) for pair in batch.to_pylist()]
        return rows_to_table(rows)
