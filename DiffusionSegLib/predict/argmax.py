"""Class probabilities on the network grid -> the label map on the image's own grid.

The probabilities are resampled (linear) to the image before the arg-max, which gives
smoother boundaries than resampling labels. Why block by block: a vector image of all
classes, its resampled copy and their numpy copies were four float32 copies of every class
of a CT at once (gigabytes); here a block of output rows and the part of the network grid
it maps from are the only float32 copies. Why streamed (:class:`StreamedLabelMap`): the
network's output arrives a slab of rows at a time, so a block is written as soon as its rows
are in, and the whole volume of probabilities is never held.
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
    labels = StreamedLabelMap(grid, probabilities.shape, image)
    labels.add(0, probabilities)
    return labels.result()


class StreamedLabelMap:
    """:func:`label_map` built while the probabilities arrive as slabs of network rows (numpy axis 0).

    Why: the whole ``(C + 1, *S)`` probabilities of a CT are 600 MB of float16 (512x512x300 at
    1 mm, four classes), held while every window runs. Here each block of output rows is
    resampled as soon as every network row it reads has arrived, and rows no later block reads
    are dropped. On a network grid whose first axis runs with the image's (what
    ``Preprocessing.resample`` makes: same direction) a few slabs are held at a time; where the
    axes run against each other, rows are kept until a block needs them, at worst all of them.
    """

    def __init__(self, grid: sitk.Image, shape: tuple[int, ...], image: sitk.Image):
        """``shape``: the probabilities' ``(C + 1, *S)``; ``grid`` and ``image`` as in :func:`label_map`."""
        self.grid, self.image = grid, image
        self.rows = _Rows(shape)
        self.size = tuple(reversed(shape[1:]))   # the network grid's, ITK order
        self.labels = np.zeros(tuple(reversed(image.GetSize())), np.uint8)
        self.same = same_grid(grid, image, self.size)
        # Each output block of _ROWS rows, with the network rows [low, high) it reads (high <= low: none).
        self.blocks = []
        for first in range(0, self.labels.shape[0], _ROWS):
            rows = slice(first, min(first + _ROWS, self.labels.shape[0]))
            if self.same:
                self.blocks.append((rows, None, rows.start, rows.stop))
            else:
                block = _rows_of(image, rows)
                box = _source_box(grid, self.size, block)
                self.blocks.append((rows, block, *((box[0][-1], box[1][-1]) if box else (0, 0))))
        # keep_from[i]: the lowest network row any block from i on reads; rows below it go once block i is next.
        self.keep_from = [shape[1]] * (len(self.blocks) + 1)
        for i in reversed(range(len(self.blocks))):
            low, high = self.blocks[i][2:]
            self.keep_from[i] = min(self.keep_from[i + 1], low) if high > low else self.keep_from[i + 1]
        self.done = 0   # blocks written

    def add(self, row: int, probabilities: np.ndarray) -> None:
        """Network rows ``row .. row + R - 1``: ``(C + 1, R, *S[1:])``, in order (as windows.blended_slabs
        yields them); writes every block they complete."""
        self.rows.append(row, probabilities)
        while self.done < len(self.blocks):
            rows, block, low, high = self.blocks[self.done]
            if high > self.rows.received:
                break
            if self.same:
                self.labels[rows] = self.rows.get(rows.start, rows.stop).argmax(0)
            elif high > low:
                self.labels[rows] = _resampled_block(self.rows, self.grid, self.size, block).argmax(0)
            self.done += 1   # (a block outside the network grid stays background)
            self.rows.drop_below(self.keep_from[self.done])

    def result(self) -> sitk.Image:
        """The label map, once every network row has been added."""
        if self.done < len(self.blocks):
            raise RuntimeError(f"network rows missing: {self.rows.received} of {self.rows.shape[1]} added")
        out = sitk.GetImageFromArray(self.labels)
        out.CopyInformation(self.image)
        return out


class _Rows:
    """The network rows received so far, kept as the slabs they came in (no copy on arrival), indexed like
    the whole ``(C + 1, *S)`` array for the rows still held."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape, self.slabs, self.received = tuple(shape), [], 0   # slabs: (first row, array)

    def append(self, row: int, slab: np.ndarray) -> None:
        if row != self.received or tuple(slab.shape[2:]) != self.shape[2:]:
            raise ValueError(f"network rows from {row} of shape {slab.shape} do not follow row {self.received}")
        self.slabs.append((row, slab))
        self.received = row + slab.shape[1]

    def drop_below(self, row: int) -> None:
        self.slabs = [(first, a) for first, a in self.slabs if first + a.shape[1] > row]

    def get(self, start: int, stop: int, channel: int | slice = slice(None)) -> np.ndarray:
        """Rows ``start .. stop - 1``: ``(C + 1, stop - start, *S[1:])``, or ``(stop - start, *S[1:])`` of one
        channel; every one of them must still be held."""
        parts = [a[channel, max(start - first, 0):stop - first]
                 for first, a in self.slabs if first < stop and first + a.shape[1] > start]
        return np.concatenate(parts, axis=0 if isinstance(channel, int) else 1)

    def __getitem__(self, key: tuple) -> np.ndarray:
        """``rows[(c, z, y, x)]`` with ``z`` a slice (what _resampled_block reads)."""
        channel, rows, *rest = key
        return self.get(rows.start, rows.stop, channel)[(slice(None), *rest)]


def _rows_of(image: sitk.Image, rows: slice) -> sitk.Image:
    """An empty image with the geometry of ``image``'s numpy rows ``rows`` (its last ITK axis)."""
    size = list(image.GetSize())
    size[-1] = rows.stop - rows.start
    block = sitk.Image(size, sitk.sitkUInt8)
    block.SetSpacing(image.GetSpacing())
    block.SetDirection(image.GetDirection())
    block.SetOrigin(image.TransformIndexToPhysicalPoint([0] * (image.GetDimension() - 1) + [rows.start]))
    return block


def _source_box(grid: sitk.Image, size: tuple[int, ...], block: sitk.Image
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(low, high)`` index bounds (ITK order) of the part of ``grid`` (of ``size``) that ``block``'s
    corners map into, one voxel more each side for the interpolation; None if the block lies outside."""
    dims = grid.GetDimension()
    corners = [[(i >> d & 1) * (n - 1) for d, n in enumerate(block.GetSize())] for i in range(2 ** dims)]
    points = np.array([grid.TransformPhysicalPointToContinuousIndex(block.TransformIndexToPhysicalPoint(c))
                       for c in corners])
    low = np.clip(np.floor(points.min(0)).astype(int) - 1, 0, np.array(size) - 1)
    high = np.clip(np.ceil(points.max(0)).astype(int) + 2, 1, np.array(size))
    return None if np.any(high <= low) else (low, high)


def _resampled_block(probabilities, grid: sitk.Image, size: tuple[int, ...], block: sitk.Image) -> np.ndarray:
    """``(C + 1, *block)`` float32: the probabilities (an array or :class:`_Rows`) resampled (linear) onto
    ``block``. Only the part of ``grid`` the block maps into is read (``_source_box``), so the cost is the
    block's, not the volume's."""
    out = np.zeros((probabilities.shape[0], *reversed(block.GetSize())), np.float32)
    box = _source_box(grid, size, block)
    if box is None:
        return out   # the block lies outside the network grid: background
    low, high = box
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
