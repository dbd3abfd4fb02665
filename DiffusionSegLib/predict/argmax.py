"""Class probabilities on the network grid -> the label map on the image's own grid.

The probabilities are resampled (linear) to the image before the arg-max, which gives
smoother boundaries than resampling labels. Why one class at a time: a vector image of
all classes, its resampled copy and their numpy copies were four float32 copies of every
class of a CT at once; here at most one class is in float32 on each grid, beside the
running best probability and the labels.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..imageio import resample_like

#: Rows arg-maxed at a time when no resampling is needed (bounds numpy's int64 index array).
_ROWS = 16


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    """Whether ``a`` and ``b`` have the same voxels in space (size, spacing, origin, direction)."""
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=0, atol=1e-6)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=1e-4)
            and np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=1e-6))


def label_map(probabilities: np.ndarray, grid: sitk.Image, image: sitk.Image) -> sitk.Image:
    """The uint8 arg-max label map (0 = background) of ``probabilities`` on ``image``'s grid.

    Args:
        probabilities: ``(C + 1, *S)`` (float16 or float32) on ``grid`` (numpy order).
        grid: the network grid ``probabilities`` lie on.
        image: the image whose grid the labels are written on; points outside ``grid``'s
            field of view are background.
    """
    if same_grid(grid, image):
        labels = np.empty(probabilities.shape[1:], np.uint8)
        for r in range(0, labels.shape[0], _ROWS):
            labels[r:r + _ROWS] = probabilities[:, r:r + _ROWS].argmax(0)
    else:
        labels = np.zeros(tuple(reversed(image.GetSize())), np.uint8)
        best = None
        for c in range(probabilities.shape[0]):
            channel = sitk.GetImageFromArray(probabilities[c].astype(np.float32))
            channel.CopyInformation(grid)
            back = resample_like(channel, image, "linear")
            del channel
            values = sitk.GetArrayViewFromImage(back)  # a view: ``back`` stays referenced below
            if best is None:
                best = values.copy()
                del values, back
                continue
            higher = values > best  # strictly: a tie keeps the lower class, as numpy's argmax does
            labels[higher] = c
            np.maximum(best, values, out=best)
            del values, back
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(image)
    return out
