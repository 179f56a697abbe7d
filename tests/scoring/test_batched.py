"""Batched torch metrics against the numpy float64 reference (mdafuse.metrics.compute_all), image by image."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from mdafuse.baselines import fuse_color
from mdafuse.data import MODALITY_FOLDERS, split_pairs
from mdafuse.fusion.pipeline import fuse_pair
from mdafuse.io.images import read_pair
from mdafuse.metrics import METRICS, compute_all
from mdafuse.scoring import score_batch, score_batch_numpy

REL_TOL = 1e-3
# A reference below this is an exact 0 up to float64 rounding (e.g. numpy's Pearson r of a constant
# image comes out ~1e-16, not 0); float32 residues are ~1e-7, so such values are compared absolutely.
ZERO_REF = 1e-9
ZERO_ABS_TOL = 1e-6


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # On a small machine shared with other work, torch's second thread mostly spins waiting for a core:
    # the SPECT ensemble took 16 s a pair with 2 threads and 2 s with 1 under load. Restored afterwards.
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _assert_matches(got: dict[str, torch.Tensor], refs: list[dict[str, float]]) -> None:
    assert list(got) == list(refs[0])
    for name, values in got.items():
        assert values.dtype == torch.float32 and values.shape == (len(refs),), name
        for i, ref in enumerate(refs):
            value, expected = float(values[i]), ref[name]
            if math.isinf(expected):
                assert value == expected, f"{name}[{i}]: {value} != {expected}"
            elif abs(expected) < ZERO_REF:
                assert abs(value) <= ZERO_ABS_TOL, f"{name}[{i}]: {value} != {expected}"
            else:
                assert abs(value - expected) <= REL_TOL * abs(expected), f"{name}[{i}]: {value} vs {expected}"


def _reference(a: np.ndarray, b: np.ndarray, f: np.ndarray, names: list[str] | None = None) -> list[dict[str, float]]:
    return [compute_all(a[i], b[i], f[i], names) for i in range(a.shape[0])]


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    return np.clip(0.5 + 0.3 * np.sin(6 * xx + 3 * yy + seed) + 0.1 * rng.standard_normal((h, w)), 0, 1)


def _colour(grey: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tint = rng.uniform(0.3, 1.0, 3)
    return np.clip(grey[..., None] * tint + 0.05 * rng.standard_normal((*grey.shape, 3)), 0, 1)


# --- real Harvard pairs ---------------------------------------------------------------------------

_PAIRS_PER_DATASET = 3
# The SPECT weights are an ensemble over flipped views (~1.5 s a pair on 2 cores, several times that on a
# loaded machine), so only the first SPECT pair goes through the network; every pair also gets a baseline.
_MODEL_FUSED = {"MR-PET": 3, "MR-SPECT": 1}


@pytest.fixture(scope="module")
def real_triples(harvard_root) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MR, colour functional and fused images of 3 MR-PET and 3 MR-SPECT held-out pairs, fused by the
    average baseline and (see ``_MODEL_FUSED``) by the shipped model: ``(10, H, W)``, ``(10, H, W, 3)`` x2."""
    mrs, functionals, fused = [], [], []
    for dataset in ("MR-PET", "MR-SPECT"):
        pairs = split_pairs(dataset, "test", harvard_root.parent)
        for k, pair in enumerate(pairs[:: len(pairs) // _PAIRS_PER_DATASET][:_PAIRS_PER_DATASET]):
            mr, fn = read_pair(pair.mr, pair.functional)
            assert fn.ndim == 3, f"{pair.functional} is expected to be pseudo-colour"
            outputs = [fuse_color("average", mr, fn)]
            if k < _MODEL_FUSED[dataset]:
                outputs.insert(0, fuse_pair(mr, fn, modality=MODALITY_FOLDERS[dataset]))
            for f in outputs:
                mrs.append(mr)
                functionals.append(fn)
                fused.append(f)
    return np.stack(mrs), np.stack(functionals), np.stack(fused)


def test_real_pairs_match_reference_in_one_batch(real_triples) -> None:
    a, b, f = real_triples
    got = score_batch(a, b, f)
    _assert_matches(got, _reference(a, b, f))
    # the model and the baseline give different values, so per-image results are not a broadcast
    assert all(got[name][0] != got[name][1] for name in ("VIF", "SSIM", "Qabf", "MI"))


# --- synthetic cases ------------------------------------------------------------------------------


def test_odd_size_grey_batch_of_three() -> None:
    h, w = 45, 47
    a = np.stack([_smooth(h, w, s) for s in (1, 2, 3)])
    b = np.stack([_smooth(h, w, s) for s in (4, 5, 6)])
    f = np.stack([0.5 * (a[0] + b[0]), a[1], np.maximum(a[2], b[2])])
    _assert_matches(score_batch(a, b, f), _reference(a, b, f))


def test_batch_of_one_colour_float32_tensors() -> None:
    a = _smooth(48, 45, 7).astype(np.float32)[None]
    b = _colour(_smooth(48, 45, 8), 9).astype(np.float32)[None]
    f = np.clip(0.6 * a[..., None] + 0.4 * b, 0, 1).astype(np.float32)
    got = score_batch(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(f))
    _assert_matches(got, _reference(a, b, f))


def test_values_within_range_slack_are_clipped_like_the_reference() -> None:
    a = _smooth(41, 41, 10)[None]
    b = _smooth(41, 41, 11)[None]
    f = a.copy()
    f[0, :3, :3] = 1.0 + 5e-7
    f[0, -3:, -3:] = -5e-7
    _assert_matches(score_batch(a, b, f), _reference(a, b, f))


def _half_level_pixels() -> np.ndarray:
    """float32 values nearest to each half level (k + 0.5) / 255 and their float32 neighbours."""
    centres = np.array([np.float32((k + 0.5) / 255) for k in range(255)])
    return np.concatenate([np.nextafter(centres, np.float32(0)), centres, np.nextafter(centres, np.float32(1))])


def test_half_levels_bin_as_the_float64_reference() -> None:
    halves = _half_level_pixels()
    # a float32 product 255 x rounds some of these onto the half level and then to the even level
    assert not np.array_equal(np.rint(halves * np.float32(255)), np.rint(halves.astype(np.float64) * 255))
    f = np.resize(halves, (1, 45, 47))
    a = _smooth(45, 47, 12).astype(np.float32)[None]
    # colour: a float32 luminance differs from the reference's (float64, then rounded) by an ulp, across levels
    b = np.repeat(np.resize(halves[::-1], (1, 45, 47, 1)), 3, axis=-1)
    ref = _reference(a, b, f, ["EN", "MI"])
    got = score_batch(a, b, f, ["EN", "MI"])
    for name in ("EN", "MI"):
        assert abs(float(got[name][0]) - ref[0][name]) < 1e-5, name


def test_qabf_orientation_fold_follows_reference() -> None:
    # Sobel x-gradient of the middle row: 0.25 - 2 * 0.125 + 2 ulp(1e-3) > 0 for A, exactly 0 for F,
    # with a strong negative y-gradient. The reference's orientation is then about -pi/2 for A and +pi/2
    # for F (opposite ends of the fold); float32 sums lose the 2e-10 and would call both +pi/2.
    w = 8
    j = np.arange(w, dtype=np.float32)
    tiny = np.float32(1e-3) + j * np.spacing(np.float32(1e-3))
    a = np.stack([0.5 + 0.0625 * j, 0.5 - 0.03125 * j, tiny]).astype(np.float32)
    f = a.copy()
    f[2] = np.float32(1e-3)
    b = np.full_like(a, 0.25)
    ref = _reference(a[None], b[None], f[None], ["Qabf"])
    _assert_matches(score_batch(a[None], b[None], f[None], ["Qabf"]), ref)


def _constant(h: int, w: int, value: float) -> np.ndarray:
    # binary fractions: the reference's float64 mean of a constant image is then exact and its r is 0
    return np.full((h, w), value)


@pytest.mark.parametrize(
    "case",
    ["constant f", "constant a", "constant sources", "all constant", "f equals a", "f equals b", "all equal"],
)
def test_special_cases_match_reference(case: str) -> None:
    h, w = 45, 47
    a, b = _smooth(h, w, 13), _smooth(h, w, 14)
    if case == "constant f":
        f = _constant(h, w, 0.25)
    elif case == "constant a":
        a = _constant(h, w, 0.5)
        f = 0.5 * (a + b)
    elif case == "constant sources":
        a, b = _constant(h, w, 0.5), _constant(h, w, 0.75)
        f = _smooth(h, w, 15)
    elif case == "all constant":
        a, b, f = _constant(h, w, 0.5), _constant(h, w, 0.5), _constant(h, w, 0.5)
    elif case == "f equals a":
        f = a.copy()
    elif case == "f equals b":
        f = b.copy()
    else:
        b, f = a.copy(), a.copy()
    ref = _reference(a[None], b[None], f[None])
    _assert_matches(score_batch(a[None], b[None], f[None]), ref)


def test_special_case_values() -> None:
    h, w = 45, 47
    a, b = _smooth(h, w, 16), _smooth(h, w, 17)
    half = _constant(h, w, 0.5)
    got = score_batch(np.stack([a, half, half]), np.stack([a, half, b]), np.stack([a, half, half]))
    assert float(got["PSNR"][0]) == math.inf and float(got["PSNR"][1]) == math.inf  # F equals both sources
    assert float(got["VIF"][0]) == pytest.approx(2.0, abs=1e-5)
    assert float(got["CC"][1]) == 0.0 and float(got["SCD"][1]) == 0.0  # constant images: r = 0
    assert float(got["rSFe"][1]) == 0.0 and float(got["Qabf"][1]) == 0.0 and float(got["VIF"][1]) == 0.0
    assert float(got["EN"][2]) == 0.0 and float(got["MI"][2]) == 0.0 and float(got["SD"][2]) == 0.0
    rsfe = score_batch(half[None], half[None], a[None], ["rSFe"])["rSFe"]
    assert math.isinf(float(rsfe[0]))  # flat sources, active F


def test_float32_constants_are_exact() -> None:
    # float32 0.3 has no exact float32 mean over 45 x 47 pixels (the float64 reference's mean is exact),
    # so a centred constant image leaves a residue unless constants are detected; likewise MI's entropies
    h, w = 45, 47
    c = np.full((1, h, w), 0.3, dtype=np.float32)
    a = _smooth(h, w, 5).astype(np.float32)[None]  # its float32 H(A) and H(A, F) differ by ~1e-6 for a constant F
    both = score_batch(np.concatenate([c, a]), np.concatenate([c, c]), np.concatenate([c, c]))
    assert float(both["CC"][0]) == 0.0 and float(both["SCD"][0]) == 0.0 and float(both["SD"][0]) == 0.0
    assert float(both["CC"][1]) == 0.0 and float(both["MI"][1]) == 0.0
    _assert_matches(both, _reference(np.concatenate([c, a]), np.concatenate([c, c]), np.concatenate([c, c])))


def test_vif_flat_regions_away_from_zero() -> None:
    # half of each image a constant grey: float32 leaves ~1e-3 in those windows' variance
    h, w = 64, 64
    a, b = _smooth(h, w, 18), _smooth(h, w, 19)
    a[:, :32] = 0.625
    b[:32] = 0.375
    f = 0.5 * (a + b)
    f[:, 40:] = 0.75
    ref = _reference(a[None], b[None], f[None], ["VIF"])
    _assert_matches(score_batch(a[None], b[None], f[None], ["VIF"]), ref)


def test_names_select_and_order() -> None:
    a, b = _smooth(41, 43, 20)[None], _smooth(41, 43, 21)[None]
    got = score_batch(a, b, a, names=["PSNR", "EN", "Qabf"])
    assert list(got) == ["PSNR", "EN", "Qabf"]
    assert list(score_batch(a, b, a)) == list(METRICS)


def test_score_batch_numpy_gives_one_dict_per_image() -> None:
    a = np.stack([_smooth(41, 41, s) for s in (22, 23)])
    b = np.stack([_smooth(41, 41, s) for s in (24, 25)])
    f = 0.5 * (a + b)
    records = score_batch_numpy(a, b, f)
    batch = score_batch(a, b, f)
    assert len(records) == 2
    for i, record in enumerate(records):
        assert list(record) == list(METRICS)
        assert all(isinstance(v, float) and v == float(batch[k][i]) for k, v in record.items())


def test_device_argument_moves_numpy_to_cpu_tensor() -> None:
    a, b = _smooth(41, 41, 26)[None], _smooth(41, 41, 27)[None]
    got = score_batch(a, b, a, ["SSIM"], device="cpu")
    assert got["SSIM"].device == torch.device("cpu")


# --- errors ---------------------------------------------------------------------------------------


def _triple(h: int = 41, w: int = 41) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = _smooth(h, w, 28)[None], _smooth(h, w, 29)[None]
    return a, b, 0.5 * (a + b)


def test_bad_shapes_raise() -> None:
    a, b, f = _triple()
    with pytest.raises(ValueError, match=r"a must have shape \(B, H, W\) or \(B, H, W, 3\)"):
        score_batch(a[0], b, f)
    with pytest.raises(ValueError, match=r"f must have shape"):
        score_batch(a, b, np.zeros((1, 41, 41, 4)))
    with pytest.raises(ValueError, match=r"b must have the same \(B, H, W\) as a"):
        score_batch(a, b[:, :-1], f)
    with pytest.raises(ValueError, match=r"f must have the same \(B, H, W\) as a"):
        score_batch(a, b, np.concatenate([f, f]))
    with pytest.raises(ValueError, match="must not be empty"):
        score_batch(a[:0], b[:0], f[:0])


@pytest.mark.parametrize(
    "value, match",
    [
        (np.nan, "b must hold finite values"),
        (np.inf, "b must hold finite values"),
        (1.01, r"b must have values in \[0, 1\]"),
        (-0.01, r"b must have values in \[0, 1\]"),
    ],
)
def test_bad_values_raise(value: float, match: str) -> None:
    a, b, f = _triple()
    b = b.copy()
    b[0, 3, 4] = value
    with pytest.raises(ValueError, match=match):
        score_batch(a, b, f)
    with pytest.raises(ValueError, match=match):
        score_batch(a, np.repeat(b[..., None], 3, axis=-1), f)  # colour input: checked before luminance


def test_bad_types_raise() -> None:
    a, b, f = _triple()
    with pytest.raises(TypeError, match="f must be a float array"):
        score_batch(a, b, (f * 255).astype(np.uint8))
    with pytest.raises(TypeError, match="a must be a float tensor"):
        score_batch(torch.zeros(1, 41, 41, dtype=torch.int64), b, f)
    with pytest.raises(TypeError, match=r"b must be a torch.Tensor or numpy.ndarray"):
        score_batch(a, b.tolist(), f)


def test_unknown_metric_names_raise() -> None:
    a, b, f = _triple()
    with pytest.raises(ValueError, match=r"unknown metric name\(s\) \['FOO'\]; valid names are \['EN', 'MI'"):
        score_batch(a, b, f, ["EN", "FOO"])
    with pytest.raises(TypeError, match="not a string"):
        score_batch(a, b, f, "EN")


def test_too_small_images_raise() -> None:
    a, b, f = _triple(40, 45)
    with pytest.raises(ValueError, match=r"too small for the 4-scale VIF \(scale 4 needs 3 pixels") as batched:
        score_batch(a, b, f)
    with pytest.raises(ValueError) as reference:
        compute_all(a[0], b[0], f[0])
    assert str(batched.value) == str(reference.value)
    score_batch(*_triple(41, 41), ["VIF"])
    small = _triple(10, 12)
    with pytest.raises(ValueError, match="at least win_size=11 pixels"):
        score_batch(*small, ["EN", "SSIM"])
    with pytest.raises(ValueError, match="at least 2 x 2 for AG"):
        score_batch(*(x[:, :1] for x in small), ["AG"])
    _assert_matches(score_batch(*small, ["EN", "MI", "Qabf", "rSFe"]), _reference(*small, ["EN", "MI", "Qabf", "rSFe"]))


# --- CUDA -----------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_reference() -> None:
    h, w = 64, 61
    a = np.stack([_smooth(h, w, s) for s in (30, 31, 32)]).astype(np.float32)
    b = np.stack([_colour(_smooth(h, w, s), s) for s in (33, 34, 35)]).astype(np.float32)
    f = np.clip(0.5 * a[..., None] + 0.5 * b, 0, 1).astype(np.float32)
    got = score_batch(torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda(), torch.from_numpy(f).cuda())
    assert all(v.device.type == "cuda" for v in got.values())
    _assert_matches({k: v.cpu() for k, v in got.items()}, _reference(a, b, f))
