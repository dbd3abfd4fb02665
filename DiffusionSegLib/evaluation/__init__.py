"""Metrics: segmentation (Dice, IoU, HD95) and their reports."""

from .segmentation import class_metrics, evaluate_segmentations, hd95_mm, segmentation_metrics, write_report

__all__ = ["class_metrics", "evaluate_segmentations", "hd95_mm", "segmentation_metrics", "write_report"]
