"""Crops, padding and random affine augmentation with MONAI dictionary transforms.

One pipeline serves every task: image keys are interpolated bilinearly, label keys
with nearest neighbour, and heatmaps (landmarks) as images, so a case's image and
its annotation always move together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from monai.transforms import Compose, RandAffined, RandSpatialCropd, SpatialPadd


def training_transform(patch_shape: Sequence[int], *, image_keys: Sequence[str] = ("image",),
                       label_keys: Sequence[str] = (), affine: bool = True, rotate_degrees: float = 10.0,
                       scale: float = 0.1, translate_fraction: float = 0.05):
    """``(case, seed) -> case``: pad to at least ``patch_shape``, random crop, random affine.

    Args:
        patch_shape: spatial output shape in numpy order, ``(H, W)`` or ``(D, H, W)``.
        image_keys: arrays ``(C, *S)`` interpolated linearly (border padding).
        label_keys: arrays ``(1, *S)`` of class indices, nearest neighbour (zero padding).
    Returns:
        a function whose randomness comes only from its ``seed`` argument.
    """
    keys = list(image_keys) + list(label_keys)
    dims = len(patch_shape)
    steps = [SpatialPadd(keys=keys, spatial_size=patch_shape, mode="constant"),
             RandSpatialCropd(keys=keys, roi_size=patch_shape, random_size=False)]
    if affine:
        angle = math.radians(rotate_degrees)
        # In 3D rotate mostly in-plane (about the slice axis): volumes are often anisotropic.
        rotate = (angle,) if dims == 2 else (angle * 0.25, angle * 0.25, angle)
        steps.append(RandAffined(
            keys=keys, prob=1.0, rotate_range=rotate, scale_range=(scale,) * dims,
            translate_range=tuple(translate_fraction * s for s in patch_shape),
            mode=["bilinear"] * len(image_keys) + ["nearest"] * len(label_keys),
            padding_mode=["border"] * len(image_keys) + ["zeros"] * len(label_keys),
        ))
    pipeline = Compose(steps)

    def apply(case: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        pipeline.set_random_state(seed=seed)
        out = pipeline(case)
        # MONAI returns MetaTensors; hand plain arrays to the collate function.
        return {k: np.asarray(v, dtype=np.float32 if k in image_keys else np.int64) if k in keys else v
                for k, v in out.items()}

    return apply
