"""The stages of the fusion job's Ray Data pipeline, and the record that flows between them.

::

    pair rows ──▶ load_chunks (CPU tasks)  fetch, decode, resample, window; a pair becomes chunks of
                                            at most ``chunk_slices`` slices
              ──▶ FuseChunks (actor pool)   one model per actor (GPU when scheduled on one): fuses
                                            the slices of several chunks (of several pairs) in
                                            network batches, rebuilds colour and scores the metrics
                                            on the model's device
              ──▶ finish_chunks (CPU tasks) enhancement, PNG/NIfTI encoding and writes; a pair of
                                            one chunk is complete here (done.json written)
              ──▶ driver                    collects the small records; a pair of several chunks is
                                            completed by :func:`finalize_pair` (a Ray task) from the
                                            parts its chunks wrote

Each stage turns a failure of a pair into an error record that later stages pass through, so a bad
pair becomes an error row and never fails the dataset. Input locations and DICOM UIDs exist only
in the first stage's input; every message leaving it is scrubbed.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import pickle
import shutil
import tempfile
import time
from pathlib import Path
from dataclasses import asdict, dataclass

import numpy as np

from mdafuse import storage
from mdafuse.jobs.fusion_rows import METRIC_NAMES, PAIR_META, empty_row, json_row, normalise_row
from mdafuse.jobs.runtime import CRASH_ENV, DEVICE_OVERRIDE_ENV, RunLayout, limit_threads, utc_now, where_am_i
from mdafuse.privacy import scrub_locations
from mdafuse.modality import functional_modality
from mdafuse.storage import Store

log = logging.getLogger(__name__)

__all__ = ["FusionJobConfig", "load_chunks", "FuseChunks", "finish_chunks", "finalize_pair", "assemble_row", "PARTS"]

#: hidden folder of a pair's chunk results until :func:`finalize_pair` joins them
PARTS = "_parts"
#: slices scored per call of :func:`mdafuse.scoring.score_batch` on a CPU and on a GPU
SCORE_BATCH_CPU = 8
SCORE_BATCH_GPU = 64
_N_METRICS = len(METRIC_NAMES)


@dataclass(frozen=True)
class FusionJobConfig:
    """Everything the stages need (picklable; no secrets: S3 keys stay in the environment).

    Attributes:
        out: output root, local folder or ``s3://bucket/prefix``.
        cohort: cohort name (a hive partition value).
        run_id: run identifier (a hive partition value); rerunning the same id resumes.
        endpoint: S3 endpoint override (else the AWS variables).
        weights: safetensors weights; None for the shipped weights of each pair's modality.
        modality: one functional modality for the whole cohort (PET, SPECT, CT; DICOM PT, NM)
            choosing the shipped weights when ``weights`` is None; None: each pair's own.
        device: torch device of the model actors ("cpu", "cuda").
        precision: network precision on CUDA ("fp32", "bf16", "fp16"); CPU always runs fp32.
        channels_last: channels-last convolutions (CUDA only).
        batch_size: slices per network call.
        chunk_slices: most slices per pipeline record (bounds the size of one object).
        slice_images: which volume slices get PNGs: "brain", "all" or "none".
        score_every: score every K-th brain slice.
        torch_threads: intra-op threads per model actor.
        expected_sha: (modality, sha256) of the weights each modality gets, so that the load stage
            can reuse an earlier attempt's done record made with the same weights.
        crash_on: test hook: ``pair_id`` on which a model actor exits abruptly once.
        crash_marker: file that records that the crash happened (so the retry goes through).
        attempt: the attempt id; chunk parts of pairs of several chunks go under
            ``images/P/_parts/<attempt>/`` until joined.
        dicom: also write each fused volume as a derived DICOM series (``<pair>/dicom/``), when its
            MR is a DICOM series.
        keep_identity: keep the source patient module in that series (default: de-identified).
        pet_frames: frame window of dynamic BIDS PET (:class:`mdafuse.io.bids.FrameWindow` text).
        register: when PET is registered to MR (:data:`mdafuse.io.pair.REGISTER_MODES`).
    """

    out: str
    cohort: str
    run_id: str
    endpoint: str | None = None
    weights: str | None = None
    modality: str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False
    batch_size: int = 16
    chunk_slices: int = 64
    slice_images: str = "brain"
    score_every: int = 1
    torch_threads: int = 1
    expected_sha: tuple[tuple[str, str], ...] = ()
    crash_on: str | None = None
    crash_marker: str | None = None
    attempt: str = "attempt"
    dicom: bool = False
    keep_identity: bool = False
    pet_frames: str = "last:20"
    register: str = "auto"

    def __post_init__(self) -> None:
        from mdafuse.io.bids import FrameWindow
        from mdafuse.io.pair import REGISTER_MODES

        FrameWindow.parse(self.pet_frames)  # raises on a bad window before any worker starts
        if self.register not in REGISTER_MODES:
            raise ValueError(f"register must be one of {REGISTER_MODES}; got {self.register!r}")
        RunLayout(Store(self.out), self.cohort, self.run_id)  # validates the names
        for name in ("batch_size", "chunk_slices", "score_every", "torch_threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.slice_images not in ("brain", "all", "none"):
            raise ValueError(f"slice_images must be 'brain', 'all' or 'none'; got {self.slice_images!r}")
        functional_modality(self.modality)  # raises on an unknown name before any worker starts

    @property
    def layout(self) -> RunLayout:
        return RunLayout(Store(self.out, self.endpoint), self.cohort, self.run_id)

    @property
    def images(self) -> Store:
        return self.layout.under("images")

    def parts(self, pair_id: str) -> Store:
        """Where the chunks of a pair of several chunks wait to be joined (hidden from readers)."""
        return self.images.child(PARTS, self.attempt or "attempt", pair_id)

    def weights_key(self, pair_modality: str | None) -> str:
        """The modality whose shipped weights a pair gets ("" for the default or a fixed model)."""
        from mdafuse.model.weights import MODALITY_WEIGHTS

        if self.weights is not None:
            return ""
        modality = functional_modality(self.modality) or functional_modality(pair_modality) or ""
        return modality if modality in MODALITY_WEIGHTS else ""

    def hash(self) -> str:
        """sha256 of the settings that change results (not the output place, speed settings or test hooks)."""
        import hashlib

        keep = {k: v for k, v in asdict(self).items() if k in ("weights", "slice_images")}
        keep["batch_size"] = 4  # kept in the hash for runs started before batching moved across pairs
        if self.modality is not None:  # absent when unset, so runs started before the option resume
            keep["modality"] = functional_modality(self.modality)
        if self.score_every != 1:
            keep["score_every"] = self.score_every
        if self.precision != "fp32" and self.device != "cpu":
            keep["precision"] = self.precision
        for name, default in (("pet_frames", "last:20"), ("register", "auto")):  # absent at their defaults, as above
            if getattr(self, name) != default:
                keep[name] = getattr(self, name)
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------- records


def _record(pair: dict, **values) -> dict:
    """A pipeline record with every column present (Ray Data blocks need one schema)."""
    rec = {k: str(pair.get(k) or "") for k in (*PAIR_META, "modality")}
    rec.update(
        chunk=0, n_chunks=1, z0=0, n_slices=0, height=0, width=0, status="ok", error="", warnings="", previous="",
        mr=np.zeros((0, 0, 0), np.float32), functional=np.zeros((0, 0, 0, 1), np.float32),
        score=np.zeros(0, bool), image=np.zeros(0, bool), affine=np.zeros(16, np.float64), t_read_s=0.0, trace="", dicom_source="",
        mr_preview="", pet_preview="", pair_info=json.dumps({"mr_gap_days": pair.get("mr_gap_days") or ""}),
    )
    rec.update(values)
    return rec


def _rows_of(batch: dict) -> list[dict]:
    n = len(batch["pair_id"])
    return [{k: v[i] for k, v in batch.items()} for i in range(n)]


def _columns(records: list[dict]) -> dict:
    """Records back to a batch: scalars as arrays, arrays as lists (their shapes differ)."""
    out = {}
    for k in records[0]:
        values = [r[k] for r in records]
        out[k] = values if isinstance(values[0], np.ndarray) and values[0].ndim > 0 else np.asarray(values)
    return out


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _traced(trace: str, stage: str, worker: str, start: float, end: float) -> str:
    """Append one stage span (``stage|worker|start|end``, epoch seconds) to a record's trace."""
    span = f"{stage}|{worker}|{start:.6f}|{end:.6f}"
    return f"{trace};{span}" if trace else span


