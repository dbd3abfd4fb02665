"""Axial slices of a volume as BPR input, with each slice's height in the body.

Volumes are first reoriented (axes permuted and flipped, no interpolation) so that the
array axes run towards patient left, posterior and superior (ITK ``LPS``): slice
index 0 is then the lowest slice, whatever the file's direction matrix says. A CT in
RAS order, or stored head first, would otherwise be read upside down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import UserError
from ..imageio import Normalisation, resample_to_size

ORIENTATION = "LPS"  # array axes (x, y, z) increase towards Left, Posterior, Superior


@dataclass
class AxialSlices:
    """One volume as network input, lowest slice first.

    Attributes:
        pixels: ``(D, 1, h, w)`` float32 in [-1, 1], ``(w, h)`` = the slice size.
        z_mm: ``(D,)`` LPS z (mm, +z = superior) of each slice centre, increasing.
        oriented: the volume reoriented to ``LPS`` at its own resolution.
        original_slice: ``(D,)`` for a volume stored as axial slices, the array index
            in the original volume of each oriented slice; None if the volume's slices
            are not axial (e.g. a sagittal acquisition).
    """

    pixels: np.ndarray
    z_mm: np.ndarray
    oriented: sitk.Image
    original_slice: np.ndarray | None


def require_volume(image: sitk.Image, path=None) -> None:
    if image.GetDimension() != 3:
        raise UserError(f"body-part regression needs 3D volumes (CT), but this image is {image.GetDimension()}D.",
                        path=path, fix="give a folder of 3D CT volumes (.nii.gz, .nrrd, .mha or DICOM series).")


def orientation_of(image: sitk.Image) -> str:
    """The three-letter orientation of the array axes, e.g. ``'LPS'`` or ``'RAS'`` (ITK convention)."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def orient(image: sitk.Image, orientation: str = ORIENTATION) -> sitk.Image:
    """``image`` with its axes permuted and flipped to ``orientation``; pixels are not resampled."""
    return sitk.DICOMOrient(image, orientation)


def slice_heights(oriented: sitk.Image) -> np.ndarray:
    """``(D,)`` LPS z in mm of the centre of each slice of an oriented volume."""
    cx, cy = (oriented.GetSize()[0] - 1) / 2.0, (oriented.GetSize()[1] - 1) / 2.0
    return np.array([oriented.TransformContinuousIndexToPhysicalPoint((cx, cy, float(k)))[2]
                     for k in range(oriented.GetSize()[2])], dtype=np.float64)


def _original_slice_index(image: sitk.Image) -> np.ndarray | None:
    letters = orientation_of(image)
    depth = image.GetSize()[2]
    if letters[2] == "S":
        return np.arange(depth)
    if letters[2] == "I":
        return np.arange(depth)[::-1].copy()
    return None


def _shrink_in_plane(image: sitk.Image, size: tuple[int, int]) -> sitk.Image:
    # Averaging blocks of pixels before interpolating avoids aliasing when a 512x512
    # slice becomes 64x64 (linear interpolation alone would pick every 8th pixel).
    factors = [max(1, image.GetSize()[k] // size[k]) for k in range(2)]
    return sitk.BinShrink(image, factors + [1]) if max(factors) > 1 else image


def axial_slices(image: sitk.Image, slice_size: tuple[int, int] | list[int], normalisation: Normalisation,
                 path=None) -> AxialSlices:
    """The axial slices of a 3D ``image``, resampled in-plane to ``slice_size`` (x, y) and normalised.

    Raises:
        UserError: the image is not 3D.
    """
    require_volume(image, path)
    oriented = orient(image)
    size = (int(slice_size[0]), int(slice_size[1]))
    small = resample_to_size(_shrink_in_plane(oriented, size), (*size, oriented.GetSize()[2]))
    pixels = normalisation.apply(sitk.GetArrayViewFromImage(small))[:, None]
    return AxialSlices(pixels=np.ascontiguousarray(pixels, dtype=np.float32), z_mm=slice_heights(oriented),
                       oriented=oriented, original_slice=_original_slice_index(image))


def per_slice_volume(values: np.ndarray, slices: AxialSlices, like: sitk.Image) -> sitk.Image:
    """A float32 image on ``like``'s grid whose voxels hold the value of their axial slice.

    Args:
        values: ``(D,)`` one value per oriented slice (lowest first).
        like: the original image (any orientation) that ``slices`` came from.
    """
    oriented = slices.oriented
    x, y, depth = oriented.GetSize()
    array = np.broadcast_to(np.asarray(values, np.float32)[:, None, None], (depth, y, x))
    volume = sitk.GetImageFromArray(np.ascontiguousarray(array))
    volume.CopyInformation(oriented)
    back = orient(volume, orientation_of(like))
    if back.GetSize() != like.GetSize():  # cannot happen for a permutation; guard the assumption
        raise RuntimeError(f"reorienting back gave size {back.GetSize()}, expected {like.GetSize()}")
    back.CopyInformation(like)  # the same grid up to rounding; take the input's exact geometry
    return back
