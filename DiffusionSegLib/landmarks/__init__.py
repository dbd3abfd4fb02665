"""Landmarks: named point sets in LPS millimetres and their files (.mrk.json, .fcsv, CSV),
the mapping to pixel indices, and heatmaps (targets, losses, sub-pixel decoding)."""

from DiffusionSegLib.landmarks.markups import (
    LOW_CONFIDENCE,
    Landmarks,
    read_landmarks,
    write_csv,
    write_fcsv,
    write_mrk_json,
)

from DiffusionSegLib.landmarks.geometry import index_to_physical, physical_to_index, points_outside

# The heatmap functions need torch; they are imported on first use so that reading and
# writing markups (and the metrics) stay importable where torch is not installed.
_HEATMAP_NAMES = ("decode_heatmaps", "encode_heatmaps", "heatmap_mse", "heatmaps_as_logits", "sigma_mm_to_px",
                  "spatial_softmax_ce")


def __getattr__(name):
    if name in _HEATMAP_NAMES:
        from DiffusionSegLib.landmarks import heatmaps

        return getattr(heatmaps, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LOW_CONFIDENCE", "Landmarks", "read_landmarks", "write_csv", "write_fcsv", "write_mrk_json",
           "index_to_physical", "physical_to_index", "points_outside",
           "decode_heatmaps", "encode_heatmaps", "heatmap_mse", "heatmaps_as_logits", "sigma_mm_to_px",
           "spatial_softmax_ce"]