# ----------------------------------------------------------------------------- stage 1: load


def load_chunks(pair: dict, config: FusionJobConfig) -> list[dict]:
    """Fetch, read, resample and window one pair; its chunk records (one error record on failure).

    A pair whose ``done.json`` from an earlier attempt says ok with the weights this run uses is
    not read again: one record with status "reused" carries the earlier row.
    """
    started = time.time()
    worker, _ = where_am_i()
    records = _load(pair, config)
    for rec in records:
        rec["trace"] = _traced("", "decode", worker, started, time.time())
    return records


def _load(pair: dict, config: FusionJobConfig) -> list[dict]:
    pid = pair["pair_id"]
    images = config.images
    expected = dict(config.expected_sha).get(config.weights_key(pair.get("modality")))
    try:
        previous = json.loads(images.read_bytes(f"{pid}/done.json"))
        if previous.get("status") == "ok" and expected and previous.get("weights_sha256") == expected:
            return [_record(pair, status="reused", previous=json.dumps(previous))]
    except FileNotFoundError:
        pass
    except Exception as exc:  # noqa: BLE001 - an unreadable record: recompute rather than fail
        log.warning("pair %s: unreadable done record (%s); recomputing", pid, type(exc).__name__)
    t0 = time.perf_counter()
    work = tempfile.mkdtemp(prefix="mdafuse-pair-")
    try:
        from mdafuse.io.pair import load_pair

        if not pair.get("mr"):
            raise ValueError(pair.get("note") or ("no MR partner (no MR image of the same name)" if pair.get("kind") == "image2d" else "missing MR location"))
        if not pair.get("pet"):
            raise ValueError("missing PET location")
        fetch = lambda location: storage.with_retries(lambda: storage.fetch_to_local(location, work, config.endpoint), what="fetch")  # noqa: E731
        prepared = load_pair(
            fetch(pair["mr"]),
            _fetch_pet(pair["pet"], fetch),
            pair["kind"],
            mr_series_uid=pair.get("mr_series_uid") or None,
            functional_series_uid=pair.get("pet_series_uid") or None,
            slice_images=config.slice_images,
            score_every=config.score_every,
            keep_dicom_source=config.dicom,
            pet_window=config.pet_frames,
            participant=json.loads(pair["participant"]) if pair.get("participant") else None,
            register=config.register,
            frames=pair.get("frames") or "",
        )
    except Exception as exc:  # noqa: BLE001 - a bad pair becomes an error row; the job goes on
        message = _scrub(f"{type(exc).__name__}: {exc}", pair, work)
        log.warning("pair %s failed: %s", pid, message)
        return [_record(pair, status="error", error=message[:2000], t_read_s=time.perf_counter() - t0)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    t_read = time.perf_counter() - t0
    nz, h, w = prepared.mr.shape
    functional = prepared.functional if prepared.is_rgb else prepared.functional[..., None]
    score = np.zeros(nz, bool)
    score[prepared.score_slices] = True
    image = np.zeros(nz, bool)
    image[prepared.image_slices] = True
    affine = (prepared.affine if prepared.affine is not None else np.zeros((4, 4))).reshape(16).astype(np.float64)
    notes = list(prepared.warnings)
    if config.dicom and pair["kind"] != "image2d" and prepared.dicom_source is None:
        notes.append("no derived DICOM series: the MR is not a DICOM series")
    warnings = _scrub("; ".join(notes), pair, work)
    # base64 text: numpy turns a bytes column into fixed-width strings, which drop trailing NULs
    source_blob = base64.b64encode(pickle.dumps(prepared.dicom_source)).decode("ascii") if prepared.dicom_source is not None else ""
    step = config.chunk_slices
    n_chunks = (nz + step - 1) // step
    z_preview, previews = _previews(prepared.mr, functional, image)
    info = {
        "mr_gap_days": pair.get("mr_gap_days") or "",
        "pet_fields": prepared.pet_fields,
        "registration": prepared.registration,
        "registration_quality": prepared.registration_quality if prepared.registration != "none" else "",
        "registration_transform": prepared.registration_transform,
    }
    return [
        _record(
            pair, chunk=c, n_chunks=n_chunks, z0=z0, n_slices=nz, height=h, width=w, warnings=warnings,
            mr=np.ascontiguousarray(prepared.mr[z0 : z0 + step]), functional=np.ascontiguousarray(functional[z0 : z0 + step]),
            score=score[z0 : z0 + step], image=image[z0 : z0 + step], affine=affine, t_read_s=t_read if c == 0 else 0.0,
            dicom_source=source_blob if c == 0 else "", pair_info=json.dumps(info),
            **(previews if z0 <= z_preview < z0 + step else {}),
        )
        for c, z0 in enumerate(range(0, nz, step))
    ]


def _fetch_pet(location: str, fetch) -> Path:
    """The local PET file or folder; a BIDS ``_pet.nii[.gz]`` on S3 comes with its ``.json`` sidecar beside it."""
    local = fetch(location)
    if not (storage.is_s3(location) and local.name.endswith(("_pet.nii", "_pet.nii.gz"))):
        return local
    sidecar = location[: -len(".nii.gz")] if location.endswith(".nii.gz") else location[: -len(".nii")]
    try:
        copied = fetch(sidecar + ".json")
    except FileNotFoundError:
        return local  # read_bids_pet names the missing sidecar
    shutil.move(str(copied), str(local.with_name(copied.name)))
    return local


def _previews(mr: np.ndarray, functional: np.ndarray, image: np.ndarray) -> tuple[int, dict[str, str]]:
    """The middle slice that gets PNGs, as 8-bit MR and functional PNGs (base64) for QA thumbnails.

    Args:
        mr: ``(Z, H, W)`` windowed MR in [0, 1].
        functional: ``(Z, H, W, C)`` functional image in [0, 1], C 1 or 3.
        image: ``(Z,)`` which slices get PNGs.

    Returns:
        ``(z, {"mr_preview": ..., "pet_preview": ...})``; ``(-1, {})`` when no slice gets a PNG.
    """
    from mdafuse.io.encode import png_bytes

    written = np.flatnonzero(image)
    if not written.size:
        return -1, {}
    z = int(written[written.size // 2])
    pet = functional[z] if functional.shape[-1] == 3 else functional[z, ..., 0]
    return z, {name: base64.b64encode(png_bytes(img)).decode("ascii") for name, img in (("mr_preview", mr[z]), ("pet_preview", pet))}


def _scrub(message: str, pair: dict, work: str) -> str:
    uids = tuple(str(pair.get(k) or "") for k in ("mr_series_uid", "pet_series_uid"))
    return scrub_locations(message, {"mr": pair.get("mr") or "", "pet": pair.get("pet") or ""}, work, uids)


# ----------------------------------------------------------------------------- stage 2: the model


def resolve_device(requested: str) -> str:
    """The torch device of a model actor: ``$MDAFUSE_DEVICE_OVERRIDE`` (tests) or ``requested``.

    Raises:
        RuntimeError: CUDA requested but not available in this process.
    """
    import torch

    device = os.environ.get(DEVICE_OVERRIDE_ENV) or requested
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("the model stage was scheduled with GPUs but torch sees no CUDA device (is a CUDA build of torch installed?)")
    return device


class FuseChunks:
    """Ray Data actor: one loaded model (per weights file) that fuses and scores chunks of slices.

    The slices of every chunk in a batch that share a size, layout and weights are fused together
    in network batches of ``config.batch_size`` (across pairs), the colour image is rebuilt and the
    metrics of the scored slices computed on the model's device; the record leaves with the fused
    slices (float32) and per-metric sums and counts over its scored slices.
    """

    def __init__(self, config: FusionJobConfig) -> None:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        limit_threads(config.torch_threads)
        self.config = config
        self.device = resolve_device(config.device)
        self.precision = config.precision if self.device.startswith("cuda") else "fp32"
        self.worker, self.node_id = where_am_i()
        self.gpu_ids = _ray_gpu_ids()
        self._fusers: dict[str, object] = {}
        self._crash_on, self._crash_marker = config.crash_on, config.crash_marker
        if not self._crash_on and os.environ.get(CRASH_ENV):
            self._crash_on, _, self._crash_marker = os.environ[CRASH_ENV].partition(":")
        self.fuser_for("")  # load (and verify) the default model now, not on the first batch

    def fuser_for(self, key: str):
        if key not in self._fusers:
            from mdafuse.fusion.pipeline import Fuser

            modality = key or self.config.modality
            self._fusers[key] = Fuser(
                self.config.weights, device=self.device, modality=modality, precision=self.precision,
                channels_last=self.config.channels_last and self.device.startswith("cuda"),
            )
        return self._fusers[key]

    def __call__(self, batch: dict) -> dict:
        started = time.time()
        records = _rows_of(batch)
        groups: dict[tuple, list[int]] = {}
        for i, rec in enumerate(records):
            rec.update(fused8=np.zeros((0, 0, 0, 1), np.uint8), enhanced8=np.zeros((0, 0, 0, 3), np.uint8))
            rec.update(metric_sum=np.zeros(_N_METRICS), metric_count=np.zeros(_N_METRICS, np.int64), n_scored=0, worker=self.worker, node_id=self.node_id,
                       device=self.device, gpu_ids=self.gpu_ids, model_version="", weights_sha256="", t_fuse_s=0.0, t_metrics_s=0.0, t_enhance_s=0.0)
            if _text(rec["status"]) != "ok":
                continue
            self._maybe_crash(_text(rec["pair_id"]))
            key = (self.config.weights_key(_text(rec["modality"])), rec["mr"].shape[1:], rec["functional"].shape[-1])
            groups.setdefault(key, []).append(i)
        for (weights_key, _, _), members in groups.items():
            try:
                self._fuse_group(self.fuser_for(weights_key), [records[i] for i in members])
            except Exception as exc:  # noqa: BLE001 - e.g. out of GPU memory: these pairs become error rows
                message = f"{type(exc).__name__}: {exc}"[:2000]
                log.warning("model stage failed on %d chunks: %s", len(members), message)
                for i in members:
                    records[i].update(status="error", error=scrub_locations(message, {}))
        ended = time.time()
        for rec in records:
            # only the 8-bit results travel on: the object store carries a quarter of the float data
            rec.pop("mr", None)
            rec.pop("functional", None)
            rec["trace"] = _traced(_text(rec["trace"]), "model", self.worker, started, ended)
        return _columns(records)

    def _maybe_crash(self, pid: str) -> None:
        if not self._crash_on or pid != self._crash_on or not self._crash_marker or os.path.exists(self._crash_marker):
            return
        with open(self._crash_marker, "w") as f:
            f.write(f"crashed on {pid} in {self.worker}\n")
        log.error("injected crash on pair %s", pid)
        os._exit(17)

    def _fuse_group(self, fuser, members: list[dict]) -> None:
        import torch

        from mdafuse.fusion.color import rgb_to_ycbcr_torch, ycbcr_to_rgb_torch
        from mdafuse.fusion.enhance import enhance
        from mdafuse.fusion.enhance_torch import enhance_batch, to_uint8_torch
        from mdafuse.io.encode import to_uint8
        from mdafuse.scoring import score_slices

        sizes = [m["mr"].shape[0] for m in members]
        mr = np.concatenate([m["mr"] for m in members])
        fn = np.concatenate([m["functional"] for m in members])
        score = np.concatenate([m["score"] for m in members]).astype(bool)
        rgb = fn.shape[-1] == 3
        t0 = time.perf_counter()
        mr_t = _to_device(mr[:, None], fuser.device)
        fn_t = _to_device(np.moveaxis(fn, -1, 1), fuser.device)  # (B, C, H, W)
        ycc = rgb_to_ycbcr_torch(fn_t) if rgb else fn_t
        fused_y = torch.empty_like(mr_t)
        step = self.config.batch_size
        for start in range(0, mr_t.shape[0], step):
            fused_y[start : start + step] = fuser.fuse_luminance(mr_t[start : start + step], ycc[start : start + step, :1])
        fused = ycbcr_to_rgb_torch(torch.cat([fused_y, ycc[:, 1:]], dim=1)).clamp_(0, 1) if rgb else fused_y
        if fuser.device.type == "cuda":
            torch.cuda.synchronize()
        t_fuse = time.perf_counter() - t0
        t0 = time.perf_counter()
        sums = np.zeros((mr.shape[0], _N_METRICS))
        counts = np.zeros((mr.shape[0], _N_METRICS), np.int64)
        idx = np.flatnonzero(score)
        if idx.size:
            sel = torch.as_tensor(idx, device=fused.device)
            values = score_slices(
                mr_t[sel, 0], fn_t[sel].movedim(1, -1) if rgb else fn_t[sel, 0], fused[sel].movedim(1, -1) if rgb else fused[sel, 0],
                METRIC_NAMES, batch=SCORE_BATCH_CPU if fuser.device.type == "cpu" else SCORE_BATCH_GPU,
            )
            finite = np.isfinite(values)
            sums[idx] = np.where(finite, values, 0.0)
            counts[idx] = finite
        t_metrics = time.perf_counter() - t0
        t0 = time.perf_counter()
        fused_hwc = fused.movedim(1, -1) if rgb else fused[:, 0]
        if fuser.device.type == "cpu":
            # numpy's enhancement is ~10x faster than torch's pooling on a CPU; on a GPU the torch path keeps it there
            fused_np = fused_hwc.numpy()
            enhanced8 = to_uint8(np.stack([enhance(f, g) for f, g in zip(fused_np, fn if rgb else fn[..., 0])]))
            fused8 = to_uint8(fused_np if rgb else fused_np[..., None])
        else:
            enhanced8 = to_uint8_torch(enhance_batch(fused_hwc, fn_t.movedim(1, -1) if rgb else fn_t[:, 0])).cpu().numpy()
            fused8 = to_uint8_torch(fused_hwc if rgb else fused_hwc[..., None]).cpu().numpy()
        t_enhance = time.perf_counter() - t0
        start = 0
        total = max(1, sum(sizes))
        for m, n in zip(members, sizes):
            m["fused8"] = np.ascontiguousarray(fused8[start : start + n])
            m["enhanced8"] = np.ascontiguousarray(enhanced8[start : start + n])
            m["metric_sum"] = sums[start : start + n].sum(axis=0)
            m["metric_count"] = counts[start : start + n].sum(axis=0)
            m["n_scored"] = int(score[start : start + n].sum())
            m["t_fuse_s"] = t_fuse * n / total
            m["t_metrics_s"] = t_metrics * n / total
            m["t_enhance_s"] = t_enhance * n / total
            m["model_version"] = str(fuser.model_version)
            m["weights_sha256"] = str(fuser.weights_sha256)
            start += n


def _ray_gpu_ids() -> str:
    """The GPUs Ray assigned to this process ("" on CPU or outside Ray), e.g. "0" or "0,1"."""
    try:
        import ray

        return ",".join(ray.get_runtime_context().get_accelerator_ids().get("GPU", [])) if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - outside a Ray worker
        return ""


def _to_device(array: np.ndarray, device):
    """A float32 tensor on ``device``; through pinned host memory for CUDA (asynchronous copy)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t


# ----------------------------------------------------------------------------- stage 3: outputs


def finish_chunks(batch: dict, config: FusionJobConfig) -> dict:
    """Enhance, encode and write each chunk's slices; complete the pairs that are a single chunk.

    Returns small records (no image data): per-chunk sums, counts, timings, and for a complete
    pair its final row as JSON (``row``).
    """
    out = []
    worker, _ = where_am_i()
    for rec in _rows_of(batch):
        started = time.time()
        rec = {k: (_text(v) if isinstance(v, (str, bytes, np.str_)) else v) for k, v in rec.items()}
        rec["t_write_s"] = 0.0
        rec["row"] = ""
        if rec["status"] == "ok":
            try:
                _write_chunk(rec, config)
            except Exception as exc:  # noqa: BLE001 - a failed write makes the pair an error row
                rec.update(status="error", error=scrub_locations(f"{type(exc).__name__}: {exc}", {})[:2000])
                log.warning("pair %s: writing outputs failed: %s", rec["pair_id"], rec["error"])
        if rec["n_chunks"] == 1 and rec["status"] != "reused":
            row = assemble_row([rec], config)
            _write_done(config.images, row)
            rec["row"] = json_row(row)
        rec["trace"] = _traced(rec["trace"], "write", worker, started, time.time())
        for k in ("mr", "functional", "fused8", "enhanced8", "score", "image", "mr_preview", "pet_preview"):
            rec.pop(k, None)
        if rec["n_chunks"] == 1:
            rec["dicom_source"] = ""  # only pairs still to be joined need it on the driver
        out.append(rec)
    return _columns(out) if out else {}


def _write_chunk(rec: dict, config: FusionJobConfig) -> None:
    from mdafuse.io.encode import nifti_rgb_bytes, png_bytes

    images = config.images.child(rec["pair_id"])
    fused8 = rec["fused8"] if rec["fused8"].shape[-1] == 3 else rec["fused8"][..., 0]
    enhanced8 = rec["enhanced8"]
    t0 = time.perf_counter()
    for k in np.flatnonzero(rec["image"]):
        z = int(rec["z0"] + k)
        images.write_bytes(f"fused_{z:03d}.png", png_bytes(fused8[k]))
        images.write_bytes(f"enhanced_{z:03d}.png", png_bytes(enhanced8[k]))
    for name in ("mr_preview", "pet_preview"):  # the middle PNG slice of the sources, for QA thumbnails
        if rec.get(name):
            images.write_bytes(f"{name}.png", base64.b64decode(rec[name]))
    transform = json.loads(rec.get("pair_info") or "{}").get("registration_transform")
    if transform and int(rec["chunk"]) == 0:  # the PET-to-MR transform, next to the images
        images.write_bytes("registration.json", transform.encode())
    if rec["kind"] != "image2d":
        if fused8.ndim != 4:
            raise ValueError("volume outputs need a colour functional image")
        if rec["n_chunks"] == 1:
            affine = rec["affine"].reshape(4, 4)
            images.write_bytes("fused.nii.gz", nifti_rgb_bytes(fused8, affine))
            images.write_bytes("enhanced.nii.gz", nifti_rgb_bytes(enhanced8, affine))
            write_dicom_series(images, fused8, rec.get("dicom_source", ""), config)
        else:
            config.parts(rec["pair_id"]).write_bytes(f"{rec['chunk']:05d}.npz", _npz(fused=fused8, enhanced=enhanced8))
    rec["t_write_s"] = time.perf_counter() - t0


def write_dicom_series(images: Store, fused8: np.ndarray, source_blob: str, config: FusionJobConfig) -> int:
    """Write the fused volume as a derived DICOM series under ``<pair>/dicom/`` (when asked and the MR is DICOM).

    De-identified unless ``config.keep_identity``: the patient module becomes the pair's pseudonym
    (see :func:`mdafuse.io.derived.write_derived_dicom`). Returns the number of files written.
    """
    if not config.dicom or not source_blob:
        return 0
    from mdafuse.io.derived import write_derived_dicom

    source = pickle.loads(base64.b64decode(_text(source_blob)))
    work = tempfile.mkdtemp(prefix="mdafuse-dicom-")
    try:
        files = write_derived_dicom(fused8.astype(np.float64) / 255.0, source, work, deidentify=not config.keep_identity, series_description="MdAFuse fused MR-PET")
        for f in files:
            images.write_bytes(f"dicom/{os.path.basename(f)}", open(f, "rb").read())
        return len(files)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _npz(**arrays: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _write_done(images: Store, row: dict) -> None:
    """The pair's done record, written after its images; a failure only loses the resume shortcut."""
    try:
        images.write_bytes(f"{row['pair_id']}/done.json", json_row(row).encode())
    except Exception as exc:  # noqa: BLE001 - the row still reaches the metrics table
        note = f"done record not written ({type(exc).__name__})"
        log.warning("pair %s: %s", row["pair_id"], note)
        row["warnings"] = "; ".join(w for w in (row["warnings"], note) if w)[:2000]


def assemble_row(records: list[dict], config: FusionJobConfig) -> dict:
    """The pair's row from its chunk records (one per chunk, any order)."""
    records = sorted(records, key=lambda r: int(r["chunk"]))
    first = records[0]
    info = json.loads(first.get("pair_info") or "{}")
    row = empty_row({**first, **info})
    row.update({k: str(info.get(k) or "") for k in ("pet_fields", "registration", "registration_transform")})
    errors = [r["error"] for r in records if r["status"] != "ok" and r["error"]]
    sums = np.sum([np.asarray(r["metric_sum"], dtype=np.float64) for r in records], axis=0)
    counts = np.sum([np.asarray(r["metric_count"], dtype=np.int64) for r in records], axis=0)
    row.update(
        status="error" if errors or any(r["status"] != "ok" for r in records) else "ok",
        error=errors[0] if errors else "",
        n_slices=int(first["n_slices"]), height=int(first["height"]), width=int(first["width"]),
        model_version=next((r["model_version"] for r in records if r["model_version"]), ""),
        weights_sha256=next((r["weights_sha256"] for r in records if r["weights_sha256"]), ""),
        warnings="; ".join(dict.fromkeys(w for r in records for w in str(r["warnings"]).split("; ") if w))[:2000],
        worker=",".join(sorted({r["worker"] for r in records if r.get("worker")})),
        node_id=",".join(sorted({r["node_id"] for r in records if r.get("node_id")})),
        device=",".join(sorted({r["device"] for r in records if r.get("device")})),
        gpu_ids=",".join(sorted({r["gpu_ids"] for r in records if r.get("gpu_ids")})),
        finished_at=utc_now(),
    )
    for name in ("t_read_s", "t_fuse_s", "t_enhance_s", "t_metrics_s", "t_write_s"):
        row[name] = float(sum(float(r.get(name, 0.0)) for r in records))
    row["t_total_s"] = sum(row[t] for t in ("t_read_s", "t_fuse_s", "t_enhance_s", "t_metrics_s", "t_write_s"))
    if row["status"] == "ok":
        for i, m in enumerate(METRIC_NAMES):
            row[m] = float(sums[i] / counts[i]) if counts[i] else float("nan")
        row["n_scored"] = int(sum(int(r.get("n_scored", 0)) for r in records))
        row["images_uri"] = config.images.uri(row["pair_id"])
    return row


def reused_row(record: dict) -> dict:
    """The row of a pair an earlier attempt completed (its done record)."""
    return normalise_row(json.loads(record["previous"]))


def finalize_pair(records: list[dict], config: FusionJobConfig) -> dict:
    """Join the parts of a pair of several chunks into its NIfTI volumes and write its done record.

    Idempotent: a retry after a lost node finds either the parts (and joins them again) or, when the
    first try got as far as deleting them, the done record it wrote.
    """
    row = assemble_row(records, config)
    images = config.images.child(row["pair_id"])
    parts = config.parts(row["pair_id"])
    t0 = time.perf_counter()
    if row["status"] == "ok":
        try:
            from mdafuse.io.encode import nifti_rgb_bytes

            if not parts.exists():
                done = json.loads(images.read_bytes("done.json"))
                if done.get("status") == "ok":
                    return normalise_row(done)
            chunks = [np.load(_bytes_io(parts.read_bytes(f"{c:05d}.npz"))) for c in range(int(records[0]["n_chunks"]))]
            affine = np.asarray(records[0]["affine"], dtype=np.float64).reshape(4, 4)
            volumes = {name: np.concatenate([p[name] for p in chunks]) for name in ("fused", "enhanced")}
            for name, volume in volumes.items():
                images.write_bytes(f"{name}.nii.gz", nifti_rgb_bytes(volume, affine))
            first = min(records, key=lambda r: int(r["chunk"]))
            write_dicom_series(images, volumes["fused"], first.get("dicom_source", ""), config)
        except Exception as exc:  # noqa: BLE001 - the pair becomes an error row
            row = assemble_row(records, config)
            row.update(status="error", error=scrub_locations(f"joining chunk results failed: {type(exc).__name__}: {exc}", {})[:2000])
            for m in METRIC_NAMES:
                row[m] = float("nan")
            row["images_uri"] = ""
    row["t_write_s"] += time.perf_counter() - t0
    row["t_total_s"] += time.perf_counter() - t0
    _write_done(config.images, row)
    parts.delete_tree()
    return row


def _bytes_io(data: bytes):
    import io

    return io.BytesIO(data)
