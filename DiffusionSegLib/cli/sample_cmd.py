"""``diffusionseg sample``: draw images from a pretrained model (the first check that it learned the anatomy)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..diffusion.options import SampleOptions
from ..vocabulary import SAMPLERS
from .common import add_runtime_options, defaults_of, positive_int


def add_parser(subparsers) -> None:
    default = defaults_of(SampleOptions)
    p = subparsers.add_parser("sample", help="draw new images from a pretrained model",
                              description="Draw images from a pretrained model; writes samples.png (a grid) "
                                          "and one image file per sample.")
    p.add_argument("--model", type=Path, required=True, help="model folder written by pretrain")
    p.add_argument("--out", type=Path, required=True, help="new folder for the samples")
    p.add_argument("--count", type=positive_int, default=default["count"])
    p.add_argument("--steps", type=positive_int, default=default["steps"], help="denoising steps (DDIM); ddpm uses all")
    p.add_argument("--method", default=default["method"], choices=SAMPLERS)
    add_runtime_options(p, SampleOptions)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..diffusion.draw import sample_model

    summary = sample_model(args.model, args.out, count=args.count, steps=args.steps, method=args.method,
                           seed=args.seed, device=args.device, precision=args.precision, progress=args.progress)
    if args.progress != "json":
        print(json.dumps(summary, indent=2))
    return 0
