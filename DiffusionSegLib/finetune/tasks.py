"""What differs between segmentation and landmark fine-tuning: reading a case, the loss, the head.

A task turns case ``i`` into arrays on the network grid (``load``), names the keys the
augmentation moves (``image_keys``/``label_keys``), computes the loss from the network
output, and describes itself in the model's config (``describe``), which is everything
prediction needs to decode the output again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch
from monai.losses import DiceCELoss

from ..data.preprocess import Preprocessing
from ..errors import UserError
from ..imageio import read_image
from ..labels import read_segmentation
from ..landmarks import physical_to_index, points_outside, read_landmarks
from ..landmarks.heatmaps import encode_heatmaps, sigma_mm_to_px, spatial_softmax_ce
from .cases import Case


@dataclass
class SegmentationTask:
    """C + 1 output channels (background and the classes); cross-entropy plus Dice."""

    classes: list[str]
    colors: list[list[float]]
    dice_weight: float = 1.0
    kind: str = "segmentation"
    image_keys: tuple[str, ...] = ("image",)
    label_keys: tuple[str, ...] = ("label",)
    _loss: DiceCELoss | None = field(default=None, repr=False)

    @property
    def out_channels(self) -> int:
        return len(self.classes) + 1

    def load(self, case: Case, prep: Preprocessing) -> dict[str, np.ndarray]:
        """``{"image": (1 + K, *S) float32, "label": (1, *S) int64}`` on the network grid
        (K coordinate channels follow the image channel when the model has them)."""
        image = read_image(case.image)
        label = read_segmentation(case.annotation, self.classes, image, reference_path=case.image)
        image_array = prep.network_input(prep.resample(image))
        label_array = sitk.GetArrayFromImage(prep.resample(sitk.Cast(label, sitk.sitkFloat32), "nearest"))
        return {"image": image_array, "label": label_array.astype(np.int64)[None]}

    def loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``output`` (N, C+1, *S) logits; ``batch["label"]`` (N, 1, *S) class indices."""
        if self._loss is None:
            self._loss = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=self.dice_weight,
                                    lambda_ce=1.0, smooth_nr=1e-5, smooth_dr=1e-5)
        if self.dice_weight == 0:
            return torch.nn.functional.cross_entropy(output.float(), batch["label"][:, 0])
        return self._loss(output.float(), batch["label"])

    def describe(self) -> dict:
        return {"classes": self.classes, "colors": self.colors, "dice_weight": self.dice_weight}


@dataclass
class LandmarkTask:
    """One heatmap channel per landmark; spatial-softmax cross-entropy on Gaussian targets."""

    names: list[str]
    sigma_mm: float
    kind: str = "landmarks"
    image_keys: tuple[str, ...] = ("image", "heatmaps")
    label_keys: tuple[str, ...] = ()

    @property
    def out_channels(self) -> int:
        return len(self.names)

    def load(self, case: Case, prep: Preprocessing) -> dict[str, np.ndarray]:
        """``{"image": (1 + K, *S), "heatmaps": (L, *S)}``; a missing landmark has an all-zero map."""
        image = read_image(case.image)
        found = read_landmarks(case.annotation)
        if not set(found.names) & set(self.names):
            raise UserError(f"none of the landmarks to learn ({', '.join(self.names)}) is in this file, which holds "
                            f"{', '.join(found.names) or 'no landmark'}.", path=case.annotation,
                            fix="check the landmark names (--landmark-names, or the project's list) against the "
                                "labels of the control points; names must match exactly.")
        points = found.reordered(self.names)
        outside = [n for n, out, miss in zip(self.names, points_outside(image, points.points), points.is_missing())
                   if out and not miss]
        if outside:
            raise UserError(f"landmark(s) {', '.join(outside)} lie outside the image {case.image.name}.",
                            path=case.annotation, fix="check that the landmarks belong to this image and "
                                                      "use its physical coordinates (LPS or RAS millimetres).")
        grid = prep.resample(image)
        indices = physical_to_index(grid, points.points)
        sigma_px = sigma_mm_to_px(self.sigma_mm, grid.GetSpacing())
        heatmaps, _ = encode_heatmaps(indices, grid_shape(grid), sigma_px)
        return {"image": prep.network_input(grid), "heatmaps": heatmaps}

    def loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``output`` (N, L, *S) logits; a landmark whose heatmap left the patch (or was never
        annotated) is masked out rather than taught as absent."""
        heatmaps = batch["heatmaps"]
        present = heatmaps.flatten(2).amax(-1) > 0.5
        return spatial_softmax_ce(output, heatmaps, present)

    def describe(self) -> dict:
        return {"landmarks": self.names, "sigma_mm": self.sigma_mm}


def grid_shape(image: sitk.Image) -> tuple[int, ...]:
    """Numpy-order shape of an image."""
    return tuple(reversed(image.GetSize()))
