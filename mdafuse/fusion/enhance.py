"""Energy-based colour enhancement of fused MR + functional images.

The functional image's *local energy* marks where uptake is: with ``Y`` the functional luminance
(BT.601, [0, 1]) and ``N`` an odd window,

    E(i, j) = (1 / N^2) * sum_{|u|, |v| <= N // 2} Y(i + u, j + v)^2        (reflected borders)

i.e. the windowed sum of squared luminance divided by its largest possible value ``N^2``, so ``E``
lies in [0, 1] with a fixed meaning across images. A smooth weight

    s(E) = sigmoid((E - threshold) / softness),    w(E) = max(0, (s(E) - s(0)) / (1 - s(0)))

is 0 for an all-dark functional image, about 1/2 at ``E = threshold`` and tends to 1 above it.

* Colour fused image ``(H, W, 3)``: in YCbCr (Y, Cb, Cr), chroma is scaled by ``1 + gain * w``
  about the neutral 0.5 (more saturated uptake colours) and brightness is lifted towards white,
  ``Y' = Y + brightness * w * (1 - Y)``; then back to RGB, clipped to [0, 1].
* Grey fused image ``(H, W)``: the energy is shown through the colour map ``colormap`` and
  blended onto the grey image, ``out = (1 - gain_w) * grey + gain_w * cmap(E)`` with
  ``gain_w = min(1, gain) * w``. ``"hot"`` is black - red - yellow - white
  (``R = clip(3E)``, ``G = clip(3E - 1)``, ``B = clip(3E - 2)``); ``"jet"`` is blue - cyan - yellow
  - red (``R = clip(1.5 - |4E - 3|)``, ``G = clip(1.5 - |4E - 2|)``, ``B = clip(1.5 - |4E - 1|)``).

Where the functional energy is far below ``threshold`` (``E < threshold - 5 * softness``) the
weight is below ``e^-5`` and the image changes by well under 1/255.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mdafuse.color import RGB_TO_YCBCR, YCBCR_TO_RGB

__all__ = ["EnhanceConfig", "COLORMAPS", "energy_map", "energy_weight", "apply_colormap", "enhance"]

COLORMAPS = ("hot", "jet")


@dataclass(frozen=True)
class EnhanceConfig:
    """Parameters of :func:`enhance`.

    Attributes:
        window: odd side length (pixels) of the local-energy window.
        gain: chroma gain for colour images (chroma scaled by ``1 + gain * w``); for grey images the
            colour-map opacity at full weight (capped at 1).
        brightness: fraction of the headroom ``1 - Y`` added to the luminance at full weight
            (colour images only).
        threshold: energy at which the weight is about 1/2.
        softness: width of the sigmoid in energy units (> 0).
        colormap: colour map for grey images, one of :data:`COLORMAPS`.
    """

    window: int = 7
    gain: float = 0.8
    brightness: float = 0.25
    threshold: float = 0.12
    softness: float = 0.03
    colormap: str = "hot"

    def __post_init__(self) -> None:
        if not isinstance(self.window, (int, np.integer)) or self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"window must be an odd integer >= 1; got {self.window!r}")
        if self.gain < 0 or not 0 <= self.brightness <= 1:
            raise ValueError(f"gain must be >= 0 and brightness in [0, 1]; got {self.gain}, {self.brightness}")
        if not 0 <= self.threshold <= 1 or self.softness <= 0:
            raise ValueError(f"threshold must be in [0, 1] and softness > 0; got {self.threshold}, {self.softness}")
        if self.colormap not in COLORMAPS:
            raise ValueError(f"colormap must be one of {COLORMAPS}; got {self.colormap!r}")


def _check_unit_image(name: str, image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"{name} must have shape (H, W) or (H, W, 3); got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must be a float array in [0, 1]; got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if arr.size and (arr.min() < -1e-6 or arr.max() > 1 + 1e-6):
        raise ValueError(f"{name} must lie in [0, 1]; got range [{arr.min():.4g}, {arr.max():.4g}]")
    return arr


def _mix(planes: tuple[np.ndarray, ...], matrix: np.ndarray, offset: tuple[float, float, float]) -> list[np.ndarray]:
    """Per-pixel 3x3 colour transform on channel planes, in float32 (faster than a (..., 3) matmul)."""
    m = matrix.astype(np.float32)
    return [m[i, 0] * planes[0] + m[i, 1] * planes[1] + m[i, 2] * planes[2] + np.float32(offset[i]) for i in range(3)]


def _luma(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image.astype(np.float32)
    m = RGB_TO_YCBCR.astype(np.float32)
    return m[0, 0] * image[..., 0] + m[0, 1] * image[..., 1] + m[0, 2] * image[..., 2]


def energy_map(functional_y: np.ndarray, window: int = 7) -> np.ndarray:
    """Local energy of a luminance image (see module docstring for the formula).

    Args:
        functional_y: ``(H, W)`` float luminance in [0, 1].
        window: odd window side in pixels.

    Returns:
        ``(H, W)`` float32 energy in [0, 1].
    """
    y = _check_unit_image("functional_y", functional_y)
    if y.ndim != 2:
        raise ValueError(f"functional_y must have shape (H, W); got {y.shape}")
    if not isinstance(window, (int, np.integer)) or window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd integer >= 1; got {window!r}")
    sq = np.square(np.clip(y.astype(np.float32), 0.0, 1.0))
    e = ndimage.uniform_filter(sq, size=int(window), mode="reflect")
    return np.clip(e, 0.0, 1.0).astype(np.float32)


def energy_weight(energy: np.ndarray, threshold: float, softness: float) -> np.ndarray:
    """Sigmoid weight ``w(E)`` of the module docstring: 0 at ``E = 0``, about 1/2 at ``threshold``."""
    if softness <= 0:
        raise ValueError(f"softness must be > 0; got {softness}")
    e = np.asarray(energy, dtype=np.float32)
    s = 0.5 * (1.0 + np.tanh(np.float32(0.5 / softness) * (e - np.float32(threshold))))
    s0 = 0.5 * (1.0 + np.tanh(0.5 * (0.0 - threshold) / softness))
    return np.clip((s - np.float32(s0)) / np.float32(1.0 - s0), 0.0, 1.0).astype(np.float32)


def apply_colormap(values: np.ndarray, name: str = "hot") -> np.ndarray:
    """``(H, W)`` values in [0, 1] -> ``(H, W, 3)`` float32 RGB through ``"hot"`` or ``"jet"``."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    if name == "hot":
        rgb = np.stack([3.0 * v, 3.0 * v - 1.0, 3.0 * v - 2.0], axis=-1)
    elif name == "jet":
        rgb = np.stack([1.5 - np.abs(4.0 * v - 3.0), 1.5 - np.abs(4.0 * v - 2.0), 1.5 - np.abs(4.0 * v - 1.0)], axis=-1)
    else:
        raise ValueError(f"colormap must be one of {COLORMAPS}; got {name!r}")
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def enhance(fused: np.ndarray, functional: np.ndarray, config: EnhanceConfig | None = None) -> np.ndarray:
    """Enhance a fused image where the functional image has high local energy.

    Args:
        fused: ``(H, W)`` grey or ``(H, W, 3)`` RGB fused image, float in [0, 1].
        functional: ``(H, W)`` or ``(H, W, 3)`` functional (PET/SPECT) image, float in [0, 1], on the
            same grid; its BT.601 luminance drives the energy.
        config: parameters; :class:`EnhanceConfig()` by default.

    Returns:
        ``(H, W, 3)`` float32 RGB in [0, 1].

    Raises:
        ValueError: shapes differ, values outside [0, 1] or non-finite.
        TypeError: non-float input.
    """
    cfg = config if config is not None else EnhanceConfig()
    fused = _check_unit_image("fused", fused)
    functional = _check_unit_image("functional", functional)
    if fused.shape[:2] != functional.shape[:2]:
        raise ValueError(f"functional must have the fused image's size {fused.shape[:2]}; got {functional.shape[:2]}")
    energy = energy_map(np.clip(_luma(functional.astype(np.float32)), 0.0, 1.0), cfg.window)
    w = energy_weight(energy, cfg.threshold, cfg.softness)
    if fused.ndim == 3:
        rgb = np.clip(fused.astype(np.float32), 0.0, 1.0)
        y, cb, cr = _mix((rgb[..., 0], rgb[..., 1], rgb[..., 2]), RGB_TO_YCBCR, (0.0, 0.5, 0.5))
        chroma = np.float32(1.0) + np.float32(cfg.gain) * w
        y = y + np.float32(cfg.brightness) * w * (np.float32(1.0) - y)
        planes = (y, (cb - np.float32(0.5)) * chroma, (cr - np.float32(0.5)) * chroma)
        out = np.stack(_mix(planes, YCBCR_TO_RGB, (0.0, 0.0, 0.0)), axis=-1)
        return np.clip(out, 0.0, 1.0).astype(np.float32)
    grey = np.clip(fused.astype(np.float32), 0.0, 1.0)[..., None]
    alpha = np.float32(min(1.0, cfg.gain)) * w[..., None]
    out = grey + alpha * (apply_colormap(energy, cfg.colormap) - grey)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
