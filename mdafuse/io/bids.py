"""BIDS datasets: find each PET image's T1w partner, and read a BIDS PET image as one static SUV volume.

A BIDS dataset (a folder with ``dataset_description.json``) is indexed with bids2table. Every
``pet/*_pet.nii[.gz]`` that passes the entity filters (``trc``, ``rec``, ``run``, ``task``) is one
pair; its MR is the ``anat/*_T1w.nii[.gz]`` of the same subject and session, else (when asked) the
subject's T1w from the nearest session, with the gap recorded.

:func:`read_bids_pet` turns the PET image and its ``_pet.json`` sidecar into one static volume:

* a 4-D (dynamic) image is reduced to the time-weighted mean of its frames over a window
  (:class:`FrameWindow`; default the last 20 minutes of the acquisition), each frame weighted by
  the time it overlaps the window, never by silently taking frame 0;
* activity is converted to Bq/mL (``Units``) and, when the injected activity (``InjectedRadioactivity``
  and its units), the body weight (sidecar ``BodyWeight`` or ``participants.tsv`` ``weight``, kg) and,
  where decay correction needs it, the radionuclide's half-life (``TracerRadionuclide``) are known, to
  SUVbw = C x weight / injected activity, with both referred to the injection time
  (``ImageDecayCorrected``, ``ImageDecayCorrectionTime``, ``InjectionStart``; frame times relative
  to ``TimeZero``, as BIDS-PET defines them);
* it says which fields it used, as one line of text.

Messages name files by their role ("the PET sidecar"), never by their BIDS names, which carry the
subject label.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "BidsError",
    "BidsSelection",
    "BidsPair",
    "FrameWindow",
    "PetSidecar",
    "HALF_LIFE_S",
    "is_bids_root",
    "bids_root_of",
    "index_bids_pairs",
    "read_pet_sidecar",
    "participant_record",
    "participants",
    "half_life_s",
    "frame_weights",
    "read_bids_pet",
    "sidecar_of",
]

#: Half-lives (seconds) of the PET radionuclides, keyed "<element><mass>" (NNDC values).
HALF_LIFE_S: dict[str, float] = {
    "F18": 6586.2,
    "C11": 1221.84,
    "O15": 122.24,
    "N13": 597.9,
    "Ga68": 4062.6,
    "Cu64": 45721.1,
    "Zr89": 282276.0,
    "Rb82": 76.38,
    "I124": 360806.4,
    "Br76": 58320.0,
}

_ACTIVITY_TO_BQ = {"bq": 1.0, "kbq": 1e3, "mbq": 1e6, "gbq": 1e9, "ci": 3.7e10, "mci": 3.7e7, "uci": 3.7e4, "µci": 3.7e4, "nci": 37.0}
_SUV_UNITS = {"suv", "suvbw", "g/ml", "g/mL"}
_NIFTI = (".nii", ".nii.gz")


class BidsError(ValueError):
    """A BIDS PET image or its metadata cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class BidsSelection:
    """Which PET images of a BIDS dataset become pairs, and where their T1w may come from.

    Attributes:
        trc, rec, run, task: keep only PET images with this entity label (None: any).
        mr_session: "same" (the T1w of the PET's own session, else an error row) or "nearest"
            (else the subject's T1w from the nearest session, the gap recorded).
    """

    trc: str | None = None
    rec: str | None = None
    run: str | None = None
    task: str | None = None
    mr_session: str = "same"

    def __post_init__(self) -> None:
        if self.mr_session not in ("same", "nearest"):
            raise ValueError(f"mr_session must be 'same' or 'nearest'; got {self.mr_session!r}")

    def keeps(self, entities: dict) -> bool:
        return all(want is None or str(entities.get(k) or "") == want for k, want in (("trc", self.trc), ("rec", self.rec), ("run", self.run), ("task", self.task)))


