"""Response measures of tracked lesions: SUVpeak, SULpeak, MTV, TLG and a PERCIST-style category.

Per lesion and time point (measured on the SUV in the baseline frame, never on display images):

* **SUVmax**: the hottest voxel of the lesion (``Lesion.max_suv``).
* **SUVpeak** (:func:`suv_peak`; :func:`mdafuse.longitudinal.track.track_subject` prefers the
  segmentation's ``Lesion.suv_peak`` when it has one): mean SUV in a sphere of ``peak_volume_ml`` (1 cm^3, radius 6.20 mm) centred on the
  lesion's hottest voxel; the sphere holds every voxel whose centre lies within the radius
  (:func:`sphere_offsets`), whether or not it belongs to the lesion (Wahl et al., "From RECIST to
  PERCIST", J Nucl Med 2009; the PERCIST sphere may be moved to maximise the mean, here it is
  placed on the hottest voxel; among equally hot voxels, the one nearest the lesion's centroid). On a 2-D slice the sphere's central disc is used. Voxels of the
  sphere outside the image are left out and the row says so.
* **SULpeak**: SUVpeak normalised to lean body mass, ``SUL = SUVbw * LBM / weight``, with the
  Janmahasatian formula (Clin Pharmacokinet 2005;44:1051-65; :func:`lean_body_mass_kg`):
  ``LBM = 9270 W / (6680 + 216 BMI)`` for men, ``9270 W / (8780 + 244 BMI)`` for women,
  ``BMI = W / H^2`` (kg, m). Without weight, height or a sex of M/F it is NaN.
* **MTV**: the lesion volume in ml; **TLG** = MTV x SUVmean (SUV ml).

Per follow-up against the baseline (:func:`percist_response`, thresholds in
:class:`ResponseConfig`), on the hottest lesion's peak (SULpeak when both time points have it,
else SUVpeak, and the row says which):

* **PMD** (progressive metabolic disease): a new lesion (present at the follow-up, absent at
  baseline), or the peak up by at least ``+30 %`` and at least ``+0.8`` units;
* **CMR** (complete metabolic response): no lesion left above background (none segmented);
* **PMR** (partial metabolic response): the peak down by at least ``30 %`` and at least ``0.8`` units;
* **SMD** (stable metabolic disease): anything else;
* **NE** (not evaluable): no baseline lesion and no new one, no PET at the follow-up, or PET not in SUV.

The hottest lesion at follow-up need not be the baseline's (PERCIST 1.0 compares the single
hottest lesions). Liver-based measurability thresholds of PERCIST are not applied (no liver on
brain images): every segmented lesion is measurable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ResponseConfig",
    "PeakResult",
    "RESPONSES",
    "lean_body_mass_kg",
    "sul_factor",
    "sphere_offsets",
    "suv_peak",
    "percist_response",
]

#: response categories, best to worst, then not evaluable
RESPONSES = ("CMR", "PMR", "SMD", "PMD", "NE")


@dataclass(frozen=True)
class ResponseConfig:
    """Thresholds of the response category (module docstring).

    Attributes:
        peak_volume_ml: volume of the SUVpeak sphere (PERCIST: 1 ml).
        pmr_change_pct: relative change of the peak at or below which a decrease is a partial response.
        pmd_change_pct: relative change at or above which an increase is progression.
        min_abs_change: smallest absolute change of the peak (SUL or SUV units) for PMR or PMD.
    """

    peak_volume_ml: float = 1.0
    pmr_change_pct: float = -30.0
    pmd_change_pct: float = 30.0
    min_abs_change: float = 0.8

    def __post_init__(self) -> None:
        if not self.peak_volume_ml > 0:
            raise ValueError(f"peak_volume_ml must be > 0; got {self.peak_volume_ml}")
        if not self.pmr_change_pct < 0 < self.pmd_change_pct:
            raise ValueError(f"need pmr_change_pct < 0 < pmd_change_pct; got {self.pmr_change_pct}, {self.pmd_change_pct}")
        if self.min_abs_change < 0:
            raise ValueError(f"min_abs_change must be >= 0; got {self.min_abs_change}")


def lean_body_mass_kg(weight_kg: float, height_m: float, sex: str) -> float:
    """Lean body mass by Janmahasatian et al. (Clin Pharmacokinet 2005;44:1051-65).

    ``LBM = 9270 W / (6680 + 216 BMI)`` (male) or ``9270 W / (8780 + 244 BMI)`` (female),
    ``BMI = W / H^2``.

    Args:
        weight_kg: body weight in kg (> 0).
        height_m: height in m (> 0; DICOM PatientSize).
        sex: "M" or "F" (DICOM PatientSex; case-insensitive).

    Raises:
        ValueError: non-positive weight or height, or a sex other than M/F.
    """
    if not (math.isfinite(weight_kg) and weight_kg > 0):
        raise ValueError(f"weight_kg must be a positive number; got {weight_kg}")
    if not (math.isfinite(height_m) and height_m > 0):
        raise ValueError(f"height_m must be a positive number; got {height_m}")
    bmi = weight_kg / height_m**2
    key = str(sex).strip().upper()
    if key == "M":
        return 9270.0 * weight_kg / (6680.0 + 216.0 * bmi)
    elif key == "F":
        return 9270.0 * weight_kg / (8780.0 + 244.0 * bmi)
    else:
        raise ValueError(f"sex must be 'M' or 'F'; got {sex!r}")


def sul_factor(weight_kg: float | None, height_m: float | None, sex: str | None) -> tuple[float, str]:
    """Factor ``LBM / weight`` turning SUVbw into SUL, and "" or the reason it is NaN."""
    missing = [name for name, v in (("weight", weight_kg), ("height", height_m)) if v is None or not (math.isfinite(v) and v > 0)]
    if str(sex or "").strip().upper() not in ("M", "F"):
        missing.append("sex")
    if missing:
        return math.nan, f"no {'/'.join(missing)}: SUL not computed"
    return lean_body_mass_kg(weight_kg, height_m, sex) / weight_kg, ""  # type: ignore[arg-type]


def sphere_offsets(voxel_size_mm: tuple[float, ...], volume_ml: float = 1.0) -> np.ndarray:
    """Integer voxel offsets of a sphere of ``volume_ml`` (voxel centres within its radius).

    Args:
        voxel_size_mm: ``(dz, dy, dx)`` for volumes; ``(dy, dx)`` gives the sphere's central disc.
        volume_ml: sphere volume (1 ml: radius ``(3000 / (4 pi))^(1/3) = 6.2035`` mm).

    Returns:
        ``(N, ndim)`` int array, the centre ``(0, ...)`` included.
    """
    vox = np.asarray(voxel_size_mm, dtype=np.float64)
    if vox.ndim != 1 or vox.size not in (2, 3) or not (vox > 0).all():
        raise ValueError(f"voxel_size_mm must hold 2 or 3 positive values; got {voxel_size_mm}")
    radius = (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    reach = [int(math.floor(radius / v)) for v in vox]
    grids = np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij")
    offsets = np.stack([g.ravel() for g in grids], axis=1)
    dist2 = ((offsets * vox) ** 2).sum(axis=1)
    return offsets[dist2 <= radius**2 * (1 + 1e-12)]


@dataclass(frozen=True)
class PeakResult:
    """SUVpeak of one lesion.

    Attributes:
        value: mean SUV over the sphere's voxels inside the image.
        centre: the hottest voxel of the lesion (the sphere's centre).
        n_voxels: voxels of the full sphere.
        n_inside: those inside the image (``< n_voxels``: the lesion is on the image edge).
    """

    value: float
    centre: tuple[int, ...]
    n_voxels: int
    n_inside: int

    @property
    def truncated(self) -> bool:
        return self.n_inside < self.n_voxels


def suv_peak(suv: np.ndarray, mask: np.ndarray, voxel_size_mm: tuple[float, ...], volume_ml: float = 1.0) -> PeakResult:
    """Mean SUV in a ``volume_ml`` sphere centred on the hottest voxel of ``mask`` (module docstring).

    Args:
        suv: ``(H, W)`` or ``(Z, H, W)`` SUV image.
        mask: boolean lesion mask, same shape, not empty.
        voxel_size_mm: voxel size per axis, same length as ``suv.ndim``.
        volume_ml: sphere volume.

    Raises:
        ValueError: shapes differ, an empty mask, or a voxel size of the wrong length.
    """
    suv = np.asarray(suv)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != suv.shape:
        raise ValueError(f"mask must have the suv shape {suv.shape}; got {mask.shape}")
    if not mask.any():
        raise ValueError("mask is empty: no hottest voxel")
    if len(voxel_size_mm) != suv.ndim:
        raise ValueError(f"voxel_size_mm must have {suv.ndim} values; got {voxel_size_mm}")
    top = float(suv[mask].max())
    hottest = np.argwhere(mask & (suv == top))
    vox = np.asarray(voxel_size_mm, dtype=np.float64)
    middle = np.argwhere(mask).mean(axis=0)
    centre = tuple(hottest[int(np.argmin((((hottest - middle) * vox) ** 2).sum(axis=1)))])
    offsets = sphere_offsets(voxel_size_mm, volume_ml)
    pos = offsets + np.asarray(centre)
    inside = np.all((pos >= 0) & (pos < np.asarray(suv.shape)), axis=1)
    pos = pos[inside]
    values = suv[tuple(pos.T)].astype(np.float64)
    return PeakResult(float(values.mean()), tuple(int(c) for c in centre), int(len(offsets)), int(inside.sum()))


def percist_response(
    baseline_peaks: dict[int, float],
    followup_peaks: dict[int, float],
    new_lesions: int,
    config: ResponseConfig | None = None,
) -> tuple[str, str, dict]:
    """PERCIST 1.0-style category of one follow-up against the baseline (module docstring).

    Args:
        baseline_peaks: track id -> peak (SULpeak or SUVpeak) of the lesions present at baseline.
        followup_peaks: track id -> peak of the lesions present at the follow-up (same unit).
        new_lesions: lesions present at the follow-up and absent at baseline.
        config: thresholds.

    Returns:
        ``(category, reason, details)``; ``details`` holds ``baseline_peak``, ``followup_peak``,
        ``peak_change``, ``peak_change_pct``, ``baseline_track_id``, ``followup_track_id`` (NaN or
        None where they do not apply).
    """
    cfg = config if config is not None else ResponseConfig()
    if new_lesions < 0:
        raise ValueError(f"new_lesions must be >= 0; got {new_lesions}")
    base_peaks = {k: v for k, v in baseline_peaks.items() if v is not None and math.isfinite(v)}
    fu_peaks = {k: v for k, v in followup_peaks.items() if v is not None and math.isfinite(v)}
    details: dict = {"baseline_peak": math.nan, "followup_peak": math.nan, "peak_change": math.nan, "peak_change_pct": math.nan,
                     "baseline_track_id": None, "followup_track_id": None}
    if base_peaks:
        details["baseline_track_id"] = max(base_peaks, key=lambda k: base_peaks[k])
        details["baseline_peak"] = base_peaks[details["baseline_track_id"]]
    if fu_peaks:
        details["followup_track_id"] = max(fu_peaks, key=lambda k: fu_peaks[k])
        details["followup_peak"] = fu_peaks[details["followup_track_id"]]
    if base_peaks and fu_peaks:
        details["peak_change"] = details["followup_peak"] - details["baseline_peak"]
        details["peak_change_pct"] = 100.0 * details["peak_change"] / details["baseline_peak"] if details["baseline_peak"] else math.nan
    if new_lesions:
        return "PMD", f"{new_lesions} new lesion(s)", details
    if not followup_peaks:
        if not baseline_peaks:
            return "NE", "no lesion at baseline or follow-up", details
        return "CMR", "no lesion above background remains", details
    if not base_peaks or not fu_peaks:
        return "NE", "peak not measurable", details
    change, pct = details["peak_change"], details["peak_change_pct"]
    if pct <= cfg.pmr_change_pct and change <= -cfg.min_abs_change:
        return "PMR", f"peak {pct:+.1f} % ({change:+.2f})", details
    if pct >= cfg.pmd_change_pct and change >= cfg.min_abs_change:
        return "PMD", f"peak {pct:+.1f} % ({change:+.2f})", details
    return "SMD", f"peak {pct:+.1f} % ({change:+.2f})", details
