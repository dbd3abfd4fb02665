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

#: A pixel is uncertain when no class reaches this probability.
UNCERTAIN_BELOW = 0.75


def segmentation_confidence(probabilities: np.ndarray, classes: list[str]) -> dict:
    """The measures above for one case. ``probabilities``: (C + 1, *S), summing to 1 over axis 0."""
    best = probabilities.max(0)
    predicted = probabilities.argmax(0)
    foreground = predicted > 0
    area = int(foreground.sum())
    uncertain = int((best < UNCERTAIN_BELOW).sum())
    per_class = {name: (round(float(best[predicted == i + 1].mean()), 4) if (predicted == i + 1).any() else None)
                 for i, name in enumerate(classes)}
    return {"confidence": round(float(best[foreground].mean()), 4) if area else 0.0,
            "foreground_confidence": round(float(best[foreground].mean()), 4) if area else 0.0,
            "image_confidence": round(float(best.mean()), 4),
            "uncertain_fraction": round(min(1.0, uncertain / area), 4) if area else 1.0,
            "foreground_fraction": round(float(foreground.mean()), 4),
            "class_confidence": per_class}


def landmark_confidence(names: list[str], confidence) -> dict:
    """The case's confidence (smallest peak mass) and each landmark's."""
    values = [float(c) for c in confidence]
    return {"confidence": round(min(values), 4) if values else 0.0,
            "landmark_confidence": {n: round(c, 4) for n, c in zip(names, values)}}
