"""The body-part coordinate map that conditions the diffusion U-Net (seed paper: "DDPM_BPR").

The U-Net sees a patch; the map tells it how high in the body the patch lies (the BPR
score of its slice) and where in the slice (the normalised in-plane position), so
similar-looking anatomy at different heights can be told apart.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..data.coordinates import position_map
from .predict import cached_model, score_slices
from .slices import per_slice_volume


def body_part_map(grid: sitk.Image, model_dir: str) -> np.ndarray:
    """``(3, D, H, W)`` float32 coordinates of a 3D ``grid`` (numpy order shape ``(D, H, W)``).

    Channel 0: the BPR score of each voxel's axial slice, scaled so that the scores of
    the regressor's training volumes span [-1, 1] (slices beyond them fall a little
    outside). Channels 1, 2: the voxel's row and column index mapped to [-1, 1].

    The regressor (loaded once per ``model_dir``) runs on the grid's own slices, on the
    CPU: the map is made while loading data, possibly in worker processes.

    Raises:
        UserError: ``grid`` is not 3D, or ``model_dir`` is not a BPR model folder.
    """
    model = cached_model(model_dir)
    slices, scores = score_slices(model, grid)
    height = sitk.GetArrayFromImage(per_slice_volume(model.normalised(scores), slices, grid))
    in_plane = position_map(height.shape)[1:]
    return np.concatenate([height[None], in_plane]).astype(np.float32)
