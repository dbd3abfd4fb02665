"""Anatomical coordinate channels that condition the U-Net (extra input channels).

A coordinate map tells the network where in the body (or in the volume) each voxel
lies, which a patch alone cannot show. It is computed on the whole network grid,
before cropping, so a training patch and a sliding window carry the coordinates of
their position in the volume, and augmentation moves them with the image.

Sources (the ``spec`` string saved in the model's preprocessing):
- ``"position"``: each voxel's normalised index along every axis, in [-1, 1]
  (the issue's "patch position in the volume"); works for any image.
- ``"bpr:<model dir>"``: body-part regression (see ``DiffusionSegLib.bpr``): the
  body-height score of each axial slice, plus the normalised in-plane position.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import UserError

NONE = (None, "", "none")


def coordinate_channels(spec: str | None, dims: int) -> int:
    """How many channels ``spec`` adds to the image (0 without coordinates)."""
    if spec in NONE:
        return 0
    if spec == "position" or spec.startswith("bpr:"):
        return dims
    raise UserError(f"unknown coordinate source '{spec}'.",
                    fix="use --coordinates none, position or bpr:MODEL_DIR (a `diffusionseg bpr train` model).")


def position_map(shape: tuple[int, ...]) -> np.ndarray:
    """``(len(shape), *shape)`` float32: channel k is the index along axis k mapped to [-1, 1]."""
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) if n > 1 else np.zeros(1, np.float32) for n in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij")).astype(np.float32)


def coordinate_map(grid: sitk.Image, spec: str | None) -> np.ndarray | None:
    """The coordinate channels ``(K, *S)`` of an image on the network grid, or None.

    ``S`` is the grid's numpy-order shape; K = :func:`coordinate_channels`.
    """
    if spec in NONE:
        return None
    shape = tuple(reversed(grid.GetSize()))
    if spec == "position":
        return position_map(shape)
    if spec.startswith("bpr:"):
        from ..bpr.coordinates import body_part_map  # only when a BPR model is used

        return body_part_map(grid, spec[len("bpr:"):])
    coordinate_channels(spec, len(shape))  # raises the clear error
    return None
