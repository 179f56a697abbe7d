"""Registration quality on the MR grid: normalised mutual information over the MR head mask.

``NMI(A, B) = (H(A) + H(B)) / H(A, B)`` (Studholme, Hill and Hawkes, *Pattern Recognition* 32,
1999), with the entropies of a joint histogram of ``bins x bins`` over the MR head-mask voxels that
the PET covers. 1.0 means the two images are statistically independent there, 2.0 that one
determines the other; misregistration lowers it. It does not depend on the intensity scale of
either image, so it sorts pairs of a cohort for review (lowest first).
"""

from __future__ import annotations

import numpy as np

from mdafuse.io.volume import Volume

__all__ = ["head_mask", "normalised_mutual_information", "registration_quality"]


def head_mask(mr: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Voxels of ``mr`` above ``threshold`` times its 99th percentile (the head; background is dark).

    Args:
        mr: ``(Z, Y, X)`` MR intensities (any scale).
        threshold: fraction of the 99th percentile.

    Returns:
        Boolean array of ``mr``'s shape (all False for an image whose 99th percentile is <= 0).
    """
    data = np.asarray(mr, dtype=np.float32)
    level = float(np.percentile(data, 99)) if data.size else 0.0
    if not level > 0:
        return np.zeros(data.shape, dtype=bool)
    return data > threshold * level


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def normalised_mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    """Studholme's NMI ``(H(a) + H(b)) / H(a, b)`` of two equally long samples (module docstring).

    Each sample is binned into ``bins`` equal bins between its minimum and its 99.9th percentile
    (values above go to the last bin), so a few hot voxels do not squeeze the rest into one bin.

    Returns:
        A value in [1, 2]; 1.0 when either sample is constant or empty.

    Raises:
        ValueError: ``a`` and ``b`` differ in size, or ``bins < 2``.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size != b.size:
        raise ValueError(f"a and b must have the same number of values; got {a.size} and {b.size}")
    if bins < 2:
        raise ValueError(f"bins must be >= 2; got {bins}")
    if a.size == 0:
        return 1.0
    idx = []
    for v in (a, b):
        lo, hi = float(v.min()), float(np.percentile(v, 99.9))
        if not hi > lo:
            hi = float(v.max())
        if not hi > lo:
            return 1.0
        idx.append(np.clip(((v - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1))
    joint = np.bincount(idx[0] * bins + idx[1], minlength=bins * bins).astype(np.float64) / a.size
    joint = joint.reshape(bins, bins)
    h_joint = _entropy(joint.ravel())
    if h_joint <= 0:
        return 1.0
    return (_entropy(joint.sum(axis=1)) + _entropy(joint.sum(axis=0))) / h_joint


def registration_quality(mr: Volume, pet_on_mr: Volume, mask: np.ndarray | None = None, bins: int = 32) -> tuple[float, float]:
    """NMI between the MR and the PET resampled onto its grid, over the MR head mask.

    Args:
        mr: the MR volume.
        pet_on_mr: the PET on the MR grid, resampled with ``cval=nan`` so that voxels outside the
            PET field of view are NaN (a zero fill would count as uptake-free tissue).
        mask: boolean ``(Z, Y, X)`` region; default :func:`head_mask` of the MR.
        bins: histogram bins per image.

    Returns:
        ``(nmi, overlap)``: the NMI over mask voxels the PET covers, and the fraction of mask voxels
        the PET covers.

    Raises:
        ValueError: the grids differ, or the mask is empty.
    """
    if pet_on_mr.shape != mr.shape:
        raise ValueError(f"pet_on_mr must be on the MR grid {mr.shape}; got {pet_on_mr.shape}")
    region = head_mask(mr.data) if mask is None else np.asarray(mask, dtype=bool)
    if region.shape != mr.shape:
        raise ValueError(f"mask must have the MR shape {mr.shape}; got {region.shape}")
    n = int(region.sum())
    if n == 0:
        raise ValueError("mask is empty: no MR voxel to measure registration quality on")
    pet = pet_on_mr.data[region]
    covered = np.isfinite(pet)
    overlap = float(covered.sum()) / n
    return normalised_mutual_information(mr.data[region][covered], pet[covered], bins), overlap
