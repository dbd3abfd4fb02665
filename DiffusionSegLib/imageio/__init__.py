"""Reading, writing, normalising and resampling images (SimpleITK, geometry kept).

Images in memory are ``SimpleITK.Image``; arrays taken from them are ``(H, W)`` or
``(D, H, W)``; spacing, origin and direction are ITK order ``(x, y[, z])`` in LPS mm.
"""

from .images import (
    IMAGE_SUFFIXES,
    ImageInfo,
    case_id,
    check_same_dims,
    is_image_file,
    list_images,
    read_image,
    read_image_info,
    write_image,
)
from .intensity import MODALITIES, Normalisation, normalisation_for
from .resample import INTERPOLATORS, resample_like, resample_to_size, resample_to_spacing

__all__ = [
    "IMAGE_SUFFIXES", "INTERPOLATORS", "MODALITIES", "ImageInfo", "Normalisation", "case_id",
    "check_same_dims", "is_image_file", "list_images", "normalisation_for", "read_image",
    "read_image_info", "resample_like", "resample_to_size", "resample_to_spacing", "write_image",
]
