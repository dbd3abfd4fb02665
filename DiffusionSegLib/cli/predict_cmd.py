"""``diffusionseg predict``: segment or place landmarks on new images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..predict.defaults import MAX_WINDOW_VOXELS
from ..predict.options import PredictOptions
from .common import add_fast_option, add_runtime_options, defaults_of


def formats(text: str) -> list[str]:
    """``--format nii.gz,.nrrd`` -> ``["nii.gz", "nrrd"]``."""
    return [f.strip().lstrip(".") for f in text.split(",") if f.strip()]


def add_parser(subparsers) -> None:
    default = defaults_of(PredictOptions)
    p = subparsers.add_parser("predict", help="run a fine-tuned model on images",
                              description="Write <case>.seg.nrrd (segmentation) or <case>.mrk.json and <case>.csv "
                                          "(landmarks) for each image, in the image's own geometry.")
    p.add_argument("--model", type=Path, required=True, help="model folder written by finetune")
    p.add_argument("--images", type=Path, required=True, help="an image file or a folder of images")
    p.add_argument("--out", type=Path, required=True, help="output folder (existing results are never overwritten)")
    p.add_argument("--format", dest="formats", type=formats, default=default["formats"],
                   help="also write label maps: nii.gz,nrrd,png")
    p.add_argument("--overlay", action="store_true", help="also write <case>_overlay.png to look at")
    p.add_argument("--min-confidence", type=float, default=default["min_confidence"],
                   help="landmarks below it are flagged (kept)")
    p.add_argument("--overlap", type=float, default=default["overlap"],
                   help="sliding-window overlap (3D), a fraction of the window; 0.5 is more accurate where the "
                        "training patch is small against the volume, at about twice the time")
    p.add_argument("--window-voxels", dest="max_window_voxels", type=int, default=default["max_window_voxels"],
                   help="let sliding windows grow past the training patch up to this many voxels (e.g. "
                        f"{MAX_WINDOW_VOXELS}): faster, but the output changes; default (or 0) the training patch")
    add_fast_option(p, PredictOptions)
    add_runtime_options(p, PredictOptions)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..predict.run import predict

    opts = PredictOptions(model=args.model, images=args.images, out=args.out, formats=args.formats,
                          overlay=args.overlay, min_confidence=args.min_confidence, overlap=args.overlap,
                          max_window_voxels=args.max_window_voxels or None, fast=args.fast,
                          device=args.device, precision=args.precision, progress=args.progress)
    summary = predict(opts)
    if args.progress != "json":
        print(json.dumps(summary, indent=2))
    return 0
