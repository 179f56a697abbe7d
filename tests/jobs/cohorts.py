"""Tiny cohorts written by the job tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_png_cohort(folder: Path, n_good: int = 4, size: int = 48, seed: int = 0, degraded: bool = False) -> dict[str, str]:
    """A 2-D cohort: ``n_good`` registered pairs plus three bad ones (missing PET, size mismatch, corrupt PNG).

    With ``degraded``, one more readable pair ``degraded`` whose MR is pure uniform noise: it
    fuses fine but scores the lowest SSIM (0.972 against 0.986..1.17 for the good pairs with
    ``mdafuse_v3``, whose salient skip copies part of the noise; 0.83 against 0.90..1.08 with v1).

    Returns:
        stem -> expected status ("ok" or an error substring).
    """
    from mdafuse.io.images import write_image

    rng = np.random.default_rng(seed)
    (folder / "MR").mkdir(parents=True, exist_ok=True)
    (folder / "PET").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    expected: dict[str, str] = {}
    for i in range(n_good):
        mr = np.clip(0.5 + 0.3 * np.sin(xx / 5.0 + i) * np.cos(yy / 7.0) + 0.05 * rng.standard_normal((size, size)), 0, 1)
        blob = np.exp(-((yy - size / 2) ** 2 + (xx - size / 3 - i) ** 2) / (size * 1.5))
        pet = np.stack([blob, 0.6 * blob, 0.1 * blob], axis=2)
        write_image(folder / "MR" / f"good{i}.png", mr)
        write_image(folder / "PET" / f"good{i}.png", pet)
        expected[f"good{i}"] = "ok"
    if degraded:
        blob = np.exp(-((yy - size / 2) ** 2 + (xx - size / 3) ** 2) / (size * 1.5))
        write_image(folder / "MR" / "degraded.png", np.random.default_rng(seed + 1).random((size, size)))
        write_image(folder / "PET" / "degraded.png", np.stack([blob, 0.6 * blob, 0.1 * blob], axis=2))
        expected["degraded"] = "ok"
    write_image(folder / "MR" / "nopet.png", xx / size)
    expected["nopet"] = "missing PET"
    write_image(folder / "MR" / "mismatch.png", xx / size)
    write_image(folder / "PET" / "mismatch.png", xx[:-8, :-8] / size)
    expected["mismatch"] = "differs from MR"
    write_image(folder / "MR" / "corrupt.png", xx / size)
    (folder / "PET" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    expected["corrupt"] = "cannot decode"
    return expected
