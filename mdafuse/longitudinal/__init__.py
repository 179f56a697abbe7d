"""Longitudinal lesion tracking for one subject with two or more MR + PET/SPECT time points.

``track_subject(timepoints, config) -> TrackResult`` is the entry point (see
:mod:`mdafuse.longitudinal.track`); registration, segmentation, response measures
(:mod:`mdafuse.longitudinal.response`) and the transform convention live in their own modules. Importing this package does not import Ray (torch comes in through
:mod:`mdafuse.fusion.color`).
"""

from __future__ import annotations

from mdafuse.longitudinal.registration import RegistrationConfig, RegistrationResult, register_rigid
from mdafuse.longitudinal.response import ResponseConfig, lean_body_mass_kg, percist_response, suv_peak
from mdafuse.longitudinal.segmentation import Lesion, SegmentationConfig, segment_lesions
from mdafuse.longitudinal.track import RESPONSE_SCHEMA, TABLE_SCHEMA, TimepointInput, TrackConfig, TrackResult, track_subject
from mdafuse.longitudinal.transform import RigidTransform

__all__ = [
    "RigidTransform",
    "RegistrationConfig",
    "RegistrationResult",
    "register_rigid",
    "SegmentationConfig",
    "Lesion",
    "segment_lesions",
    "TimepointInput",
    "TrackConfig",
    "TrackResult",
    "track_subject",
    "TABLE_SCHEMA",
    "RESPONSE_SCHEMA",
    "ResponseConfig",
    "lean_body_mass_kg",
    "suv_peak",
    "percist_response",
]
