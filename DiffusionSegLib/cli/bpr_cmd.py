"""``diffusionseg bpr``: body-part regression (train on unlabeled CT volumes, predict slice scores)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..bpr.options import BprOptions, BprPredictOptions
from .common import add_device_option, add_progress_option, add_runtime_options, defaults_of, positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bpr", help="body-part regression: a body-height score for each axial CT slice",
                              description="Body-part regression (Yan et al. 2018): a self-supervised score that "
                                          "rises from feet to head, used as a coordinate channel "
                                          "(--coordinates bpr:MODEL_DIR).")
    actions = p.add_subparsers(dest="bpr_command", required=True, metavar="ACTION")

    default = defaults_of(BprOptions)
    t = actions.add_parser("train", help="train a regressor on a folder of unlabeled 3D CT volumes",
                           description="Train a body-part regressor on unlabeled 3D CT volumes (no labels).")
    t.add_argument("--images", type=Path, required=True, help="folder of 3D CT volumes")
    t.add_argument("--out", type=Path, required=True, help="model folder to write")
    t.add_argument("--iterations", type=positive_int, default=default["iterations"])
    t.add_argument("--batch-size", type=positive_int, default=default["batch_size"],
                   help=f"volumes per step (default {default['batch_size']})")
    t.add_argument("--slices", type=positive_int, default=default["slices"],
                   help=f"slices taken from each volume at equal gaps (default {default['slices']}, at least 3)")
    t.add_argument("--slice-size", type=positive_int, nargs=2, default=default["slice_size"], metavar=("X", "Y"),
                   help="in-plane size the slices are resampled to (default {} {})".format(*default["slice_size"]))
    t.add_argument("--learning-rate", type=float, default=default["learning_rate"])
    t.add_argument("--checkpoint-every", type=positive_int, default=default["checkpoint_every"])
    t.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    t.add_argument("--overwrite", action="store_true", help="replace an existing model in --out")
    add_runtime_options(t, BprOptions)
    t.set_defaults(run=run_train)

    r = actions.add_parser("predict", help="score the axial slices of volumes",
                           description="Write <case>.bpr.json (each slice's z in mm and score, monotonicity, "
                                       "Spearman correlation with z) for each volume; existing files are never "
                                       "overwritten.")
    r.add_argument("--model", type=Path, required=True, help="model folder written by `diffusionseg bpr train`")
    r.add_argument("--images", type=Path, required=True, help="a volume or a folder of volumes")
    r.add_argument("--out", type=Path, required=True, help="output folder")
    r.add_argument("--volume", action="store_true", help="also write <case>_bpr.nrrd: each voxel its slice's score")
    add_device_option(r, BprPredictOptions)
    add_progress_option(r, BprPredictOptions)
    r.set_defaults(run=run_predict)


def run_train(args: argparse.Namespace) -> int:
    from ..bpr.train import train_bpr

    opts = BprOptions(images=args.images, out=args.out, iterations=args.iterations, batch_size=args.batch_size,
                      slices=args.slices, slice_size=list(args.slice_size), learning_rate=args.learning_rate,
                      checkpoint_every=args.checkpoint_every, resume=args.resume, seed=args.seed,
                      overwrite=args.overwrite, device=args.device, precision=args.precision, progress=args.progress)
    summary = train_bpr(opts)
    if args.progress != "json":
        print(json.dumps(summary, indent=2))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from ..bpr.predict import predict_bpr

    opts = BprPredictOptions(model=args.model, images=args.images, out=args.out, volume=args.volume,
                             device=args.device, progress=args.progress)
    summary = predict_bpr(opts)
    if args.progress != "json":
        print(json.dumps(summary, indent=2))
    return 0
