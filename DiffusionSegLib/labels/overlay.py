"""A picture of a label over its image, for people to look at (not for computing on).

2D: the image in gray with each class in its colour, semi-transparent, and outlined.
3D: a montage of a few axial slices (slices along the volume's third index axis),
chosen evenly through the slices that hold a label (all slices when the label is empty).
Pixels are stretched to square so anisotropic spacing does not distort the anatomy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..imageio.writing import write_image

#: Opacity of the class colour inside a class; outlines are opaque.
FILL_ALPHA = 0.35
#: Slices in a 3D montage, and montage columns.
MONTAGE_SLICES = 6
MONTAGE_COLUMNS = 3
#: Longest side of one panel after making pixels square: small images are enlarged so
#: that they can be seen, large ones shrunk so that the picture stays small.
MIN_PANEL, MAX_PANEL = 256, 1024


def _gray(pixels: np.ndarray) -> np.ndarray:
    """Image values to 0..1 by the 1st..99th percentile window (robust to bright outliers)."""
    finite = pixels[np.isfinite(pixels)]
    if finite.size == 0:
        return np.zeros(pixels.shape)
    low, high = np.percentile(finite, [1, 99])
    if high <= low:
        low, high = float(finite.min()), float(finite.max())
    scale = high - low if high > low else 1.0
    return np.clip((np.nan_to_num(pixels, nan=low) - low) / scale, 0, 1)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` (H, W) that touch a pixel outside it (4-neighbourhood)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~inner


def _panel(gray: np.ndarray, labels: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """One RGB panel (H, W, 3) in 0..1 from a gray slice and its labels (H, W)."""
    rgb = np.repeat(gray[..., np.newaxis], 3, axis=2)
    for value in np.unique(labels):
        if value == 0 or value > len(colors):
            continue
        mask = labels == value
        color = colors[value - 1]
        rgb[mask] = (1 - FILL_ALPHA) * rgb[mask] + FILL_ALPHA * color
        rgb[_outline(mask)] = color
    return rgb


def _square_pixels(arrays: Sequence[np.ndarray], spacing_xy: Sequence[float]) -> list[np.ndarray]:
    """Nearest-neighbour resize of (H, W) arrays so that a pixel is as wide as it is tall,
    and the longest side lies in MIN_PANEL..MAX_PANEL (labels are resized before
    drawing, so outlines stay one pixel thin)."""
    height, width = arrays[0].shape[:2]
    sx, sy = spacing_xy
    unit = min(sx, sy)
    new_w, new_h = width * sx / unit, height * sy / unit
    longest = max(new_w, new_h)
    factor = min(1.0, MAX_PANEL / longest) if longest > MIN_PANEL else max(1, MIN_PANEL // math.ceil(longest))
    new_w, new_h = max(1, round(new_w * factor)), max(1, round(new_h * factor))
    if (new_w, new_h) == (width, height):
        return list(arrays)
    rows = np.minimum((np.arange(new_h) + 0.5) * height / new_h, height - 1).astype(int)
    cols = np.minimum((np.arange(new_w) + 0.5) * width / new_w, width - 1).astype(int)
    return [a[rows][:, cols] for a in arrays]


def _montage(panels: list[np.ndarray]) -> np.ndarray:
    columns = min(MONTAGE_COLUMNS, len(panels))
    rows = -(-len(panels) // columns)
    height, width = panels[0].shape[:2]
    gap = 2
    sheet = np.zeros((rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap, 3))
    for n, panel in enumerate(panels):
        r, c = divmod(n, columns)
        sheet[r * (height + gap): r * (height + gap) + height, c * (width + gap): c * (width + gap) + width] = panel
    return sheet


def write_overlay_png(image: sitk.Image, labelmap: sitk.Image, colors: Sequence[Sequence[float]],
                      path: str | Path, *, overwrite: bool = False) -> Path:
    """Write an RGB PNG of ``labelmap`` over ``image``.

    Args:
        image: the image, 2D ``(H, W)`` or 3D ``(D, H, W)``, any intensities.
        labelmap: values 0..len(colors) on the image's grid (same size).
        colors: (r, g, b) in 0..1 for value ``i + 1``.
        path: target ``.png``.

    Raises:
        ValueError: image and label map differ in size.
        UserError: the file exists and ``overwrite`` is False.
    """
    if image.GetSize() != labelmap.GetSize():
        raise ValueError(f"image size {image.GetSize()} and label map size {labelmap.GetSize()} differ")
    if image.GetNumberOfComponentsPerPixel() > 1:
        image = sitk.VectorIndexSelectionCast(image, 0)
    pixels = sitk.GetArrayFromImage(image).astype(np.float64)
    labels = sitk.GetArrayFromImage(labelmap).astype(np.int64)
    palette = np.asarray([tuple(c)[:3] for c in colors], dtype=float).reshape(-1, 3)
    gray = _gray(pixels)
    spacing_xy = image.GetSpacing()[:2]
    if pixels.ndim == 2:
        sheet = _panel(*_square_pixels([gray, labels], spacing_xy), palette)
    else:
        with_label = np.flatnonzero(labels.reshape(labels.shape[0], -1).any(axis=1))
        candidates = with_label if with_label.size else np.arange(labels.shape[0])
        count = min(MONTAGE_SLICES, candidates.size)
        chosen = candidates[np.unique(np.linspace(0, candidates.size - 1, count).round().astype(int))]
        sheet = _montage([_panel(*_square_pixels([gray[k], labels[k]], spacing_xy), palette) for k in chosen])
    picture = sitk.GetImageFromArray(np.rint(sheet * 255).astype(np.uint8), isVector=True)
    path = Path(path)
    write_image(picture, path, overwrite=overwrite)
    return path