@dataclass(frozen=True)
class BidsPair:
    """One PET image of a BIDS dataset and the T1w chosen for it.

    Attributes:
        subject: the BIDS subject label with its prefix ("sub-01").
        session: the pair's session key: "ses-X" (or "" without sessions) and, where present, the
            PET's ``trc``, ``rec``, ``task`` and ``run`` entities ("ses-01_trc-FDG").
        pet: absolute path of the PET image.
        mr: absolute path of the T1w image, "" when none could be chosen.
        mr_session: the T1w's session when it is not the PET's own ("" otherwise).
        mr_gap_days: days from the PET's session to the T1w's (negative: the T1w is earlier) when both dates are known
            (``*_sessions.tsv`` ``acq_time`` or ``*_scans.tsv``), else NaN.
        note: how the T1w was chosen when it was not obvious, or why none was.
    """

    subject: str
    session: str
    pet: str
    mr: str
    mr_session: str = ""
    mr_gap_days: float = float("nan")
    note: str = ""


@dataclass(frozen=True)
class FrameWindow:
    """Which part of a dynamic PET acquisition makes the static image.

    ``FrameWindow.parse("last:20")`` (default): the last 20 minutes of the acquisition;
    ``"40-60"``: 40 to 60 minutes after injection; ``"all"``: every frame. Frames are averaged
    weighted by the seconds each overlaps the window.
    """

    start_min: float | None = None
    end_min: float | None = None
    last_min: float | None = 20.0

    @classmethod
    def parse(cls, text: str) -> "FrameWindow":
        t = str(text).strip().lower()
        if t == "all":
            return cls(None, None, None)
        m = re.fullmatch(r"last:(\d+(?:\.\d+)?)", t)
        if m:
            if float(m.group(1)) <= 0:
                raise ValueError(f"frame window {text!r}: the last minutes must be > 0")
            return cls(None, None, float(m.group(1)))
        m = re.fullmatch(r"(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)", t)
        if m:
            a, b = float(m.group(1)), float(m.group(2))
            if b <= a:
                raise ValueError(f"frame window {text!r}: the end must be after the start")
            return cls(a, b, None)
        raise ValueError(f"frame window {text!r}: expected 'last:MIN', 'START-END' (minutes after injection) or 'all'")

    def __str__(self) -> str:
        if self.last_min is not None:
            return f"last:{self.last_min:g}"
        if self.start_min is None:
            return "all"
        return f"{self.start_min:g}-{self.end_min:g}"


@dataclass(frozen=True)
class PetSidecar:
    """The fields of a ``_pet.json`` sidecar that a static SUV image needs (times in seconds).

    ``present`` lists the sidecar keys that were found, for the record of what was used.
    """

    units: str | None = None
    radionuclide: str | None = None
    injected_bq: float | None = None
    decay_corrected: bool | None = None
    decay_correction_time_s: float | None = None
    injection_start_s: float = 0.0
    frame_starts_s: tuple[float, ...] = ()
    frame_durations_s: tuple[float, ...] = ()
    body_weight_kg: float | None = None
    present: tuple[str, ...] = field(default_factory=tuple)


