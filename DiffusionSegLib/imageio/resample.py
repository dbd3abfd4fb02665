"""Geometry-aware resampling with SimpleITK.

Sizes and spacings are ITK order ``(x, y[, z])``. Resizing keeps the field of view from
edge to edge: ITK's origin is the centre of the first voxel, so when the spacing changes
the origin moves by half the change, and the outer corner of the image stays put.
Multi-component images (e.g. class probabilities) are resampled component by component.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}


def _interpolator(name: str) -> int:
    if name not in INTERPOLATORS:
        raise ValueError(f"interpolator={name!r} is not one of {', '.join(INTERPOLATORS)}.")
    return INTERPOLATORS[name]


def _check_length(name: str, values: Sequence, image: sitk.Image) -> None:
    if len(values) != image.GetDimension():
        raise ValueError(f"{name}={tuple(values)} needs {image.GetDimension()} values (x, y[, z]) for this "
                         f"{image.GetDimension()}D image.")


def _per_component(image: sitk.Image, resample_scalar) -> sitk.Image:
    """Apply ``resample_scalar`` to each component of a vector image and join the results."""
    if image.GetNumberOfComponentsPerPixel() == 1:
        return resample_scalar(image)
    parts = [resample_scalar(sitk.VectorIndexSelectionCast(image, i))
             for i in range(image.GetNumberOfComponentsPerPixel())]
    return sitk.Compose(parts)


def _onto_grid(image, size, spacing, origin, direction, interpolator, default, edge_extrapolate) -> sitk.Image:
    def one(scalar: sitk.Image) -> sitk.Image:
        return sitk.Resample(scalar, [int(s) for s in size], sitk.Transform(), _interpolator(interpolator),
                             [float(o) for o in origin], [float(s) for s in spacing], [float(d) for d in direction],
                             float(default), scalar.GetPixelID(), edge_extrapolate)
    return _per_component(image, one)


def _same_corner(image: sitk.Image, spacing: np.ndarray) -> np.ndarray:
    """Origin (first voxel centre) for ``spacing`` with the image's outer corner unchanged."""
    old = np.array(image.GetSpacing())
    direction = np.array(image.GetDirection()).reshape(image.GetDimension(), -1)
    return np.array(image.GetOrigin()) + direction @ ((spacing - old) / 2.0)


def _resize(image: sitk.Image, size: np.ndarray, spacing: np.ndarray, interpolator: str) -> sitk.Image:
    # The new voxel centres lie inside the old field of view; rounding can put one a hair
    # outside the old centres' hull, where edge extrapolation (not a default of 0, which
    # is water in CT) is the right value.
    return _onto_grid(image, size, spacing, _same_corner(image, spacing), image.GetDirection(),
                      interpolator, 0.0, True)


def resample_to_size(image: sitk.Image, size_xyz: Sequence[int], interpolator: str = "linear") -> sitk.Image:
    """The same field of view on a grid of ``size_xyz`` voxels (spacing changes).

    Origin corner and direction are kept. Used to bring every radiograph to e.g. 64x64.
    """
    _interpolator(interpolator)
    _check_length("size_xyz", size_xyz, image)
    size = np.array([int(s) for s in size_xyz])
    if np.any(size < 1):
        raise ValueError(f"size_xyz={tuple(size_xyz)} must be positive.")
    spacing = np.array(image.GetSpacing()) * np.array(image.GetSize()) / size
    return _resize(image, size, spacing, interpolator)


def resample_to_spacing(image: sitk.Image, spacing_xyz: Sequence[float], interpolator: str = "linear") -> sitk.Image:
    """The same field of view at ``spacing_xyz`` mm; the size is rounded (at least 1).

    Origin corner and direction are kept; when the extent is not a whole number of new
    voxels, the far edge moves by at most half a new voxel.
    """
    _interpolator(interpolator)
    _check_length("spacing_xyz", spacing_xyz, image)
    spacing = np.array([float(s) for s in spacing_xyz])
    if np.any(spacing <= 0):
        raise ValueError(f"spacing_xyz={tuple(spacing_xyz)} must be positive.")
    extent = np.array(image.GetSpacing()) * np.array(image.GetSize())
    size = np.maximum(np.round(extent / spacing).astype(int), 1)
    return _resize(image, size, spacing, interpolator)


def resample_like(image: sitk.Image, reference: sitk.Image, interpolator: str = "linear",
                  default: float = 0.0) -> sitk.Image:
    """``image`` on ``reference``'s grid (size, spacing, origin, direction).

    Used to map predictions back onto the input image. Points of the reference grid
    outside ``image`` get ``default``. Use ``'nearest'`` for label maps.
    """
    _interpolator(interpolator)
    if image.GetDimension() != reference.GetDimension():
        raise ValueError(f"image is {image.GetDimension()}D but reference is {reference.GetDimension()}D.")
    return _onto_grid(image, reference.GetSize(), reference.GetSpacing(), reference.GetOrigin(),
                      reference.GetDirection(), interpolator, default, False)
