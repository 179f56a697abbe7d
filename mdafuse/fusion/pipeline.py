"""Fusion of image pairs with a loaded network; pure functions, no file I/O."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from mdafuse.color import rgb_to_ycbcr, with_luminance
from mdafuse.model.weights import default_weights_path, load_model

__all__ = ["Fuser", "fuse_pair", "PRECISIONS"]

#: Network precisions: float32, or autocast to bfloat16 / float16.
PRECISIONS = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _check_pair(mr: np.ndarray, functional: np.ndarray) -> None:
    if mr.ndim != 2:
        raise ValueError(f"mr must be a grey image of shape (H, W); got {mr.shape}")
    if functional.ndim not in (2, 3) or (functional.ndim == 3 and functional.shape[2] != 3):
        raise ValueError(f"functional must have shape (H, W) or (H, W, 3); got {functional.shape}")
    if functional.shape[:2] != mr.shape:
        raise ValueError(f"functional must match mr size {mr.shape}; got {functional.shape[:2]} (resample or register first)")
    for name, arr in (("mr", mr), ("functional", functional)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        if arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
            raise ValueError(f"{name} must hold values in [0, 1]; got [{arr.min():.4g}, {arr.max():.4g}]")


class Fuser:
    """One loaded network that fuses pairs; reuse it for many pairs (a Ray actor holds one).

    Args:
        weights: safetensors file; None loads the weights shipped in the package for ``modality``.
        device: torch device, e.g. "cpu" or "cuda".
        modality: functional modality (PET, SPECT, CT or the DICOM codes PT, NM) that picks the
            shipped weights when ``weights`` is None; ignored otherwise.
        precision: one of :data:`PRECISIONS`: "fp32" (default), or "bf16"/"fp16" to run the network
            under ``torch.autocast`` (outputs are float32 either way; see docs/cohort-job.md for the
            measured differences to fp32).
        channels_last: run convolutions on channels-last tensors (faster with autocast on CUDA).
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str = "cpu",
        modality: str | None = None,
        precision: str = "fp32",
        channels_last: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
        self.device = torch.device(device)
        self.precision = precision
        self.channels_last = bool(channels_last)
        self.model, self.info = load_model(weights, device=self.device, modality=modality)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    @property
    def weights_sha256(self) -> str:
        return self.info.sha256

    @property
    def model_version(self) -> str:
        return self.info.version

    @torch.inference_mode()
    def fuse_luminance(self, mr: torch.Tensor, functional_y: torch.Tensor) -> torch.Tensor:
        """Fuse on the model's device: ``(B, 1, H, W)`` MR and functional Y -> ``(B, 1, H, W)`` float32 in [0, 1]."""
        if mr.ndim != 4 or mr.shape[1] != 1 or functional_y.shape != mr.shape:
            raise ValueError(f"mr and functional_y must both have shape (B, 1, H, W); got {tuple(mr.shape)} and {tuple(functional_y.shape)}")
        a = mr.to(self.device, torch.float32, non_blocking=True)
        b = functional_y.to(self.device, torch.float32, non_blocking=True)
        if self.channels_last:
            a = a.contiguous(memory_format=torch.channels_last)
            b = b.contiguous(memory_format=torch.channels_last)
        if self.precision == "fp32":
            out = self.model(a, b)
        else:
            with torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision]):
                out = self.model(a, b)
        return out.float().clamp(0, 1).contiguous()

    def fuse_batch(self, mr: np.ndarray, functional_y: np.ndarray) -> np.ndarray:
        """Fuse grey batches: ``(B, H, W)`` MR and ``(B, H, W)`` functional luminance -> ``(B, H, W)``."""
        mr = np.asarray(mr, dtype=np.float32)
        fy = np.asarray(functional_y, dtype=np.float32)
        if mr.ndim != 3 or fy.shape != mr.shape:
            raise ValueError(f"mr and functional_y must both have shape (B, H, W); got {mr.shape} and {fy.shape}")
        a = torch.from_numpy(np.ascontiguousarray(mr)).unsqueeze(1)
        b = torch.from_numpy(np.ascontiguousarray(fy)).unsqueeze(1)
        return self.fuse_luminance(a, b)[:, 0].cpu().numpy()

    def fuse_slices(self, mr: np.ndarray, functional: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """Fuse a stack slice by slice in batches: ``(Z, H, W)`` MR with ``(Z, H, W)`` or ``(Z, H, W, 3)``.

        Returns:
            The fused stack in the functional image's layout, float32 in [0, 1] (colour: Y fused, Cb/Cr kept).
        """
        mr = np.asarray(mr, dtype=np.float32)
        functional = np.asarray(functional, dtype=np.float32)
        if mr.ndim != 3 or functional.shape[:3] != mr.shape or functional.ndim not in (3, 4):
            raise ValueError(f"mr must be (Z, H, W) and functional (Z, H, W) or (Z, H, W, 3) of the same size; got {mr.shape} and {functional.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        ycc = rgb_to_ycbcr(functional) if functional.ndim == 4 else None
        fy = ycc[..., 0] if ycc is not None else functional
        fused_y = np.empty(mr.shape, dtype=np.float32)
        for start in range(0, mr.shape[0], batch_size):
            stop = min(mr.shape[0], start + batch_size)
            fused_y[start:stop] = self.fuse_batch(mr[start:stop], fy[start:stop])
        return fused_y if ycc is None else with_luminance(ycc, fused_y)

    def fuse(self, mr: np.ndarray, functional: np.ndarray) -> np.ndarray:
        """Fuse one pair; see :func:`fuse_pair`."""
        mr = np.asarray(mr, dtype=np.float32)
        functional = np.asarray(functional, dtype=np.float32)
        _check_pair(mr, functional)
        return self.fuse_slices(mr[None], functional[None])[0]


_DEFAULT: dict[tuple[str, str], Fuser] = {}
_LOCK = threading.Lock()


def _cached_fuser(weights: str | Path | None, device: str, modality: str | None) -> Fuser:
    # keyed by the file that gets loaded, so PET, CT and no modality share the default model
    key = (str(weights if weights is not None else default_weights_path(modality)), str(device))
    with _LOCK:
        if key not in _DEFAULT:
            _DEFAULT[key] = Fuser(weights, device, modality)
        return _DEFAULT[key]


def fuse_pair(
    mr: np.ndarray,
    functional: np.ndarray,
    *,
    weights: str | Path | None = None,
    device: str = "cpu",
    modality: str | None = None,
) -> np.ndarray:
    """Fuse an MR slice with a PET/SPECT (or CT) slice of the same size.

    Args:
        mr: ``(H, W)`` float32 in [0, 1].
        functional: ``(H, W)`` grey or ``(H, W, 3)`` RGB pseudo-colour, float32 in [0, 1].
        weights: safetensors weights (default: the shipped model, loaded once and cached).
        device: torch device.
        modality: functional modality (PET, SPECT, CT; DICOM PT, NM) choosing the shipped
            weights when ``weights`` is None (SPECT has its own; see ``MODALITY_WEIGHTS``).

    Returns:
        The fused image, float32 in [0, 1], with the functional image's layout: a colour functional
        image is fused in YCbCr (BT.601): its Y with the MR by the network, its Cb/Cr kept.
    """
    return _cached_fuser(weights, device, modality).fuse(mr, functional)
