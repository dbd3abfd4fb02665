"""Preprocessing recorded as data, so prediction repeats training exactly.

Sizes and spacings here are in ITK order ``(x, y[, z])``, the order users and file
headers use; arrays come out in numpy order ``(H, W)`` or ``(D, H, W)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk

from ..imageio import Normalisation, resample_to_size, resample_to_spacing


@dataclass
class Preprocessing:
    """How an image becomes network input.

    Attributes:
        dims: 2 or 3.
        normalisation: ``Normalisation.to_dict()``.
        image_size: resample the whole image to this size (x, y[, z]); the usual choice
            for radiographs, whose field of view is the whole image.
        spacing: resample to this spacing in mm (x, y[, z]); the usual choice for CT and
            MRI, which are then cut into patches. At most one of the two is set; with
            neither the image keeps its own grid.
        patch_size: network input size during training (x, y[, z]); crops (3D) or the
            whole resampled image (2D, where it equals ``image_size``).
    """

    dims: int
    normalisation: dict
    image_size: list[int] | None
    spacing: list[float] | None
    patch_size: list[int]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        return cls(**data)

    def resample(self, image: sitk.Image, interpolator: str = "linear") -> sitk.Image:
        """The image on the network's grid (geometry kept, so results map back)."""
        if self.image_size is not None:
            return resample_to_size(image, self.image_size, interpolator=interpolator)
        if self.spacing is not None:
            return resample_to_spacing(image, self.spacing, interpolator=interpolator)
        return image

    def image_array(self, image: sitk.Image) -> np.ndarray:
        """Resampled and normalised pixels, float32 ``(H, W)`` or ``(D, H, W)`` in [-1, 1]."""
        return self.normalise(self.resample(image))

    def normalise(self, grid: sitk.Image) -> np.ndarray:
        """Normalised pixels of an image already on the network grid (see :meth:`resample`);
        callers that also need the grid's geometry resample once and call this."""
        pixels = sitk.GetArrayFromImage(grid).astype(np.float32)
        return Normalisation.from_dict(self.normalisation).apply(pixels)

    @property
    def patch_shape(self) -> tuple[int, ...]:
        """``patch_size`` in numpy order, ``(H, W)`` or ``(D, H, W)``."""
        return tuple(reversed(self.patch_size))
