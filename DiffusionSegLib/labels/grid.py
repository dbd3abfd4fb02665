"""Voxel grids of label files and how a label's grid sits on its image's grid.

A grid is what ITK calls the image geometry: size, spacing, origin and direction in ITK
order ``(x, y[, z])``, LPS millimetres. A label belongs to an image when both grids are
the same; a Slicer ``.seg.nrrd`` may also cover only part of the image (Slicer crops
segmentations to their content), which is fine when its voxels are the image's voxels
shifted by a whole number of voxels. Anything else is an error: resampling a label
would silently change what the user drew.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..imageio._pixels import planar_geometry

#: Spacings may differ by this fraction (files store them as text or float32).
SPACING_RTOL = 1e-4
#: Direction cosines may differ by this much (NIfTI stores rotations as float32 quaternions).
DIRECTION_ATOL = 1e-4
#: The label's first voxel must fall this close (in voxels) to a voxel of the image grid.
OFFSET_ATOL_VOXELS = 1e-3


class GridMismatch(ValueError):
    """The label's grid does not lie on the image's grid; the message says how they differ."""


@dataclass(frozen=True)
class Grid:
    """Geometry of an image or label, ITK order ``(x, y[, z])``, LPS mm.

    ``direction`` is the row-major ``dims x dims`` matrix whose columns are the
    directions of the index axes (as ``SimpleITK.Image.GetDirection``).
    """

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @property
    def dims(self) -> int:
        return len(self.size)

    @classmethod
    def of_image(cls, image: sitk.Image) -> "Grid":
        return cls(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                   tuple(image.GetDirection()))

    @classmethod
    def of_ijk_to_lps(cls, size_ijk, ijk_to_lps) -> "Grid":
        """Grid of a ``.seg.nrrd`` from slicerio: ``size_ijk`` (i, j, k) and the 4x4 IJK-to-LPS matrix."""
        matrix = np.asarray(ijk_to_lps, dtype=float)
        columns = matrix[:3, :3]
        spacing = np.linalg.norm(columns, axis=0)
        direction = columns / spacing
        return cls(tuple(int(s) for s in size_ijk), tuple(float(s) for s in spacing),
                   tuple(float(v) for v in matrix[:3, 3]), tuple(float(v) for v in direction.ravel()))

    def planar(self) -> "Grid":
        """A one-slice 3D grid as 2D, exactly as :func:`DiffusionSegLib.imageio.read_image`
        makes a one-slice volume 2D (in-plane spacing, origin x, y and direction)."""
        if self.dims != 3 or self.size[2] != 1:
            return self
        spacing, origin, direction = planar_geometry(self.spacing, self.origin, self.direction)
        return Grid(self.size[:2], tuple(spacing), tuple(origin), tuple(direction))

    def with_size(self, size) -> "Grid":
        return Grid(tuple(size), self.spacing, self.origin, self.direction)

    def describe(self) -> str:
        def fmt(values):
            return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"
        return (f"size {fmt(self.size)}, spacing {fmt(self.spacing)} mm, origin {fmt(self.origin)} mm, "
                f"direction {fmt(self.direction)}")


def offset_on(label: Grid, reference: Grid) -> tuple[int, ...]:
    """Index of the label's first voxel on the reference grid, ITK order ``(x, y[, z])``.

    Raises:
        GridMismatch: different dimension, spacing or direction, or an origin that is
            not on a voxel of the reference grid.
    """
    if label.dims != reference.dims:
        raise GridMismatch(f"the label is {label.dims}D but the image is {reference.dims}D")
    if not np.allclose(label.spacing, reference.spacing, rtol=SPACING_RTOL, atol=0):
        raise GridMismatch(f"spacing {label.spacing} differs from the image's {reference.spacing}")
    if not np.allclose(label.direction, reference.direction, rtol=0, atol=DIRECTION_ATOL):
        raise GridMismatch(f"direction {label.direction} differs from the image's {reference.direction}")
    n = reference.dims
    to_physical = np.asarray(reference.direction, dtype=float).reshape(n, n) * np.asarray(reference.spacing)
    continuous = np.linalg.solve(to_physical, np.asarray(label.origin) - np.asarray(reference.origin))
    whole = np.rint(continuous)
    if np.max(np.abs(continuous - whole)) > OFFSET_ATOL_VOXELS:
        raise GridMismatch(f"origin {label.origin} lies between the image's voxels "
                           f"(at index {tuple(round(float(c), 3) for c in continuous)})")
    return tuple(int(v) for v in whole)


def place(array: np.ndarray, offset: tuple[int, ...], reference_size: tuple[int, ...]) -> np.ndarray:
    """Put a label array onto the reference grid.

    Args:
        array: label values, numpy order ``(H, W)`` or ``(D, H, W)``.
        offset: index of ``array[0, ..., 0]`` on the reference grid, ITK order (as
            :func:`offset_on` returns).
        reference_size: reference size, ITK order.

    Returns:
        An array of the reference's shape (numpy order), zero outside the label's extent.

    Raises:
        GridMismatch: labelled voxels would fall outside the reference grid (zeros
            outside it are dropped: Slicer may store a padded extent).
    """
    shape = tuple(reversed(reference_size))
    start = tuple(reversed(offset))
    out = np.zeros(shape, dtype=array.dtype)
    src, dst = [], []
    for axis_start, n_label, n_ref in zip(start, array.shape, shape):
        lo, hi = max(axis_start, 0), min(axis_start + n_label, n_ref)
        if hi <= lo:
            lo = hi = 0  # no overlap along this axis
        src.append(slice(lo - axis_start, hi - axis_start) if hi > lo else slice(0, 0))
        dst.append(slice(lo, hi))
    inside = array[tuple(src)]
    if np.count_nonzero(inside) != np.count_nonzero(array):
        raise GridMismatch("part of the label lies outside the image")
    out[tuple(dst)] = inside
    return out
