"""``diffusionseg curve``: is one more annotation worth it? A label-efficiency curve from the labeled cases."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from ..curve.options import CurveOptions
from .common import add_runtime_options, defaults_of, positive_int
from .finetune_cmd import names


def add_parser(subparsers) -> None:
    default = defaults_of(CurveOptions)
    p = subparsers.add_parser(
        "curve", help="estimate the accuracy with one and five more labeled cases",
        description="Fine-tune the pretrained model on subsets of the labeled cases (sizes 1 .. N-1, --folds draws "
                    "each), score each on the held-out labeled cases, fit y = a - b * n^(-c), and predict the "
                    "accuracy at N, N+1 and N+5 with an 80% bootstrap band. Writes OUT/curve.json, curve.csv, "
                    "curve.png. Cost: one fine-tuning of --iterations steps per subset (default at most "
                    f"{3 * default['folds']}).")
    p.add_argument("--pretrained", type=Path, required=True, help="model folder written by pretrain")
    p.add_argument("--images", type=Path, required=True, help="the images; those with an annotation are used")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--labels", type=Path, help="segmentation: .seg.nrrd files or label maps named like the images")
    group.add_argument("--landmarks", type=Path, help="landmarks: .mrk.json, .fcsv or CSV files")
    p.add_argument("--out", type=Path, required=True, help="folder to write (must be new or empty)")
    p.add_argument("--sizes", type=positive_int, nargs="+", metavar="n",
                   help="subset sizes to fine-tune on, each in 1..N-1 (default: 1..N-1 if at most 3 of them, "
                        "else 1, about sqrt(N-1), N-1)")
    p.add_argument("--folds", type=positive_int, default=default["folds"],
                   help=f"subsets drawn per size (default {default['folds']}; all of them when fewer exist)")
    p.add_argument("--iterations", type=positive_int, default=default["iterations"],
                   help=f"fine-tuning steps per subset (default {default['iterations']})")
    p.add_argument("--metric", choices=("dice", "iou", "mre"),
                   help="segmentation: dice (default) or iou, mean over classes; landmarks: mre")
    p.add_argument("--batch-size", type=positive_int, default=default["batch_size"])
    p.add_argument("--learning-rate", type=float, default=default["learning_rate"])
    p.add_argument("--classes", type=names, help="class names for label maps, comma-separated")
    p.add_argument("--landmark-names", type=names, help="landmarks to learn, comma-separated (default: all found)")
    add_runtime_options(p, CurveOptions)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..curve.run import curve

    task = "segmentation" if args.labels is not None else "landmarks"
    result = curve(CurveOptions(
        task=task, pretrained=args.pretrained, images=args.images,
        annotations=args.labels if task == "segmentation" else args.landmarks, out=args.out, sizes=args.sizes,
        folds=args.folds, iterations=args.iterations, metric=args.metric, batch_size=args.batch_size,
        learning_rate=args.learning_rate, classes=args.classes, landmark_names=args.landmark_names,
        seed=args.seed, device=args.device, precision=args.precision, progress=args.progress,
        command=command_line(args, task)))
    if args.progress != "json":
        print(json.dumps({"sentence": result["sentence"], "predictions": result["predictions"],
                          "out": str(args.out)}, indent=2))
    return 0


def command_line(args: argparse.Namespace, task: str) -> str:
    """The command, rebuilt from the parsed options (every value that decides the result), for curve.json."""
    words = ["diffusionseg", "curve", "--pretrained", args.pretrained, "--images", args.images,
             "--labels" if task == "segmentation" else "--landmarks",
             args.labels if task == "segmentation" else args.landmarks, "--out", args.out]
    if args.sizes:
        words += ["--sizes", *args.sizes]
    words += ["--folds", args.folds, "--iterations", args.iterations, "--batch-size", args.batch_size,
              "--learning-rate", args.learning_rate, "--seed", args.seed]
    for flag, value in (("--metric", args.metric), ("--classes", args.classes),
                        ("--landmark-names", args.landmark_names)):
        if value:
            words += [flag, ",".join(value) if isinstance(value, list) else value]
    words += ["--device", args.device]
    return " ".join(shlex.quote(str(w)) for w in words)
