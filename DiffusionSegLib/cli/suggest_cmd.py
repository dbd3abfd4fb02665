"""``diffusionseg suggest``: which images to annotate next, as a ranked JSON + CSV list."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..suggest.options import SuggestOptions
from .common import add_runtime_options, defaults_of, positive_int


def add_parser(subparsers) -> None:
    from ..suggest.select import STRATEGIES

    defaults = defaults_of(SuggestOptions)
    p = subparsers.add_parser("suggest", help="rank the unlabeled images to annotate next",
                              description="Rank --count unlabeled images of --images to annotate next. With a "
                                          "pretrained model (or no labeled case): images that represent the pool in "
                                          "the model's feature space. With a fine-tuned model and labeled cases: a "
                                          "mix of the model's uncertainty and the distance from the labeled cases. "
                                          "Writes OUT.json and OUT.csv (case, rank, score, reason, image); features "
                                          "are cached per image under MODEL/cache/suggest.")
    p.add_argument("--model", type=Path, required=True, help="a pretrained, segmentation or landmark model folder")
    p.add_argument("--images", type=Path, required=True, help="the pool: labeled and unlabeled images")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--labels", type=Path, help="segmentation annotations; the cases they name are labeled "
                                                   "and never suggested")
    group.add_argument("--landmarks", type=Path, help="landmark annotations (.mrk.json, .fcsv, .csv)")
    p.add_argument("--count", type=positive_int, required=True, help="how many cases to suggest")
    p.add_argument("--out", required=True,
                   help="a folder (suggestions.json + .csv inside) or a file prefix (PREFIX.json + PREFIX.csv)")
    p.add_argument("--strategy", default=defaults["strategy"], choices=STRATEGIES,
                   help="auto (default): mix for a fine-tuned model with labeled cases, else kmedoids; kcentre: "
                        "farthest-first in feature space")
    p.add_argument("--uncertainty-weight", type=float, default=defaults["uncertainty_weight"],
                   help=f"mix: weight of the model's uncertainty, the rest is distance from the labeled cases "
                        f"(default {defaults['uncertainty_weight']:g})")
    p.add_argument("--cache-dir", type=Path, help="feature cache folder (default MODEL/cache/suggest)")
    add_runtime_options(p, SuggestOptions)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..suggest.run import suggest

    report = suggest(SuggestOptions(
        model=args.model, images=args.images, count=args.count, out=args.out, labels=args.labels,
        landmarks=args.landmarks, strategy=args.strategy, uncertainty_weight=args.uncertainty_weight,
        cache_dir=args.cache_dir, seed=args.seed, device=args.device, precision=args.precision,
        progress=args.progress))
    if args.progress != "json":
        print(json.dumps([{k: s[k] for k in ("case", "rank", "score", "reason")} for s in report["suggestions"]],
                         indent=2))
    return 0
