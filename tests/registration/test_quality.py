"""Tests of mdafuse.registration.quality: NMI and the registration-quality measure."""

from __future__ import annotations

import numpy as np
import pytest

from mdafuse.registration import PatientRigidTransform, head_mask, normalised_mutual_information, registration_quality, resample_pet_to_mr
from tests.registration.phantoms import make_mr, make_pet


def test_nmi_bounds():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, 20000)
    assert normalised_mutual_information(a, a) == pytest.approx(2.0)
    assert normalised_mutual_information(a, 3.0 * a + 7.0) == pytest.approx(2.0)  # scale-free
    independent = normalised_mutual_information(a, rng.uniform(0, 1, 20000))
    assert 1.0 <= independent < 1.02
    assert normalised_mutual_information(a, np.ones_like(a)) == 1.0
    assert normalised_mutual_information(np.array([]), np.array([])) == 1.0
    with pytest.raises(ValueError, match="same number"):
        normalised_mutual_information(a, a[:-1])


def test_head_mask_excludes_the_background():
    mr = make_mr()
    mask = head_mask(mr.data)
    assert not mask[0, 0, 0] and mask[16, 32, 32]
    assert 0.2 < mask.mean() < 0.8
    assert not head_mask(np.zeros((4, 4, 4))).any()


def test_quality_is_higher_aligned_than_misaligned():
    mr = make_mr()
    truth = PatientRigidTransform.from_axis_angle((0, 1, 0), 6.0, (5.0, -4.0, 3.0))
    pet = make_pet(truth)
    aligned, overlap = registration_quality(mr, resample_pet_to_mr(pet, mr, truth, cval=np.nan))
    assert overlap > 0.85  # the PET field of view (96 mm axially) is shorter than the head
    previous = aligned
    # growing misregistration lowers the NMI monotonically
    for shift in (3.0, 6.0, 12.0):
        off = PatientRigidTransform(truth.rotation, tuple(np.asarray(truth.translation) + (shift, 0.0, 0.0)), truth.centre)
        nmi, _ = registration_quality(mr, resample_pet_to_mr(pet, mr, off, cval=np.nan))
        assert nmi < previous
        previous = nmi
    assert aligned - previous > 0.05


def test_quality_reports_partial_overlap_and_rejects_bad_input():
    mr = make_mr()
    pet = make_pet(PatientRigidTransform.identity())
    far = PatientRigidTransform.from_axis_angle((0, 0, 1), 0.0, (0.0, 0.0, 60.0))  # PET sampled 60 mm higher
    _, overlap = registration_quality(mr, resample_pet_to_mr(pet, mr, far, cval=np.nan))
    assert 0.0 < overlap < 0.6
    with pytest.raises(ValueError, match="empty"):
        registration_quality(mr, resample_pet_to_mr(pet, mr, far, cval=np.nan), mask=np.zeros(mr.shape, dtype=bool))
    with pytest.raises(ValueError, match="MR grid"):
        registration_quality(mr, pet)
