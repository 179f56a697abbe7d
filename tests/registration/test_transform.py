"""Tests of mdafuse.registration.transform: the rigid LPS transform, its algebra and its JSON form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mdafuse.registration import PatientRigidTransform


def _example() -> PatientRigidTransform:
    return PatientRigidTransform.from_axis_angle((0.3, -1.0, 0.4), 7.3, (4.25, -9.1, 2.0 / 3.0), (12.5, -30.0, 41.0))


def test_json_round_trip_is_exact():
    t = _example()
    back = PatientRigidTransform.from_json(t.to_json())
    assert back == t  # floats survive JSON exactly
    np.testing.assert_array_equal(back.matrix, t.matrix)
    pts = np.array([[0.0, 0.0, 0.0], [100.0, -50.0, 20.0]])
    np.testing.assert_array_equal(back.apply(pts), t.apply(pts))


def test_dict_round_trip_through_json_text_and_fields():
    t = _example()
    d = json.loads(json.dumps(t.to_dict()))
    assert d["kind"] == "rigid-lps-mm"
    assert d["translation_mm"] == list(t.translation) and d["centre_mm"] == list(t.centre)
    assert d["angle_deg"] == pytest.approx(7.3)
    np.testing.assert_allclose(np.asarray(d["matrix"]), t.matrix)
    assert PatientRigidTransform.from_dict(d) == t


def test_from_dict_rejects_wrong_kind_missing_keys_and_a_disagreeing_matrix():
    d = _example().to_dict()
    with pytest.raises(ValueError, match="kind"):
        PatientRigidTransform.from_dict({**d, "kind": "affine"})
    with pytest.raises(ValueError, match="lacks"):
        PatientRigidTransform.from_dict({k: v for k, v in d.items() if k != "centre_mm"})
    bad = json.loads(json.dumps(d))
    bad["matrix"][0][3] += 1.0
    with pytest.raises(ValueError, match="disagrees"):
        PatientRigidTransform.from_dict(bad)


def test_rejects_an_improper_or_non_orthonormal_rotation():
    with pytest.raises(ValueError, match="proper rotation"):
        PatientRigidTransform(((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)))
    with pytest.raises(ValueError, match="proper rotation"):
        PatientRigidTransform(((1.1, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)))
    with pytest.raises(ValueError, match="finite"):
        PatientRigidTransform.identity().__class__(np.eye(3).tolist(), (np.nan, 0.0, 0.0))  # type: ignore[arg-type]


def test_apply_follows_the_documented_formula_and_the_matrix():
    t = _example()
    r, c, tr = t.rotation_matrix, np.asarray(t.centre), np.asarray(t.translation)
    x = np.array([[10.0, 20.0, -5.0], [-80.0, 3.0, 60.0]])
    expected = (x - c) @ r.T + c + tr
    np.testing.assert_allclose(t.apply(x), expected, atol=1e-12)
    np.testing.assert_allclose((t.matrix @ np.c_[x, np.ones(2)].T).T[:, :3], expected, atol=1e-12)
    # the centre maps to centre + translation
    np.testing.assert_allclose(t.apply(c), c + tr, atol=1e-12)


def test_axis_angle_rotates_by_the_right_angle_about_z():
    t = PatientRigidTransform.from_axis_angle((0, 0, 1), 90.0)
    np.testing.assert_allclose(t.apply([1.0, 0.0, 5.0]), [0.0, 1.0, 5.0], atol=1e-12)
    assert t.angle_deg == pytest.approx(90.0)


def test_inverse_and_from_matrix():
    t = _example()
    x = np.random.default_rng(0).uniform(-100, 100, (20, 3))
    np.testing.assert_allclose(t.inverse().apply(t.apply(x)), x, atol=1e-9)
    np.testing.assert_allclose(t.inverse().matrix, np.linalg.inv(t.matrix), atol=1e-12)
    again = PatientRigidTransform.from_matrix(t.matrix, centre=(0.0, 0.0, 0.0))
    np.testing.assert_allclose(again.apply(x), t.apply(x), atol=1e-9)
    with pytest.raises(ValueError, match="4x4"):
        PatientRigidTransform.from_matrix(np.eye(3))
