"""Metrics: segmentation (Dice, IoU, HD95), landmarks (MRE, SD, SDR) and their reports."""

from .segmentation import class_metrics, evaluate_segmentations, hd95_mm, segmentation_metrics, write_report
from .landmarks import evaluate_landmarks, landmark_metrics, radial_errors
from .landmarks import write_report as write_landmark_report

__all__ = ["class_metrics", "evaluate_segmentations", "hd95_mm", "segmentation_metrics", "write_report",
           "evaluate_landmarks", "landmark_metrics", "radial_errors", "write_landmark_report"]
