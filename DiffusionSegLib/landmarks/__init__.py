"""Landmarks: named point sets in LPS millimetres and their files (.mrk.json, .fcsv, CSV)."""

from DiffusionSegLib.landmarks.markups import (
    LOW_CONFIDENCE,
    Landmarks,
    read_landmarks,
    write_csv,
    write_fcsv,
    write_mrk_json,
)

__all__ = ["LOW_CONFIDENCE", "Landmarks", "read_landmarks", "write_csv", "write_fcsv", "write_mrk_json"]
