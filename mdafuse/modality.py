"""Functional modality names: PET, SPECT, CT, from what users write or DICOM's Modality codes."""

from __future__ import annotations

__all__ = ["FUNCTIONAL_MODALITIES", "UPTAKE_MODALITIES", "functional_modality"]

FUNCTIONAL_MODALITIES = ("PET", "SPECT", "CT")
#: The functional modalities that measure uptake, the ones lesion tracking works on.
UPTAKE_MODALITIES = ("PET", "SPECT")
# DICOM Modality codes (PT, NM) and the names users write, to one functional modality name.
_ALIASES = {"PET": "PET", "PT": "PET", "SPECT": "SPECT", "NM": "SPECT", "CT": "CT"}


def functional_modality(modality: str | None) -> str | None:
    """``"PET"``, ``"SPECT"`` or ``"CT"`` for a modality name or DICOM code (PT, NM); None and "" give None.

    Raises:
        ValueError: a name that is none of these.
    """
    if modality is None or not str(modality).strip():
        return None
    key = str(modality).strip().upper()
    if key not in _ALIASES:
        raise ValueError(f"unknown functional modality {modality!r}; use one of PET, SPECT, CT (or the DICOM codes PT, NM)")
    return _ALIASES[key]
