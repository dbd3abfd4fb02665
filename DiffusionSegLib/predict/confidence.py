"""How sure a prediction is, per case: one set of measures for `predict`, `synthesize` and `selftrain`.

Segmentation, from the class probabilities on the network grid (``(C + 1, *S)``, softmax):

- ``foreground_confidence``: the mean, over pixels predicted as a class (not background),
  of the largest class probability; 0 when nothing is predicted. Not inflated by easy
  background, so it ranks cases for review (and pseudo-labels) by their structures.
- ``image_confidence``: the mean largest class probability over the whole image.
- ``uncertain_fraction``: pixels whose largest probability is below ``UNCERTAIN_BELOW``, as
  a fraction of the predicted structures' area (1.0 caps it): how much of the structure
  outline a reviewer should look at.
- ``foreground_fraction`` and ``class_confidence`` (per class, None when absent).

Landmarks: each point's spatial-softmax peak mass (``decode_heatmaps``); the case's
``confidence`` is the smallest, so one doubtful landmark makes the whole case doubtful.
"""

from __future__ import annotations

import numpy as np
import torch

#: A pixel is uncertain when no class reaches this probability.
UNCERTAIN_BELOW = 0.75


class ConfidenceTally:
    """The segmentation measures above, summed slab by slab so no whole-volume copy is kept.

    ``add`` takes probabilities ``(C + 1, *R)`` (any part of the image, torch or numpy);
    ``result`` gives the measures of everything added, as :func:`segmentation_confidence`.
    """

    def __init__(self, classes: list[str]):
        self.classes = list(classes)
        self.voxels = self.area = self.uncertain = 0
        self.best_sum = self.foreground_best_sum = 0.0
        self.class_voxels = [0] * len(self.classes)
        self.class_best_sum = [0.0] * len(self.classes)

    def add(self, probabilities) -> None:
        p = torch.as_tensor(probabilities)
        best, predicted = p.max(0)
        best = best.double()  # why: sums over 10^8 voxels in float32 lose the 4th decimal
        foreground = predicted > 0
        self.voxels += best.numel()
        self.area += int(foreground.sum())
        self.uncertain += int((best < UNCERTAIN_BELOW).sum())
        self.best_sum += float(best.sum())
        self.foreground_best_sum += float(best[foreground].sum())
        for i in range(len(self.classes)):
            mask = predicted == i + 1
            self.class_voxels[i] += int(mask.sum())
            self.class_best_sum[i] += float(best[mask].sum())

    def result(self) -> dict:
        area = self.area
        foreground = round(self.foreground_best_sum / area, 4) if area else 0.0
        per_class = {name: (round(self.class_best_sum[i] / n, 4) if n else None)
                     for i, (name, n) in enumerate(zip(self.classes, self.class_voxels))}
        return {"confidence": foreground,
                "foreground_confidence": foreground,
                "image_confidence": round(self.best_sum / self.voxels, 4),
                "uncertain_fraction": round(min(1.0, self.uncertain / area), 4) if area else 1.0,
                "foreground_fraction": round(area / self.voxels, 4),
                "class_confidence": per_class}


def segmentation_confidence(probabilities: np.ndarray, classes: list[str]) -> dict:
    """The measures above for one case. ``probabilities``: (C + 1, *S), summing to 1 over axis 0."""
    tally = ConfidenceTally(classes)
    tally.add(probabilities)
    return tally.result()


def landmark_confidence(names: list[str], confidence) -> dict:
    """The case's confidence (smallest peak mass) and each landmark's."""
    values = [float(c) for c in confidence]
    return {"confidence": round(min(values), 4) if values else 0.0,
            "landmark_confidence": {n: round(c, 4) for n, c in zip(names, values)}}
