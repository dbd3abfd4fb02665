"""``diffusionseg predict``: segment or place landmarks on new images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..predict.defaults import DEFAULT_OVERLAP, MAX_WINDOW_VOXELS
from .common import add_runtime_options


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("predict", help="run a fine-tuned model on images",
                              description="Write <case>.seg.nrrd (segmentation) or <case>.mrk.json and <case>.csv "
                                          "(landmarks) for each image, in the image's own geometry.")
    p.add_argument("--model", type=Path, required=True, help="model folder written by finetune")
    p.add_argument("--images", type=Path, required=True, help="an image file or a folder of images")
    p.add_argument("--out", type=Path, required=True, help="output folder (existing results are never overwritten)")
    p.add_argument("--format", dest="formats", default="", help="also write label maps: nii.gz,nrrd,png")
    p.add_argument("--overlay", action="store_true", help="also write <case>_overlay.png to look at")
    p.add_argument("--min-confidence", type=float, default=0.3, help="landmarks below it are flagged (kept)")
    p.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP, help="sliding-window overlap (3D)")
    p.add_argument("--window-voxels", type=int, default=0,
                   help="let sliding windows grow past the training patch up to this many voxels (e.g. "
                        f"{MAX_WINDOW_VOXELS}): faster, but the output changes; default 0, the training patch")
    p.add_argument("--fast", action="store_true",
                   help="mixed precision (bf16 also on a CPU), channels-last and torch.compile: for a GPU")
    add_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..predict.run import PredictOptions, predict

    opts = PredictOptions(model=args.model, images=args.images, out=args.out,
                          formats=[f.strip().lstrip(".") for f in args.formats.split(",") if f.strip()],
                          overlay=args.overlay, min_confidence=args.min_confidence, overlap=args.overlap,
                          max_window_voxels=args.window_voxels or None, fast=args.fast,
                          device=args.device, precision=args.precision, progress=args.progress)
    summary = predict(opts)
    if args.progress != "json":
        print(json.dumps(summary, indent=2))
    return 0
