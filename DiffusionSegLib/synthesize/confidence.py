"""Labeling one image with a fine-tuned model, and how confident that label is.

The measures (each in [0, 1], higher is more confident; computed by predict/confidence.py,
the same figures ``diffusionseg predict`` reports):

- segmentation ``foreground`` (default): the mean, over the pixels predicted as a class
  (not background), of the largest class probability; no foreground pixel gives 0. It
  does not reward a sample for being mostly easy background.
- segmentation ``image``: the mean largest class probability over the whole image (a
  prediction without foreground is still rejected: it cannot be a training label).
- landmarks: per landmark, the spatial-softmax probability mass in a window of about
  2.5 sigma around the heatmap peak (see ``decode_heatmaps``: a sharp single peak of the
  trained width gives about 0.95 ** dims); the case's confidence is the smallest of
  them, so a case is kept only when every landmark is above the threshold.

Probabilities are measured on the network grid; the label is written on the image's grid
by the same steps as ``diffusionseg predict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import SimpleITK as sitk

from ..errors import UserError
from ..landmarks import Landmarks
from ..predict.confidence import landmark_confidence
from ..predict.engine import LoadedModel
from ..predict.run import predict_landmarks, segment
from ..vocabulary import ConfidenceMeasure
from .options import PSEUDO_LABEL_OVERLAP

SEGMENTATION_MEASURES = (ConfidenceMeasure.FOREGROUND.value, ConfidenceMeasure.IMAGE.value)
LANDMARK_MEASURES = (ConfidenceMeasure.PEAK.value,)


@dataclass
class Labeled:
    """One image's predicted label and its confidence."""

    label: sitk.Image | Landmarks      # uint8 label map on the image's grid, or LPS landmarks
    confidence: float                  # the case's score in [0, 1]
    details: dict = field(default_factory=dict)   # per-class or per-landmark figures for the report
    usable: bool = True                # False: cannot be a training label whatever the threshold
    reason: str = ""


def measures_for(kind: str) -> tuple[str, ...]:
    return SEGMENTATION_MEASURES if kind == "segmentation" else LANDMARK_MEASURES


def check_measure(kind: str, measure: str | None) -> str:
    choices = measures_for(kind)
    if measure is None:
        return choices[0]
    if measure not in choices:
        raise UserError(f"the confidence measure '{measure}' does not apply to a {kind} model.",
                        fix=f"use --confidence-measure {' or '.join(choices)}.")
    return measure


def label_segmentation(model: LoadedModel, image: sitk.Image, measure: str = "foreground",
                       overlap: float = PSEUDO_LABEL_OVERLAP) -> Labeled:
    """The label map of ``image`` and its confidence, exactly as ``diffusionseg predict`` makes them."""
    labelmap, figures = segment(model, image, overlap)
    usable = bool(sitk.GetArrayViewFromImage(labelmap).any())
    details = {k: v for k, v in figures.items() if k != "confidence"}
    score = figures["foreground_confidence"] if measure == "foreground" else figures["image_confidence"]
    return Labeled(labelmap, score, details, usable, "" if usable else "no foreground predicted")


def label_landmarks(model: LoadedModel, image: sitk.Image, min_confidence: float,
                    overlap: float = PSEUDO_LABEL_OVERLAP) -> Labeled:
    """The landmarks of ``image`` (as ``predict_landmarks`` places them) and the smallest peak mass."""
    landmarks = predict_landmarks(model, image, min_confidence, overlap)
    figures = landmark_confidence(landmarks.names, landmarks.confidence)
    return Labeled(landmarks, figures["confidence"], {"landmark_confidence": figures["landmark_confidence"]})


def label_image(model: LoadedModel, image: sitk.Image, *, measure: str, min_confidence: float,
                overlap: float = PSEUDO_LABEL_OVERLAP) -> Labeled:
    if model.kind == "segmentation":
        return label_segmentation(model, image, measure, overlap)
    return label_landmarks(model, image, min_confidence, overlap)
