"""BIDS-PET input: the official examples (real sidecars, placeholder images) and the BIDS demo (real values)."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mdafuse.io import bids
from mdafuse.io.nifti import read_nifti_frames

EXAMPLES = ("pet001", "pet002", "pet003", "pet004", "pet005", "pet006")
_TO_BQ = {"bq": 1.0, "kbq": 1e3, "mbq": 1e6, "gbq": 1e9, "mci": 3.7e7, "uci": 3.7e4}


@pytest.fixture(scope="module")
def examples(data_root: Path) -> Path:
    root = data_root / "bids-pet-examples"
    if not root.is_dir():
        if os.environ.get("MDAFUSE_REQUIRE_DATA", "") not in ("", "0", "false"):
            pytest.fail(f"{root} is missing (MDAFUSE_REQUIRE_DATA is set, so this is an error)")
        pytest.skip(f"{root} is missing")
    return root


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from mdafuse.synthetic.demo_bids import write_demo_bids

    return write_demo_bids(tmp_path_factory.mktemp("bids") / "demo", subjects=2, timepoints=2, seed=3)


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_pet_is_found(examples: Path, name: str) -> None:
    root = examples / name
    assert bids.is_bids_root(root)
    on_disk = sorted(str(p.resolve()) for p in root.rglob("*_pet.nii*"))
    pairs = bids.index_bids_pairs(root, bids.BidsSelection(mr_session="nearest"))
    assert sorted(p.pet for p in pairs) == on_disk and on_disk
    for pair in pairs:
        t1w = sorted((Path(pair.pet).parents[1] / "anat").glob("*_T1w.nii*")) if (Path(pair.pet).parents[1] / "anat").is_dir() else []
        if t1w:  # a T1w in the PET's own folder is the one chosen
            assert pair.mr == str(t1w[0].resolve()) and pair.mr_session == ""
        elif not pair.mr:
            assert "no T1w" in pair.note
    # the session key holds the PET's entities: two PET images of one session never collide
    assert len({(p.subject, p.session) for p in pairs}) == len(pairs)


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_sidecar_is_parsed(examples: Path, name: str) -> None:
    for path in sorted((examples / name).rglob("*_pet.json")):
        raw = json.loads(path.read_text())
        sidecar = bids.read_pet_sidecar(path)
        assert sidecar.units == raw["Units"]
        assert sidecar.radionuclide == raw.get("TracerRadionuclide")
        if "InjectedRadioactivity" in raw:
            unit = raw["InjectedRadioactivityUnits"].lower().replace("μ", "u").replace("µ", "u")
            assert sidecar.injected_bq == pytest.approx(float(raw["InjectedRadioactivity"]) * _TO_BQ[unit], rel=1e-9)
        assert sidecar.decay_corrected == raw.get("ImageDecayCorrected")
        assert sidecar.frame_starts_s == tuple(float(v) for v in raw.get("FrameTimesStart", ()))
        assert sidecar.frame_durations_s == tuple(float(v) for v in raw.get("FrameDuration", ()))
        if "InjectionStart" in raw:
            assert sidecar.injection_start_s == pytest.approx(float(raw["InjectionStart"]))


def test_participants_give_weight_height_sex(examples: Path) -> None:
    record = bids.participant_record(examples / "pet002", "sub-02")
    assert (float(record["weight"]), float(record["height"]), record["gender"]) == (51.2, 170.0, "F")


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_placeholders_are_clear_errors(examples: Path, name: str) -> None:
    """Every example image is a placeholder: reading it says why it cannot be used, in one line naming the file."""
    from mdafuse.io.nifti import NiftiError

    for pair in bids.index_bids_pairs(examples / name):
        with pytest.raises((bids.BidsError, NiftiError)) as info:
            bids.read_bids_pet(pair.pet)
        message = str(info.value)
        assert "\n" not in message and len(message) < 400
        assert any(s in message for s in ("cannot read as NIfTI", "no signal", "frame times", "frames but its sidecar"))


def test_static_image_is_the_time_weighted_window_mean(demo: Path) -> None:
    """The demo's late frames hold SUV x dose / weight: the static SUV follows from the sidecar and participants.tsv."""
    pet = next(demo.rglob("sub-001_ses-01_trc-FDG_pet.nii.gz"))
    frames, _ = read_nifti_frames(pet)
    sidecar = json.loads(bids.sidecar_of(pet).read_text())
    weight_kg = float(bids.participant_record(demo, "sub-001")["weight"])
    to_suv = weight_kg * 1000.0 / (sidecar["InjectedRadioactivity"] * 1e6)
    durations = np.asarray(sidecar["FrameDuration"])
    volume, used = bids.read_bids_pet(pet)  # default: the last 20 minutes = the last two frames
    assert volume.units == "SUVbw" and "participants.tsv weight" in used and "frames 5-6 of 6" in used
    np.testing.assert_allclose(volume.data, (frames[4] * 600 + frames[5] * 600) / 1200 * to_suv, rtol=1e-5, atol=1e-6)
    everything, used = bids.read_bids_pet(pet, bids.FrameWindow.parse("all"))
    np.testing.assert_allclose(everything.data, np.tensordot(durations, frames, axes=(0, 0)) / durations.sum() * to_suv, rtol=1e-5, atol=1e-6)
    # a window cutting frames: weighted by the seconds each overlaps it (7.5-15 min: half of frame 2, half of frame 3)
    part, used = bids.read_bids_pet(pet, bids.FrameWindow.parse("7.5-15"))
    np.testing.assert_allclose(part.data, (frames[1] * 150 + frames[2] * 300) / 450 * to_suv, rtol=1e-5, atol=1e-6)


