"""Intensity normalisation by modality, recorded as data so prediction repeats it exactly.

CT values are Hounsfield units, the same on every scanner, so a fixed window maps
them; radiograph and MRI values are arbitrary per image, so each image is scaled by
its own percentiles. Either way the network sees float32 values in ``[-1, 1]``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from ..errors import UserError
from ..vocabulary import MODALITIES

METHODS: tuple[str, ...] = ("window", "percentile")

_CT_WINDOW = (-1000.0, 1000.0)  # air .. dense bone, in HU
_PERCENTILES = (0.5, 99.5)  # robust to a few hot pixels and burnt-in text


@dataclass
class Normalisation:
    """How raw intensities become network input.

    Attributes:
        method: ``'window'`` (``low``/``high`` are intensities, e.g. HU) or
            ``'percentile'`` (``low``/``high`` are percentiles 0..100, computed per image).
        low, high: the values or percentiles mapped to -1 and +1.
        modality: one of :data:`MODALITIES`, recorded for the user's information.
    """

    method: str
    low: float
    high: float
    modality: str = "other"

    def __post_init__(self):
        if self.method not in METHODS:
            raise UserError(f"Unknown normalisation method {self.method!r}.", fix=f"use one of {', '.join(METHODS)}.")
        if self.modality not in MODALITIES:
            raise UserError(f"Unknown modality {self.modality!r}.", fix=f"use one of {', '.join(MODALITIES)}.")
        try:
            self.low, self.high = float(self.low), float(self.high)
        except (TypeError, ValueError) as err:
            raise UserError(f"The normalisation low/high must be numbers, not {self.low!r}/{self.high!r}.",
                            fix="give numbers.") from err
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise UserError(f"The normalisation needs finite low < high, got {self.low:g} and {self.high:g}.",
                            fix="swap or correct the two values.")
        if self.method == "percentile" and not (0.0 <= self.low and self.high <= 100.0):
            raise UserError(f"Percentiles must lie in 0..100, got {self.low:g} and {self.high:g}.",
                            fix="give percentiles such as 0.5 and 99.5.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Normalisation":
        """Inverse of :meth:`to_dict`; a missing, unknown or invalid field is a UserError."""
        if not isinstance(data, dict):
            raise UserError(f"A normalisation must be a dict, not {type(data).__name__}.",
                            fix="use the normalisation saved with the model.")
        names = {f.name for f in fields(cls)}
        unknown, missing = set(data) - names, {"method", "low", "high"} - set(data)
        if unknown or missing:
            raise UserError(f"Invalid normalisation {data!r}: unknown {sorted(unknown)}, missing {sorted(missing)}.",
                            fix="use the normalisation saved with the model, e.g. "
                                "{'method': 'window', 'low': -1000, 'high': 1000, 'modality': 'ct'}.")
        return cls(**data)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Map intensities to float32 in ``[-1, 1]`` (values beyond low/high are clipped).

        Args:
            array: any shape, e.g. ``(H, W)`` or ``(D, H, W)``; one image (percentiles
                are taken over all of it, ignoring NaN).

        Returns:
            float32 array of the same shape. A constant image gives zeros; NaN pixels
            (no data, e.g. outside the scanned field) give -1, the background end.
        """
        pixels = np.asarray(array, dtype=np.float32)
        if self.method == "window":
            low, high = self.low, self.high
        else:
            finite = pixels[np.isfinite(pixels)]
            low, high = (np.percentile(finite, [self.low, self.high]) if finite.size else (0.0, 0.0))
        if not high > low:  # constant image: no contrast to stretch, and no division by zero
            result = np.zeros(pixels.shape, dtype=np.float32)
        else:
            result = (pixels - np.float32(low)) * np.float32(2.0 / (high - low)) - np.float32(1.0)
            result = np.clip(result, -1.0, 1.0).astype(np.float32, copy=False)
        result[np.isnan(pixels)] = -1.0
        return result


def normalisation_for(modality: str, *, low: float | None = None, high: float | None = None) -> Normalisation:
    """The default normalisation for a modality.

    ``'ct'``: window -1000..1000 HU. ``'xray'``, ``'mri'``, ``'other'``: per-image
    percentiles 0.5..99.5. ``low``/``high`` replace the window (HU) or the percentiles.

    Raises:
        UserError: unknown modality (the choices are listed).
    """
    key = str(modality).strip().lower()
    if key not in MODALITIES:
        raise UserError(f"Unknown modality {modality!r}.", fix=f"choose one of {', '.join(MODALITIES)}.")
    method, (default_low, default_high) = ("window", _CT_WINDOW) if key == "ct" else ("percentile", _PERCENTILES)
    return Normalisation(method=method, low=default_low if low is None else low,
                         high=default_high if high is None else high, modality=key)
