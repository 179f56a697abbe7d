"""Accuracy of the resolution-aware segmentation, SUVpeak and the volume-reliability flag (values, not just shapes)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mdafuse.longitudinal.segmentation import (
    RELIABLE_DIAMETER_FWHM,
    RELIABLE_DIAMETER_VOXELS,
    SegmentationConfig,
    segment_lesions,
    sphere_edge_fraction,
    suv_peak,
)
from mdafuse.synthetic.lesion_phantom import LesionImageConfig, blurred_sphere, make_lesion_image

FWHM = 6.0


def _adaptive(voxel: float, **kw) -> SegmentationConfig:
    return SegmentationConfig(peak_to_reference=1.6, psf_fwhm_mm=FWHM, voxel_mm=(voxel,) * 3, **kw)


@pytest.mark.parametrize("radius_fwhm", [1.0, 1.5, 2.5])
def test_blurred_sphere_volume_within_15_percent(radius_fwhm):
    """A sphere of radius >= 1 FWHM, blurred by that FWHM (2 mm voxels, noise), keeps its volume within 15 %."""
    cfg = LesionImageConfig(radius_mm=radius_fwhm * FWHM, fwhm_mm=FWHM, voxel_mm=2.0, offset_vox=(0.3, -0.2, 0.1), field_mm=90.0)
    (les,) = segment_lesions(make_lesion_image(cfg, seed=3), _adaptive(2.0))
    volume_ml = les.volume_voxels * 8.0 / 1000.0
    assert volume_ml == pytest.approx(cfg.true_volume_ml, rel=0.15)
    assert les.volume_mm3 == pytest.approx(les.volume_voxels * 8.0)
    assert les.volume_reliable


def test_adaptive_beats_fixed_fraction_at_one_and_a_half_fwhm():
    """The fixed 45 % isocontour under-segments a 1.5-FWHM sphere by > 12 %; the adaptive rule is within 5 %."""
    cfg = LesionImageConfig(radius_mm=1.5 * FWHM, fwhm_mm=FWHM, voxel_mm=2.0, noise=0.0, field_mm=90.0)
    suv = make_lesion_image(cfg)
    (fixed,) = segment_lesions(suv, _adaptive(2.0, method="fixed"))
    (adaptive,) = segment_lesions(suv, _adaptive(2.0))
    true_voxels = cfg.true_volume_ml * 1000.0 / 8.0
    assert fixed.volume_voxels < 0.88 * true_voxels
    assert adaptive.volume_voxels == pytest.approx(true_voxels, rel=0.05)


def test_volume_change_of_growing_sphere():
    """Radius x1.2 (volume +72.8 %) at 4 mm voxels, radius 2 -> 2.4 FWHM: change within 5 percentage points."""
    vols = []
    for radius in (2.0 * FWHM, 2.4 * FWHM):
        cfg = LesionImageConfig(radius_mm=radius, fwhm_mm=FWHM, voxel_mm=4.0, offset_vox=(0.1, 0.2, -0.3))
        (les,) = segment_lesions(make_lesion_image(cfg, seed=1), _adaptive(4.0))
        vols.append(les.volume_voxels)
    assert 100.0 * (vols[1] / vols[0] - 1.0) == pytest.approx(100.0 * (1.2**3 - 1.0), abs=5.0)


def test_small_lesion_flagged_unreliable():
    """Below the measured limit (diameter < RELIABLE_DIAMETER_FWHM FWHM) the volume is flagged; above it, not."""
    small = LesionImageConfig(radius_mm=0.6 * FWHM, fwhm_mm=FWHM, voxel_mm=2.0, lesion_suv=14.0, field_mm=60.0)
    (les,) = segment_lesions(make_lesion_image(small, seed=0), _adaptive(2.0))
    diameter = 2.0 * (3.0 * les.volume_mm3 / (4.0 * math.pi)) ** (1.0 / 3.0)
    assert diameter < RELIABLE_DIAMETER_FWHM * FWHM
    assert not les.volume_reliable
    # a large lesion sampled by coarse voxels: under RELIABLE_DIAMETER_VOXELS voxels across, flagged too
    coarse = LesionImageConfig(radius_mm=1.7 * FWHM, fwhm_mm=FWHM, voxel_mm=6.0, lesion_suv=14.0)
    (les,) = segment_lesions(make_lesion_image(coarse, seed=0), _adaptive(6.0))
    assert 2.0 * (3.0 * les.volume_mm3 / (4.0 * math.pi)) ** (1.0 / 3.0) < RELIABLE_DIAMETER_VOXELS * 6.0
    assert not les.volume_reliable
    # without the PSF the flag is not judged
    (les,) = segment_lesions(make_lesion_image(small, seed=0), SegmentationConfig(peak_to_reference=1.6, voxel_mm=(2.0,) * 3))
    assert les.volume_reliable and math.isnan(SegmentationConfig().psf_fwhm_mm or math.nan)


def test_suv_peak_of_uniform_sphere_and_linear_ramp():
    """SUVpeak of a uniform region is its value; of a linear ramp, the value at the centre (symmetric weights)."""
    uniform = np.full((21, 21, 21), 7.5, np.float32)
    assert suv_peak(uniform, (2.0, 2.0, 2.0), (10, 10, 10)) == pytest.approx(7.5, rel=1e-6)
    z, y, x = np.meshgrid(*(np.arange(25.0),) * 3, indexing="ij")
    ramp = 1.0 + 0.1 * z - 0.05 * y + 0.2 * x  # the mean of a linear function over a symmetric ball is its centre value
    assert suv_peak(ramp, (3.0, 2.0, 2.0), (12, 11, 13)) == pytest.approx(1.0 + 1.2 - 0.55 + 2.6, rel=1e-9)
    with pytest.raises(ValueError, match="voxel_mm and centre must have 3 values"):
        suv_peak(uniform, (2.0, 2.0), (10, 10, 10))


def test_lesion_suv_peak_of_large_uniform_lesion():
    """A segmented lesion whose core is flat (noise-free sphere of 4 FWHM) reports SUVpeak = its SUV."""
    cfg = LesionImageConfig(radius_mm=4 * FWHM, fwhm_mm=FWHM, voxel_mm=4.0, noise=0.0, lesion_suv=9.0)
    (les,) = segment_lesions(make_lesion_image(cfg), _adaptive(4.0))
    assert les.suv_peak == pytest.approx(9.0, abs=0.02)
    (les,) = segment_lesions(make_lesion_image(cfg), SegmentationConfig(peak_to_reference=1.6))
    assert math.isnan(les.suv_peak) and math.isnan(les.volume_mm3)


def test_sphere_edge_fraction_reference_values():
    """Limits and values of the blurred-sphere edge fraction (formula in its docstring)."""
    s = FWHM / 2.3548
    assert sphere_edge_fraction(1000.0, s) == pytest.approx(0.5, abs=2e-3)
    assert sphere_edge_fraction(5.0, 0.0) == 0.5
    # against the analytic profile of the phantom module, evaluated independently
    for radius in (3.0, 6.0, 12.0):
        f = blurred_sphere(np.array([0.0, radius]), radius, FWHM)
        assert sphere_edge_fraction(radius, s) == pytest.approx(f[1] / f[0], rel=1e-3)


def test_config_validation():
    with pytest.raises(ValueError, match="method must be 'adaptive' or 'fixed'"):
        SegmentationConfig(method="otsu")
    with pytest.raises(ValueError, match="psf_fwhm_mm must be > 0"):
        SegmentationConfig(psf_fwhm_mm=0.0)
    with pytest.raises(ValueError, match="voxel_mm must hold 2 or 3 values"):
        SegmentationConfig(voxel_mm=(1.0,))
    with pytest.raises(ValueError, match="voxel_mm must have 2 values"):
        segment_lesions(np.zeros((8, 8), np.float32), SegmentationConfig(voxel_mm=(1.0, 1.0, 1.0)))


def test_adaptive_on_a_2d_blurred_disc():
    """2-D images use the disc's edge fraction: a disc of radius 1.5 FWHM (9 mm, 2 mm pixels) keeps its area within 5 %."""
    from scipy import ndimage

    yy, xx = np.mgrid[:128, :128]
    disc = np.hypot(yy - 63.6, xx - 64.3) <= 4.5
    suv = ndimage.gaussian_filter(2.5 + 7.5 * disc, FWHM / 2.0 / 2.3548).astype(np.float32)
    cfg = SegmentationConfig(peak_to_reference=1.6, smooth_sigma_vox=0, psf_fwhm_mm=FWHM, voxel_mm=(2.0, 2.0))
    (les,) = segment_lesions(suv, cfg)
    assert les.volume_voxels == pytest.approx(disc.sum(), rel=0.05)
    assert les.background == pytest.approx(2.5, abs=0.05)
