"""Class probabilities on the network grid -> the label map on the image's own grid.

The probabilities are resampled (linear) to the image before the arg-max, which gives
smoother boundaries than resampling labels. Why block by block: a vector image of all
classes, its resampled copy and their numpy copies were four float32 copies of every class
of a CT at once (gigabytes); here a block of output rows and the part of the network grid
it maps from are the only float32 copies.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..imageio import resample_like

#: Output rows (numpy axis 0) resampled and arg-maxed at a time: bounds every temporary.
_ROWS = 16


def same_grid(a: sitk.Image, b: sitk.Image, size_a: tuple[int, ...] | None = None) -> bool:
    """Whether ``a`` (of size ``size_a`` if given) and ``b`` have the same voxels in space."""
    return (tuple(size_a or a.GetSize()) == tuple(b.GetSize()) and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=0, atol=1e-6)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=1e-4)
            and np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=1e-6))


def geometry_of(image: sitk.Image) -> sitk.Image:
    """A one-voxel image with ``image``'s origin, spacing and direction (its size is the caller's)."""
    point = sitk.Image([1] * image.GetDimension(), sitk.sitkUInt8)
    point.SetOrigin(image.GetOrigin())
    point.SetSpacing(image.GetSpacing())
    point.SetDirection(image.GetDirection())
    return point


def label_map(probabilities: np.ndarray, grid: sitk.Image, image: sitk.Image) -> sitk.Image:
    """The uint8 arg-max label map (0 = background) of ``probabilities`` on ``image``'s grid.

    Args:
        probabilities: ``(C + 1, *S)`` (float16 or float32) on ``grid`` (numpy order).
        grid: the network grid ``probabilities`` lie on; only its origin, spacing and
            direction are read (its size is the probabilities'), so ``geometry_of(grid)`` will do.
        image: the image whose grid the labels are written on; points outside ``grid``'s
            field of view are background.
    """
    labels = np.zeros(tuple(reversed(image.GetSize())), np.uint8)
    size = tuple(reversed(probabilities.shape[1:]))   # the grid's, ITK order
    same = same_grid(grid, image, size)
    for first in range(0, labels.shape[0], _ROWS):
        rows = slice(first, min(first + _ROWS, labels.shape[0]))
        if same:
            labels[rows] = probabilities[:, rows].argmax(0)
        else:
            labels[rows] = _resampled_block(probabilities, grid, size, _rows_of(image, rows)).argmax(0)
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(image)
    return out


def _rows_of(image: sitk.Image, rows: slice) -> sitk.Image:
    """An empty image with the geometry of ``image``'s numpy rows ``rows`` (its last ITK axis)."""
    size = list(image.GetSize())
    size[-1] = rows.stop - rows.start
    block = sitk.Image(size, sitk.sitkUInt8)
    block.SetSpacing(image.GetSpacing())
    block.SetDirection(image.GetDirection())
    block.SetOrigin(image.TransformIndexToPhysicalPoint([0] * (image.GetDimension() - 1) + [rows.start]))
    return block


def _resampled_block(probabilities: np.ndarray, grid: sitk.Image, size: tuple[int, ...], block: sitk.Image
                     ) -> np.ndarray:
    """``(C + 1, *block)`` float32: the probabilities resampled (linear) onto ``block``.

    Only the part of ``grid`` the block's corners map into (one voxel more each side, for
    the interpolation) is read, so the cost is the block's, not the volume's.
    """
    dims = grid.GetDimension()
    corners = [[(i >> d & 1) * (n - 1) for d, n in enumerate(block.GetSize())] for i in range(2 ** dims)]
    points = np.array([grid.TransformPhysicalPointToContinuousIndex(block.TransformIndexToPhysicalPoint(c))
                       for c in corners])
    low = np.clip(np.floor(points.min(0)).astype(int) - 1, 0, np.array(size) - 1)
    high = np.clip(np.ceil(points.max(0)).astype(int) + 2, 1, np.array(size))
    out = np.zeros((probabilities.shape[0], *reversed(block.GetSize())), np.float32)
    if np.any(high <= low):
        return out   # the block lies outside the network grid: background
    crop = tuple(slice(lo, hi) for lo, hi in zip(reversed(low), reversed(high)))   # numpy order
    origin = grid.TransformIndexToPhysicalPoint([int(v) for v in low])
    for c in range(probabilities.shape[0]):
        channel = sitk.GetImageFromArray(probabilities[(c, *crop)].astype(np.float32))
        channel.SetSpacing(grid.GetSpacing())
        channel.SetDirection(grid.GetDirection())
        channel.SetOrigin(origin)
        back = resample_like(channel, block, "linear")
        out[c] = sitk.GetArrayViewFromImage(back)   # the view lives only as long as ``back``
    return out
