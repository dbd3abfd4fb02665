"""``diffusionseg selftrain``: fine-tune, pseudo-label the unlabeled images, fine-tune again on both."""

from __future__ import annotations

import argparse
import json

from ..finetune.options import FinetuneOptions
from ..synthesize.options import SelftrainOptions
from .common import add_fast_option, add_runtime_options, defaults_of, positive_int
from .finetune_cmd import add_finetune_options
from .synthesize_cmd import add_pseudo_label_options


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("selftrain", help="self-training: fine-tune, pseudo-label the unlabeled images, "
                                                "fine-tune again on real + confident pseudo-labels",
                              description="--images holds every image, labeled and unlabeled; those with an "
                                          "annotation in --labels/--landmarks are the labeled cases. Round 0 "
                                          "fine-tunes on them; each later round labels the other images with the "
                                          "previous model, keeps the confident labels and fine-tunes again from "
                                          "--pretrained on real + pseudo-labeled cases. Every stage is kept in "
                                          "OUT/runs/selftrain-<time>/ (round_N/pseudo opens in Slicer).")
    add_finetune_options(p)
    default = defaults_of(SelftrainOptions)
    p.add_argument("--rounds", type=positive_int, default=default["rounds"],
                   help=f"pseudo-labeling rounds (default {default['rounds']})")
    add_pseudo_label_options(p, "an unlabeled image", default["overlap"], default["keep_fraction"])
    p.add_argument("--overwrite", action="store_true", help="replace an existing model in --out")
    add_fast_option(p, FinetuneOptions)
    add_runtime_options(p, FinetuneOptions)
    # Fine-tuning options selftrain does not offer: every round fine-tunes the whole U-Net.
    finetune = defaults_of(FinetuneOptions)
    p.set_defaults(run=run, **{name: finetune[name]
                               for name in ("mode", "probe_timesteps", "noise_seed", "mlp_members")})


def run(args: argparse.Namespace) -> int:
    from ..synthesize.selftrain import selftrain
    from .finetune_cmd import finetune_options

    summary = selftrain(SelftrainOptions(finetune=finetune_options(args), rounds=args.rounds,
                                         min_confidence=args.min_confidence, keep_fraction=args.keep_fraction,
                                         measure=args.measure, overlap=args.overlap))
    if args.progress != "json":
        print(json.dumps(summary, indent=2))
    return 0
