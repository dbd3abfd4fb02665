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
        return body_part_map(grid, spec[len("bpr:"):])
    coordinate_channels(spec, len(shape))  # raises the clear error
    return None


def body_part_map(grid: sitk.Image, model_dir: str) -> np.ndarray:
    """``(3, D, H, W)`` float32 coordinates of a 3D ``grid`` (numpy order shape ``(D, H, W)``).

    The seed paper's "DDPM_BPR": the U-Net sees a patch; the map tells it how high in the
    body the patch lies and where in the slice, so similar-looking anatomy at different
    heights can be told apart. Channel 0: the BPR score of each voxel's axial slice,
    scaled so that the scores of the regressor's training volumes span [-1, 1] (slices
    beyond them fall a little outside). Channels 1, 2: the voxel's row and column index
    mapped to [-1, 1].

    The regressor (loaded once per ``model_dir``) runs on the grid's own slices, on the
    CPU: the map is made while loading data, possibly in worker processes.

    Raises:
        UserError: ``grid`` is not 3D, or ``model_dir`` is not a BPR model folder.
    """
    # Imported here: the regressor needs torch, and only a model with BPR coordinates needs it.
    from ..bpr.predict import cached_model, score_slices
    from ..bpr.slices import per_slice_volume

    model = cached_model(model_dir)
    slices, scores = score_slices(model, grid)
    height = sitk.GetArrayFromImage(per_slice_volume(model.normalised(scores), slices, grid))
    in_plane = position_map(height.shape)[1:]
    return np.concatenate([height[None], in_plane]).astype(np.float32)
