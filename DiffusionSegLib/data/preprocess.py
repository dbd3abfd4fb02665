"""Preprocessing recorded as data, so prediction repeats training exactly.

Sizes and spacings here are in ITK order ``(x, y[, z])``, the order users and file
headers use; arrays come out in numpy order ``(H, W)`` or ``(D, H, W)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk

from ..imageio import Normalisation, resample_to_size, resample_to_spacing
from .coordinates import coordinate_channels, coordinate_map


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
        coordinates: coordinate channels added to the image (see
            :mod:`DiffusionSegLib.data.coordinates`): None, "position" or "bpr:<model>".
    """

    dims: int
    normalisation: dict
    image_size: list[int] | None
    spacing: list[float] | None
    patch_size: list[int]
    coordinates: str | None = None   # absent in models written before coordinates existed

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

    def normalise(self, grid: sitk.Image) -> np.ndarray:
        """Normalised pixels of an image already on the network grid (see :meth:`resample`);
        callers that also need the grid's geometry resample once and call this."""
        pixels = sitk.GetArrayFromImage(grid).astype(np.float32)
        return Normalisation.from_dict(self.normalisation).apply(pixels)

    def network_input(self, grid: sitk.Image) -> np.ndarray:
        """``(1 + K, *S)`` float32: the normalised image, then its K coordinate channels."""
        pixels = self.normalise(grid)[None]
        coords = coordinate_map(grid, self.coordinates)
        return pixels if coords is None else np.concatenate([pixels, coords.astype(np.float32)])

    @property
    def input_channels(self) -> int:
        """Network input channels: the image plus the coordinate channels."""
        return 1 + coordinate_channels(self.coordinates, self.dims)

    @property
    def patch_shape(self) -> tuple[int, ...]:
        """``patch_size`` in numpy order, ``(H, W)`` or ``(D, H, W)``."""
        return tuple(reversed(self.patch_size))
