"""Bring any image SimpleITK reads to the one kind the pipeline uses.

That kind is a scalar float32 image of dimension 2 or 3 with its geometry intact.
Colour radiographs become gray, and a 3D image of one slice becomes 2D.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import UserError

# ITU-R BT.601 luma weights (R, G, B): what "convert to grayscale" means in PIL and OpenCV.
_LUMA = np.array([0.299, 0.587, 0.114])

_INTEGER_COMPONENTS = {
    sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16,
    sitk.sitkVectorUInt8, sitk.sitkVectorInt8, sitk.sitkVectorUInt16, sitk.sitkVectorInt16,
}


def check_pixels(dimension: int, components: int, pixel_id: int, path: Path) -> None:
    """Refuse what the pipeline cannot use: 4D images and vector images that are not colour.

    Colour means 2 (gray + alpha), 3 (RGB) or 4 (RGBA) integer components, as PNG, JPEG,
    BMP and TIFF store them. Float vector images (displacement fields, probabilities) are
    not pictures of anything, so we do not guess a gray value for them.
    """
    if dimension not in (2, 3):
        raise UserError(f"This is a {dimension}D image; only 2D and 3D images are supported.", path=path,
                        fix="save one 3D volume (e.g. one time point) per file.")
    if components > 1 and not (components in (2, 3, 4) and pixel_id in _INTEGER_COMPONENTS):
        raise UserError(f"This image has {components} components per pixel and is not an RGB/RGBA picture.",
                        path=path, fix="save a single-component (scalar) image.")


def to_gray(image: sitk.Image) -> sitk.Image:
    """Scalar float32 image from a colour one (luminance; alpha dropped), geometry kept."""
    pixels = sitk.GetArrayFromImage(image).astype(np.float64)  # (..., C), components last
    if pixels.shape[-1] >= 3:
        gray = pixels[..., :3] @ _LUMA  # float64, so a gray pixel (R=G=B) keeps its exact value
    else:
        gray = pixels[..., 0]  # gray + alpha
    result = sitk.GetImageFromArray(gray.astype(np.float32))
    result.CopyInformation(image)
    return result


def in_plane_direction(direction3: tuple[float, ...]) -> tuple[float, float, float, float]:
    """The 2x2 in-plane part of a 3x3 direction (row-major), made orthonormal.

    For the usual axial slice it is the upper-left block itself. A tilted plane gives a
    block whose columns are shorter than 1, which would shrink distances, so we take the
    nearest orthonormal matrix; a slice that contains the z axis gives a singular block,
    for which identity is the only honest answer.
    """
    block = np.array(direction3, dtype=float).reshape(3, 3)[:2, :2]
    if abs(np.linalg.det(block)) < 1e-6:
        return (1.0, 0.0, 0.0, 1.0)
    u, _, vt = np.linalg.svd(block)
    return tuple(float(v) for v in (u @ vt).ravel())


def planar_geometry(spacing, origin, direction):
    """In-plane (spacing, origin, direction) of a one-slice 3D geometry, ITK order."""
    return tuple(spacing[:2]), tuple(origin[:2]), in_plane_direction(direction)


def drop_single_slice(image: sitk.Image) -> sitk.Image:
    """A 3D image of size ``(x, y, 1)`` as a 2D ``(x, y)`` image; others unchanged.

    Slicer and DICOM store a 2D picture as a volume with one slice.
    """
    if image.GetDimension() != 3 or image.GetSize()[2] != 1:
        return image
    pixels = sitk.GetArrayFromImage(image)[0]  # (1, H, W) -> (H, W)
    result = sitk.GetImageFromArray(pixels, isVector=image.GetNumberOfComponentsPerPixel() > 1)
    spacing, origin, direction = planar_geometry(image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    result.SetSpacing(spacing)
    result.SetOrigin(origin)
    result.SetDirection(direction)
    return result


def to_scalar_float(image: sitk.Image, path: Path) -> sitk.Image:
    """The pipeline's image: scalar float32, 2D or 3D, geometry kept (see module doc)."""
    check_pixels(image.GetDimension(), image.GetNumberOfComponentsPerPixel(), image.GetPixelID(), path)
    image = drop_single_slice(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        return to_gray(image)
    return sitk.Cast(image, sitk.sitkFloat32)