def test_not_decay_corrected_frames_are_referred_to_injection(demo: Path, tmp_path: Path) -> None:
    """Undo the demo's decay correction in the file: the reader restores it per frame from the half-life."""
    from mdafuse.io.nifti import write_nifti_frames

    src = next(demo.rglob("sub-001_ses-01_trc-FDG_pet.nii.gz"))
    frames, affine = read_nifti_frames(src)
    sidecar = json.loads(bids.sidecar_of(src).read_text())
    lam = math.log(2) / bids.half_life_s("F18")
    starts, durs = np.asarray(sidecar["FrameTimesStart"]), np.asarray(sidecar["FrameDuration"])
    decay = np.exp(-lam * starts) * -np.expm1(-lam * durs) / (lam * durs)  # mean decay over each frame
    root = tmp_path / "ds"
    shutil.copytree(demo, root)
    dst = root / src.relative_to(demo)
    write_nifti_frames(frames * decay[:, None, None, None], affine, dst)
    bids.sidecar_of(dst).write_text(json.dumps({**sidecar, "ImageDecayCorrected": False}))
    corrected, _ = bids.read_bids_pet(src)
    restored, used = bids.read_bids_pet(dst)
    assert "TracerRadionuclide" in used
    np.testing.assert_allclose(restored.data, corrected.data, rtol=1e-4, atol=1e-5)


def test_bad_sidecars_and_frames(demo: Path, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    shutil.copytree(demo, root)
    pet = next(root.rglob("sub-001_ses-01_trc-FDG_pet.nii.gz"))
    side = bids.sidecar_of(pet)
    raw = json.loads(side.read_text())
    side.write_text(json.dumps({k: v for k, v in raw.items() if k != "Units"}))
    with pytest.raises(bids.BidsError, match="Units"):
        bids.read_bids_pet(pet)
    side.write_text(json.dumps({k: v for k, v in raw.items() if k not in ("FrameTimesStart", "FrameDuration")}))
    with pytest.raises(bids.BidsError, match="no FrameTimesStart/FrameDuration"):
        bids.read_bids_pet(pet)
    side.unlink()
    with pytest.raises(bids.BidsError, match="sidecar") as info:
        bids.read_bids_pet(pet)
    assert side.name in str(info.value)
    with pytest.raises(ValueError, match="last minutes must be > 0"):
        bids.FrameWindow.parse("last:0")


def test_nearest_session_t1w_and_entity_filters(demo: Path, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    shutil.copytree(demo, root)
    shutil.rmtree(root / "sub-002/ses-02/anat")
    same = {(p.subject, p.session): p for p in bids.index_bids_pairs(root)}
    assert same[("sub-002", "ses-02_trc-FDG")].mr == "" and "no T1w" in same[("sub-002", "ses-02_trc-FDG")].note
    nearest = {(p.subject, p.session): p for p in bids.index_bids_pairs(root, bids.BidsSelection(mr_session="nearest"))}
    chosen = nearest[("sub-002", "ses-02_trc-FDG")]
    assert chosen.mr.endswith("sub-002_ses-01_T1w.nii.gz") and chosen.mr_session == "ses-01"
    assert chosen.mr_gap_days == pytest.approx(-90.0, abs=1.0)  # the T1w is 90 days before the PET (sessions.tsv)
    assert bids.index_bids_pairs(root, bids.BidsSelection(trc="FDG")) and not _index_or_empty(root, bids.BidsSelection(trc="PIB"))


def _index_or_empty(root: Path, selection: bids.BidsSelection) -> list:
    try:
        return bids.index_bids_pairs(root, selection)
    except bids.BidsError:
        return []


def test_t1w_and_pet_of_different_subjects_is_refused(demo: Path) -> None:
    from mdafuse.io.pair import load_pair

    mr = next(demo.rglob("sub-001_ses-01_T1w.nii.gz"))
    pet = next(demo.rglob("sub-002_ses-01_trc-FDG_pet.nii.gz"))
    with pytest.raises(ValueError, match="MR is of sub-001 but the PET of sub-002"):
        load_pair(mr, pet, "volume")


def test_bids_files_listed_anywhere_are_read_and_registered(demo: Path) -> None:
    """A manifest may point at BIDS files: the PET still becomes SUV from its sidecar and is registered to the MR."""
    from mdafuse.io.pair import load_pair

    mr = next(demo.rglob("sub-001_ses-01_T1w.nii.gz"))
    pet = next(demo.rglob("sub-001_ses-01_trc-FDG_pet.nii.gz"))
    prepared = load_pair(mr, pet, "volume")  # no "frames" hint, as from a manifest
    assert prepared.registration.startswith("rigid") and 1.0 < prepared.registration_quality < 2.0
    assert prepared.pet_fields.startswith("SUVbw from the sidecar's Units")
    trusted = load_pair(mr, pet, "volume", register="never")
    assert trusted.registration == "none" and trusted.registration_transform == "" and math.isnan(trusted.registration_quality)