def is_bids_root(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a ``dataset_description.json`` (the mark of a BIDS dataset)."""
    return Path(folder, "dataset_description.json").is_file()


def bids_root_of(path: str | os.PathLike, levels: int = 5) -> Path | None:
    """The BIDS dataset folder above a file (the first parent with ``dataset_description.json``)."""
    p = Path(path).resolve().parent
    for _ in range(levels):
        if is_bids_root(p):
            return p
        if p.parent == p:
            break
        p = p.parent
    return None


def sidecar_of(image: str | os.PathLike) -> Path:
    """The JSON sidecar path of a NIfTI image (same name, ``.json``)."""
    name = str(image)
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return Path(name[: -len(ext)] + ".json")
    raise BidsError("a BIDS image must end with .nii or .nii.gz")


def _number(value, what: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise BidsError(f"PET sidecar: {what} is not a number ({value!r})") from None
    if not math.isfinite(out):
        raise BidsError(f"PET sidecar: {what} is not finite")
    return out


def _numbers(value, what: str) -> tuple[float, ...]:
    if isinstance(value, (int, float)):
        value = [value]
    if not isinstance(value, list):
        raise BidsError(f"PET sidecar: {what} is not a list of numbers")
    return tuple(_number(v, what) for v in value)


def read_pet_sidecar(path: str | os.PathLike) -> PetSidecar:
    """Parse a ``_pet.json`` sidecar.

    Raises:
        BidsError: the sidecar is missing, is not a JSON object, lacks ``Units``, or holds a field of
            the wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise BidsError(f"no PET sidecar: expected {path} beside the PET image")
    try:
        meta = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BidsError(f"PET sidecar is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise BidsError("PET sidecar is not a JSON object")
    units = meta.get("Units")
    if not isinstance(units, str) or not units.strip():
        raise BidsError("PET sidecar lacks Units (BIDS-PET requires it): the image values have no known meaning")
    injected = None
    if meta.get("InjectedRadioactivity") is not None:
        unit = str(meta.get("InjectedRadioactivityUnits", "MBq")).strip().replace("μ", "u").replace("µ", "u").lower()
        if unit not in _ACTIVITY_TO_BQ:
            raise BidsError(f"PET sidecar: InjectedRadioactivityUnits {meta.get('InjectedRadioactivityUnits')!r} is not an activity unit")
        injected = _number(meta["InjectedRadioactivity"], "InjectedRadioactivity") * _ACTIVITY_TO_BQ[unit]
    decay = meta.get("ImageDecayCorrected")
    if decay is not None and not isinstance(decay, bool):
        text = str(decay).strip().lower()
        if text not in ("true", "false"):
            raise BidsError(f"PET sidecar: ImageDecayCorrected is not true/false ({decay!r})")
        decay = text == "true"
    starts = _numbers(meta.get("FrameTimesStart", []), "FrameTimesStart")
    durations = _numbers(meta.get("FrameDuration", []), "FrameDuration")
    if len(starts) != len(durations):
        raise BidsError(f"PET sidecar lists {len(starts)} FrameTimesStart but {len(durations)} FrameDuration")
    if any(d <= 0 for d in durations):
        raise BidsError("PET sidecar: a FrameDuration is not positive")
    return PetSidecar(
        units=units.strip(),
        radionuclide=str(meta["TracerRadionuclide"]).strip() if meta.get("TracerRadionuclide") else None,
        injected_bq=injected,
        decay_corrected=decay,
        decay_correction_time_s=_number(meta["ImageDecayCorrectionTime"], "ImageDecayCorrectionTime") if meta.get("ImageDecayCorrectionTime") is not None else None,
        injection_start_s=_number(meta.get("InjectionStart", 0.0) or 0.0, "InjectionStart"),
        frame_starts_s=starts,
        frame_durations_s=durations,
        body_weight_kg=_number(meta["BodyWeight"], "BodyWeight") if meta.get("BodyWeight") not in (None, "", "n/a") else None,
        present=tuple(k for k in meta if meta[k] not in (None, "")),
    )


def half_life_s(radionuclide: str | None) -> float | None:
    """Half-life of a radionuclide written as BIDS allows ("C11", "11C", "[18F]", "F-18"), or None."""
    if not radionuclide:
        return None
    text = radionuclide.replace("[", "").replace("]", "").replace("-", "").replace(" ", "")
    letters = "".join(c for c in text if c.isalpha())
    digits = "".join(c for c in text if c.isdigit())
    if not letters or not digits:
        return None
    return HALF_LIFE_S.get(letters[:1].upper() + letters[1:].lower() + digits)


def participants(root: str | os.PathLike | None) -> dict[str, dict[str, str]]:
    """Every ``participants.tsv`` row as text, by ``participant_id`` ("sub-01"); {} when there is none."""
    path = Path(root, "participants.tsv") if root is not None else None
    if path is None or not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = ({k.strip(): (v or "").strip() for k, v in rec.items() if k} for rec in csv.DictReader(fh, delimiter="\t"))
        return {rec.get("participant_id", ""): rec for rec in rows}


def participant_record(root: str | os.PathLike | None, subject: str) -> dict[str, str]:
    """The ``participants.tsv`` row of ``subject`` ("sub-01") as text, {} when there is none."""
    return participants(root).get(subject, {})


def _weight_kg(sidecar: PetSidecar, participant: dict[str, str]) -> tuple[float | None, str]:
    if sidecar.body_weight_kg:
        return sidecar.body_weight_kg, "sidecar BodyWeight"
    for key in ("weight", "body_weight", "weight_kg"):
        value = participant.get(key, "")
        if value and value.lower() != "n/a":
            try:
                kg = float(value)
            except ValueError:
                continue
            if kg > 0:
                return kg, f"participants.tsv {key}"
    return None, ""


def frame_weights(sidecar: PetSidecar, n_frames: int, window: FrameWindow) -> tuple[np.ndarray, str]:
    """Per-frame weights (seconds of overlap with the window) and a description of the choice.

    Raises:
        BidsError: frame times are missing for a dynamic image, disagree with the image's frame
            count, or no frame overlaps the window.
    """
    if n_frames == 1 and not sidecar.frame_starts_s:
        return np.ones(1), "one frame"
    if not sidecar.frame_starts_s:
        raise BidsError(f"4-D PET with {n_frames} frames but the sidecar has no FrameTimesStart/FrameDuration: the frames cannot be placed in time")
    if len(sidecar.frame_starts_s) != n_frames:
        raise BidsError(f"the PET image has {n_frames} frames but its sidecar lists {len(sidecar.frame_starts_s)} frame times")
    start = np.asarray(sidecar.frame_starts_s) - sidecar.injection_start_s  # seconds after injection
    end = start + np.asarray(sidecar.frame_durations_s)
    if window.last_min is not None:
        b = float(end.max())
        a = b - 60.0 * window.last_min
    elif window.start_min is None:
        a, b = -math.inf, math.inf
    else:
        a, b = 60.0 * window.start_min, 60.0 * window.end_min
    weights = np.clip(np.minimum(end, b) - np.maximum(start, a), 0.0, None)
    if n_frames == 1:
        weights = np.ones(1)
    if not np.any(weights > 0):
        raise BidsError(f"no PET frame in the window {window} (frames cover {start.min() / 60:.1f}-{end.max() / 60:.1f} min after injection)")
    used = np.flatnonzero(weights > 0)
    lo, hi = max(a, float(start[used].min())), min(b, float(end[used].max()))
    what = f"frames {used[0] + 1}-{used[-1] + 1} of {n_frames}, {lo / 60:.1f}-{hi / 60:.1f} min after injection, time-weighted mean (window {window})"
    return weights, what


def read_bids_pet(path: str | os.PathLike, window: FrameWindow | None = None, *, participant: dict[str, str] | None = None):
    """Read a BIDS PET image and its sidecar as one static volume, in SUVbw where it can be.

    Args:
        path: the ``_pet.nii`` / ``_pet.nii.gz`` image; its sidecar is the ``.json`` of the same name.
        window: the frames that make the static image (default :class:`FrameWindow` ``last:20``).
        participant: the subject's ``participants.tsv`` row; default: found from the dataset root above ``path``.

    Returns:
        ``(volume, used)``: a :class:`~mdafuse.io.volume.Volume` (modality "PT", units "SUVbw", or
        "BQML" when SUV cannot be computed, with the reason in its warnings) and one line saying
        which fields and frames were used.

    Raises:
        BidsError: no or bad sidecar, no Units, frame times that do not fit the image, no frame in the
            window, or an image without signal.
        NiftiError: the image cannot be read.
    """
    from mdafuse.io.nifti import read_nifti_frames
    from mdafuse.io.volume import Volume

    window = window or FrameWindow()
    sidecar = read_pet_sidecar(sidecar_of(path))
    frames, affine = read_nifti_frames(path)
    weights, frames_used = frame_weights(sidecar, frames.shape[0], window)
    if participant is None:
        subject = next((part for part in Path(path).name.split("_") if part.startswith("sub-")), "")
        participant = participant_record(bids_root_of(path), subject)
    warnings: list[str] = []
    used_fields = ["Units"]
    unit = sidecar.units.replace("μ", "u").replace("µ", "u")
    lower = unit.lower()
    static_units = "BQML"
    to_bqml = None
    if "/" in lower and lower.split("/", 1)[0] in _ACTIVITY_TO_BQ and lower.split("/", 1)[1] in ("ml", "cc", "cm3"):
        to_bqml = _ACTIVITY_TO_BQ[lower.split("/", 1)[0]]
    elif unit in _SUV_UNITS or lower in _SUV_UNITS:
        static_units = "SUVbw"
    else:
        warnings.append(f"PET Units {sidecar.units!r} are not activity per mL: SUV not computed")
        static_units = sidecar.units
    # decay: refer every frame to the injection time when SUV needs it
    lam = None
    factors = np.ones(frames.shape[0])
    if to_bqml is not None:
        half = half_life_s(sidecar.radionuclide)
        lam = math.log(2.0) / half if half else None
        starts = (np.asarray(sidecar.frame_starts_s) - sidecar.injection_start_s) if sidecar.frame_starts_s else np.zeros(frames.shape[0])
        durations = np.asarray(sidecar.frame_durations_s) if sidecar.frame_durations_s else np.zeros(frames.shape[0])
        if sidecar.decay_corrected is None:
            warnings.append("PET sidecar lacks ImageDecayCorrected: SUV not computed")
            to_bqml = None
        elif sidecar.decay_corrected:
            used_fields += ["ImageDecayCorrected", "ImageDecayCorrectionTime"]
            t_ref = (sidecar.decay_correction_time_s or 0.0) - sidecar.injection_start_s
            if abs(t_ref) > 1e-6:
                if lam is None:
                    warnings.append("PET decay-corrected to a time other than injection and TracerRadionuclide unknown: SUV not computed")
                    to_bqml = None
                else:
                    factors[:] = math.exp(lam * t_ref)
                    used_fields.append("TracerRadionuclide")
        else:
            used_fields += ["ImageDecayCorrected", "FrameTimesStart", "FrameDuration"]
            if not sidecar.frame_starts_s:
                warnings.append("PET not decay-corrected and the sidecar has no frame times: SUV not computed")
                to_bqml = None
            elif lam is None:
                warnings.append("PET not decay-corrected and TracerRadionuclide unknown: SUV not computed")
                to_bqml = None
            else:
                # mean activity over a frame, referred to injection: exp(lam t0) lam D / (1 - exp(-lam D))
                with np.errstate(divide="ignore", invalid="ignore"):
                    avg = np.where(durations > 0, lam * durations / -np.expm1(-lam * np.maximum(durations, 1e-9)), 1.0)
                factors = np.exp(lam * starts) * avg
                used_fields.append("TracerRadionuclide")
        if sidecar.injection_start_s:
            used_fields.append("InjectionStart")
    if frames.shape[0] > 1:
        used_fields += ["FrameTimesStart", "FrameDuration"]
    static = np.tensordot(weights * factors, frames, axes=(0, 0)) / weights.sum()
    if not np.any(static):
        raise BidsError("the PET image has no signal (every voxel of the frames used is 0)")
    if not np.isfinite(static).all():
        raise BidsError("the PET image holds NaN or infinite values")
    source = []
    if to_bqml is not None:
        static = static * to_bqml
        weight, weight_from = _weight_kg(sidecar, participant)
        if sidecar.injected_bq is None or sidecar.injected_bq <= 0:
            warnings.append("PET sidecar lacks InjectedRadioactivity: SUV not computed")
        elif weight is None:
            warnings.append("no body weight (sidecar BodyWeight or participants.tsv weight): SUV not computed")
        else:
            static = static * (weight * 1000.0 / sidecar.injected_bq)
            static_units = "SUVbw"
            used_fields += ["InjectedRadioactivity", "InjectedRadioactivityUnits"]
            source.append(weight_from)
    volume = Volume(data=static.astype(np.float32), affine=affine, modality="PT", units=static_units, warnings=warnings)
    fields = ", ".join(dict.fromkeys(used_fields))
    used = f"{static_units} from the sidecar's {fields}" + (f" and {', '.join(source)}" if source else "") + f"; {frames_used}"
    return volume, used


def _natural(label: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", label))


def _session_dates(root: Path, subject: str) -> dict[str, float]:
    """Session label without its prefix ("01") -> acquisition time (days since the epoch) from ``sub-X/sub-X_sessions.tsv``."""
    from datetime import datetime

    path = root / subject / f"{subject}_sessions.tsv"
    out: dict[str, float] = {}
    if not path.is_file():
        return out
    with path.open(newline="", encoding="utf-8-sig") as fh:
        for rec in csv.DictReader(fh, delimiter="\t"):
            ses, when = (rec.get("session_id") or "").strip(), (rec.get("acq_time") or "").strip()
            try:
                out[ses.removeprefix("ses-")] = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp() / 86400.0
            except ValueError:
                continue
    return out


def index_bids_pairs(root: str | os.PathLike, selection: BidsSelection | None = None) -> list[BidsPair]:
    """Every PET image of a BIDS dataset that passes ``selection``, with its T1w.

    Derivatives, source data and nested datasets are not searched. When a session holds several
    T1w images the first by name is taken (recorded in the note).

    Raises:
        BidsError: ``root`` is not a BIDS dataset, or it has no PET image (after the filters).
    """
    import bids2table

    root = Path(root).resolve()
    if not is_bids_root(root):
        raise BidsError("not a BIDS dataset: no dataset_description.json")
    selection = selection or BidsSelection()
    table = bids2table.index_dataset(root)
    rows = [r for r in table.to_pylist() if r.get("ext") in _NIFTI and not str(r.get("path", "")).startswith(("derivatives/", "sourcedata/", "code/"))]
    pets_all = [r for r in rows if r.get("datatype") == "pet" and r.get("suffix") == "pet"]
    pets = [r for r in pets_all if selection.keeps(r)]
    if not pets:
        if pets_all:
            raise BidsError(f"no PET image matches the entity filters ({len(pets_all)} PET images in the dataset)")
        raise BidsError("the BIDS dataset holds no PET image (pet/*_pet.nii[.gz])")
    t1w: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r.get("datatype") == "anat" and r.get("suffix") == "T1w":
            t1w.setdefault((r["sub"], r.get("ses") or ""), []).append(r)
    out: list[BidsPair] = []
    dates_of: dict[str, dict[str, float]] = {}
    for r in sorted(pets, key=lambda r: r["path"]):
        sub, ses = r["sub"], r.get("ses") or ""
        subject = f"sub-{sub}"
        key = (f"ses-{ses}" if ses else "") + "".join(f"_{k}-{r[k]}" for k in ("trc", "rec", "task", "run") if r.get(k))
        key = key.lstrip("_")
        pet = str(root / r["path"])
        own = sorted(t1w.get((sub, ses), []), key=lambda x: x["path"])
        note = f"{len(own)} T1w images in the session: took the first by name" if len(own) > 1 else ""
        if own:
            out.append(BidsPair(subject, key, pet, str(root / own[0]["path"]), note=note))
            continue
        level = sorted(t1w.get((sub, ""), []), key=lambda x: x["path"])
        if ses and level:
            out.append(BidsPair(subject, key, pet, str(root / level[0]["path"]), note="the subject's session-less T1w"))
            continue
        others = sorted({s for (u, s) in t1w if u == sub and s}, key=_natural)
        if selection.mr_session != "nearest" or not others:
            why = "no T1w in this session" + ("; --mr-session nearest would take one from another session" if others else " nor in another session of the subject")
            out.append(BidsPair(subject, key, pet, "", note=why))
            continue
        dates = dates_of.setdefault(subject, _session_dates(root, subject))
        if ses in dates and all(s in dates for s in others):
            best = min(others, key=lambda s: (abs(dates[s] - dates[ses]), dates[s]))
            gap = dates[best] - dates[ses]
        else:
            order = sorted({*others, ses}, key=_natural)
            best = min(others, key=lambda s: (abs(order.index(s) - order.index(ses)), order.index(s)))
            gap = float("nan")
        chosen = sorted(t1w[(sub, best)], key=lambda x: x["path"])[0]
        gap_text = f"{gap:+.0f} days" if math.isfinite(gap) else "session dates unknown"
        out.append(BidsPair(subject, key, pet, str(root / chosen["path"]), mr_session=f"ses-{best}", mr_gap_days=gap, note=f"T1w from the nearest session ses-{best} ({gap_text})"))
    return out
