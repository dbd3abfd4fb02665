"""Mapping landmark points between LPS millimetres and an image's continuous pixel index.

Conventions (see docs/DEVELOPING.md):
- Points are ``(N, 3)`` LPS millimetres ``(x, y, z)``; a NaN row is a missing landmark
  and stays NaN through every function here.
- ITK / Slicer geometry: ``point = origin + direction @ (spacing * index_xyz)``, where
  ``index_xyz`` is the continuous index in ITK order ``(x, y[, z])`` and integer values
  are pixel **centres** (the origin is the centre of the first pixel).
- The index these functions return and take is in **numpy order**, the order of the
  array ``sitk.GetArrayFromImage(image)``: 2D ``(row, col)`` = ``(y, x)``, 3D
  ``(slice, row, col)`` = ``(z, y, x)``. That is the order heatmaps and tensors use, so
  the index can be used directly with :mod:`DiffusionSegLib.landmarks.heatmaps`.
- A 2D image has no z: a point's z is ignored going in (Slicer puts 2D landmarks at
  z = 0 but a file may carry any z), and z = 0 comes out.

The results equal SimpleITK's ``TransformPhysicalPointToContinuousIndex`` /
``TransformContinuousIndexToPhysicalPoint`` (reversed to numpy order), but are computed
for all points at once and pass NaN rows through instead of failing.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def _index_to_physical_matrix(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(dims, dims) matrix ``direction @ diag(spacing)`` and the (dims,) origin, ITK order."""
    dims = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dims, dims)
    matrix = direction * np.asarray(image.GetSpacing(), dtype=np.float64)[None, :]  # scales columns
    return matrix, np.asarray(image.GetOrigin(), dtype=np.float64)


def _as_points(points) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim == 1:
        pts = pts[None, :]
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise ValueError(f"points must have shape (N, 3) (or (N, 2) for 2D), got {pts.shape}")
    return pts


def physical_to_index(image: sitk.Image, points) -> np.ndarray:
    """LPS millimetres -> continuous index in numpy order.

    Args:
        image: a 2D or 3D SimpleITK image (only its geometry is used).
        points: (N, 3) LPS mm (an (N, 2) array is accepted for 2D images).
    Returns:
        (N, dims) float64 continuous index in numpy order (2D (row, col), 3D
        (slice, row, col)); NaN rows where the point is missing.
    """
    dims = image.GetDimension()
    pts = _as_points(points)
    if pts.shape[1] < dims:
        raise ValueError(f"a {dims}D image needs points with {dims} coordinates, got {pts.shape[1]}")
    matrix, origin = _index_to_physical_matrix(image)
    # Solve instead of inverting: direction matrices from files are only nearly orthonormal.
    idx_xyz = np.linalg.solve(matrix, (pts[:, :dims] - origin).T).T
    return idx_xyz[:, ::-1].copy()


def index_to_physical(image: sitk.Image, index) -> np.ndarray:
    """Continuous index in numpy order -> LPS millimetres.

    Args:
        image: a 2D or 3D SimpleITK image.
        index: (N, dims) continuous index in numpy order.
    Returns:
        (N, 3) float64 LPS mm (z = 0 for 2D images); NaN rows where the index is NaN.
    """
    dims = image.GetDimension()
    idx = np.asarray(index, dtype=np.float64)
    if idx.ndim == 1:
        idx = idx[None, :]
    if idx.ndim != 2 or idx.shape[1] != dims:
        raise ValueError(f"index must have shape (N, {dims}) for a {dims}D image, got {idx.shape}")
    matrix, origin = _index_to_physical_matrix(image)
    pts = origin + idx[:, ::-1] @ matrix.T
    out = np.zeros((len(idx), 3), dtype=np.float64)
    out[:, :dims] = pts
    out[np.isnan(idx).any(axis=1)] = np.nan  # a missing landmark stays missing, z included
    return out


def points_outside(image: sitk.Image, points) -> list[bool]:
    """Which points lie outside the image.

    A point is inside when its continuous index lies within ``[-0.5, size - 0.5]`` on
    every axis, i.e. within the area the pixels cover (their centres are the integers),
    as ITK's ``IsInside`` for a continuous index. Missing (NaN) points are *not*
    outside (False): whether a landmark is placed is a separate question.

    Args:
        image: a 2D or 3D SimpleITK image.
        points: (N, 3) LPS mm.
    Returns:
        N bools, True where the landmark lies outside the image.
    """
    idx = physical_to_index(image, points)
    size = np.asarray(image.GetSize(), dtype=np.float64)[::-1]  # numpy order
    # A small tolerance so a point written exactly on the border (round-off in the
    # file's decimal digits) does not count as outside.
    tol = 1e-6
    outside = ((idx < -0.5 - tol) | (idx > size - 0.5 + tol)).any(axis=1)
    return [bool(o) for o in outside]
