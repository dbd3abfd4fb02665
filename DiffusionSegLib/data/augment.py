"""Crops, padding and the named augmentation recipes, with MONAI dictionary transforms.

One pipeline serves every task: image keys are interpolated bilinearly, label keys
with nearest neighbour, and heatmaps (landmarks) as images, so a case's image and
its annotation always move together. Intensity augmentation touches only the first
channel of ``"image"`` (the picture): coordinate channels and heatmaps keep their values.

The recipes (``vocabulary.AUGMENTATIONS``):

- ``strong``: nnU-Net-style, the recipe of the supervised baseline the benchmarks compare
  against (benchmarks/supervised_unet.py uses it too): random affine (p 0.9, ±15°,
  scale ±15 %, shift ±6 % of the patch), 2D elastic deformation (p 0.3), intensity
  scale and shift, gamma, Gaussian noise. Measured on the JSRT validation split to keep
  few-shot fine-tuning from overfitting one or two cases (benchmarks/results/RESULTS.md).
- ``mild``: what fine-tuning and pretraining used before: affine always, ±10°, ±10 %, ±5 %.
- ``none``: pad and random crop only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from monai.transforms import (Compose, Rand2DElasticd, RandAdjustContrastd, RandAffined, RandGaussianNoised,
                              RandScaleIntensityd, RandShiftIntensityd, RandSpatialCropd, SpatialPadd)

from ..errors import UserError
from ..vocabulary import AUGMENTATIONS


@dataclass(frozen=True)
class Recipe:
    """The settings of one named recipe (intensities refer to the normalised image, about [-1, 1])."""
    affine_prob: float = 0.0
    rotate_degrees: float = 0.0
    scale: float = 0.0
    translate_fraction: float = 0.0
    elastic_prob: float = 0.0          # 2D only: 3D elastic deformation costs more than a step
    intensity: bool = False


RECIPES = {
    "strong": Recipe(affine_prob=0.9, rotate_degrees=15.0, scale=0.15, translate_fraction=0.0625,
                     elastic_prob=0.3, intensity=True),
    "mild": Recipe(affine_prob=1.0, rotate_degrees=10.0, scale=0.1, translate_fraction=0.05),
    "none": Recipe(),
}
assert tuple(RECIPES) == AUGMENTATIONS, "every recipe in the vocabulary has its settings here, in order"


def recipe_named(name: str) -> Recipe:
    if name not in RECIPES:
        raise UserError(f"unknown augmentation '{name}'.", fix=f"use one of {', '.join(AUGMENTATIONS)}.")
    return RECIPES[name]


def _spatial(recipe: Recipe, dims: int, patch_shape: Sequence[int], image_keys: Sequence[str],
             label_keys: Sequence[str]) -> list:
    keys = list(image_keys) + list(label_keys)
    modes = dict(mode=["bilinear"] * len(image_keys) + ["nearest"] * len(label_keys),
                 padding_mode=["border"] * len(image_keys) + ["zeros"] * len(label_keys))
    steps = []
    if recipe.affine_prob > 0:
        angle = math.radians(recipe.rotate_degrees)
        # In 3D rotate mostly in-plane (about the slice axis): volumes are often anisotropic.
        rotate = (angle,) if dims == 2 else (angle * 0.25, angle * 0.25, angle)
        steps.append(RandAffined(keys=keys, prob=recipe.affine_prob, rotate_range=rotate,
                                 scale_range=(recipe.scale,) * dims,
                                 translate_range=tuple(recipe.translate_fraction * s for s in patch_shape), **modes))
    if recipe.elastic_prob > 0 and dims == 2:
        # Control points every quarter of the patch (16 px at 64x64); magnitude 1-2 as the supervised baseline had.
        spacing = tuple(max(4, s // 4) for s in patch_shape)
        steps.append(Rand2DElasticd(keys=keys, prob=recipe.elastic_prob, spacing=spacing, magnitude_range=(1, 2),
                                    **modes))
    return steps


def _intensity() -> Compose:
    """On ``{"image": (1, *S)}``: the picture channel alone."""
    return Compose([RandScaleIntensityd(keys="image", factors=0.15, prob=0.5),
                    RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
                    RandAdjustContrastd(keys="image", gamma=(0.7, 1.5), prob=0.3),
                    RandGaussianNoised(keys="image", std=0.03, prob=0.15)])


def training_transform(patch_shape: Sequence[int], *, image_keys: Sequence[str] = ("image",),
                       label_keys: Sequence[str] = (), recipe: str = "mild"):
    """``(case, seed) -> case``: pad to at least ``patch_shape``, random crop, then the named recipe.

    Args:
        patch_shape: spatial output shape in numpy order, ``(H, W)`` or ``(D, H, W)``.
        image_keys: arrays ``(C, *S)`` interpolated linearly (border padding); the first is
            the image, whose channel 0 alone gets intensity augmentation.
        label_keys: arrays ``(1, *S)`` of class indices, nearest neighbour (zero padding).
        recipe: one of ``vocabulary.AUGMENTATIONS``.
    Returns:
        a function whose randomness comes only from its ``seed`` argument.
    """
    settings = recipe_named(recipe)
    keys = list(image_keys) + list(label_keys)
    steps = [SpatialPadd(keys=keys, spatial_size=patch_shape, mode="constant"),
             RandSpatialCropd(keys=keys, roi_size=patch_shape, random_size=False)]
    pipeline = Compose(steps + _spatial(settings, len(patch_shape), patch_shape, image_keys, label_keys))
    intensity = _intensity() if settings.intensity else None
    picture = image_keys[0]

    def apply(case: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        pipeline.set_random_state(seed=seed)
        out = pipeline(case)
        # MONAI returns MetaTensors; hand plain arrays to the collate function.
        out = {k: np.asarray(v, dtype=np.float32 if k in image_keys else np.int64) if k in keys else v
               for k, v in out.items()}
        if intensity is not None:
            # Its own stream (seed + 1): adding intensity steps leaves the spatial draws unchanged.
            intensity.set_random_state(seed=(seed + 1) % 2**32)
            image = out[picture]
            changed = np.asarray(intensity({"image": image[:1].copy()})["image"], dtype=np.float32)
            out[picture] = np.concatenate([changed, image[1:]], axis=0)
        return out

    return apply
