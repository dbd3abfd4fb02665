"""``diffusionseg demo``: the main job end to end on generated sample data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..demo.options import DemoOptions
from .common import add_device_option, add_progress_option, defaults_of, positive_int


def add_parser(subparsers) -> None:
    default = defaults_of(DemoOptions)
    p = subparsers.add_parser("demo", help="run everything end to end on generated sample data",
                              description="Generate chest-radiograph phantoms, pretrain, sample, fine-tune for "
                                          "segmentation and landmarks on a few cases, predict the others, evaluate.")
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder (an earlier demo's is replaced)")
    p.add_argument("--pretrain-iterations", type=positive_int, default=default["pretrain_iterations"])
    p.add_argument("--finetune-iterations", type=positive_int, default=default["finetune_iterations"])
    add_device_option(p, DemoOptions)
    add_progress_option(p, DemoOptions)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..demo.run import run_demo

    summary = run_demo(DemoOptions(out=args.out, pretrain_iterations=args.pretrain_iterations,
                                   finetune_iterations=args.finetune_iterations, device=args.device,
                                   progress=args.progress))
    if args.progress != "json":
        print(json.dumps(summary, indent=2))
        print(f"Results: {args.out}/README.txt")
    return 0
