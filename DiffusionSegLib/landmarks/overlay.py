"""A picture of predicted landmarks over a 2D image, for people to look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..imageio.writing import write_image
from ..labels.overlay import _gray
from .geometry import physical_to_index
from .markups import Landmarks

# Confident points in green, flagged (low-confidence) points in red.
OK_COLOR, FLAG_COLOR = (0.2, 1.0, 0.2), (1.0, 0.25, 0.25)


def write_landmark_overlay_png(image: sitk.Image, landmarks: Landmarks, path: str | Path, *,
                               scale: int | None = None, overwrite: bool = False) -> Path:
    """Write an RGB PNG of a 2D ``image`` with a cross at each landmark.

    Args:
        scale: integer enlargement (default: enough for a side of at least 256 pixels).
    """
    if image.GetDimension() != 2:
        raise ValueError("landmark overlays are drawn for 2D images only")
    gray = _gray(sitk.GetArrayFromImage(image).astype(np.float64))
    scale = scale or max(1, int(np.ceil(256 / max(gray.shape))))
    rgb = np.repeat(np.kron(gray, np.ones((scale, scale)))[..., None], 3, axis=-1)
    indices = physical_to_index(image, landmarks.points) * scale + (scale - 1) / 2
    flags = landmarks.flags or [""] * len(landmarks.names)
    arm = max(2, 3 * scale)
    for (row, col), flag in zip(indices, flags):
        if not np.isfinite(row):
            continue
        r, c = int(round(row)), int(round(col))
        color = FLAG_COLOR if flag else OK_COLOR
        rgb[max(0, r - arm):r + arm + 1, max(0, c - 1):c + 2] = color
        rgb[max(0, r - 1):r + 2, max(0, c - arm):c + arm + 1] = color
    picture = sitk.GetImageFromArray(np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8), isVector=True)
    write_image(picture, Path(path), overwrite=overwrite)
    return Path(path)
