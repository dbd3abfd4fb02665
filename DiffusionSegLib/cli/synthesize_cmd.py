"""``diffusionseg synthesize``: an artificial labeled dataset (PTDR): images drawn from the pretrained
model, labeled by the fine-tuned one, the confident ones kept as ordinary cases."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..synthesize.options import DEFAULT_MIN_CONFIDENCE, SynthesizeOptions
from ..vocabulary import CONFIDENCE_MEASURES
from .common import add_runtime_options, defaults_of, fraction, positive_int


def add_parser(subparsers) -> None:
    default = defaults_of(SynthesizeOptions)
    p = subparsers.add_parser("synthesize", help="draw images, label them with a fine-tuned model, keep the confident",
                              description="Draw --count images from the pretrained model (DDIM), label each with the "
                                          "fine-tuned --model and write the confident ones to OUT/images + "
                                          "OUT/labels (finetune --extra OUT reads them), the others to OUT/rejected, "
                                          "and every sample's confidence to OUT/synthesize.json and .csv.")
    p.add_argument("--pretrained", type=Path, required=True, help="the model folder `diffusionseg pretrain` wrote")
    p.add_argument("--model", type=Path, required=True,
                   help="a segmentation or landmark model fine-tuned from --pretrained (it labels the samples)")
    p.add_argument("--out", type=Path, required=True, help="new folder for the cases")
    p.add_argument("--count", type=positive_int, default=default["count"],
                   help=f"images to draw (default {default['count']})")
    p.add_argument("--steps", type=positive_int, default=default["steps"],
                   help=f"DDIM denoising steps per image (default {default['steps']})")
    p.add_argument("--batch-size", type=positive_int, default=default["batch_size"],
                   help=f"images drawn together (default {default['batch_size']})")
    add_pseudo_label_options(p, "a drawn sample", default["overlap"], default["keep_fraction"])
    p.add_argument("--no-rejected", dest="keep_rejected", action="store_false",
                   help="do not write the rejected samples to OUT/rejected (the report still lists them)")
    add_runtime_options(p, SynthesizeOptions)
    p.set_defaults(run=run)


def add_pseudo_label_options(p: argparse.ArgumentParser, what: str, overlap: float, keep_fraction: float) -> None:
    """--min-confidence, --confidence-measure and --overlap: how a model's label of an image (a drawn
    sample or a real unlabeled image) is made and kept; synthesize and selftrain share them."""
    p.add_argument("--min-confidence", type=float,
                   help=f"keep {what}'s label when its confidence is at least this (default "
                        f"{DEFAULT_MIN_CONFIDENCE['segmentation']:g} segmentation, "
                        f"{DEFAULT_MIN_CONFIDENCE['landmarks']:g} landmarks: the smallest landmark's heatmap "
                        "peak mass)")
    p.add_argument("--keep-fraction", type=fraction, default=keep_fraction, metavar="F",
                   help=f"of all the labeled images keep at most this fraction, the most confident first, "
                        f"after --min-confidence (default {keep_fraction:g}; 1: the threshold alone decides)")
    p.add_argument("--confidence-measure", dest="measure", choices=CONFIDENCE_MEASURES,
                   help="segmentation: foreground (default; mean top class probability over the pixels "
                        "predicted as a class) or image (over all pixels); landmarks: peak")
    p.add_argument("--overlap", type=float, default=overlap, help="sliding-window overlap (3D)")


def run(args: argparse.Namespace) -> int:
    from ..synthesize.run import synthesize

    summary = synthesize(SynthesizeOptions(
        pretrained=args.pretrained, model=args.model, out=args.out, count=args.count, steps=args.steps,
        batch_size=args.batch_size, min_confidence=args.min_confidence, keep_fraction=args.keep_fraction,
        measure=args.measure, keep_rejected=args.keep_rejected, overlap=args.overlap, seed=args.seed,
        device=args.device, precision=args.precision, progress=args.progress))
    if args.progress != "json":
        print(json.dumps(summary, indent=2))
    return 0
