"""``diffusionseg pretrain``: DDPM pretraining on a folder of unlabeled images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..nets.presets import DEFAULT_PRESETS, PRETRAIN_PRESETS
from ..pretrain.options import PretrainOptions
from ..vocabulary import AUTO_MODALITIES, OBJECTIVES, SCHEDULES
from .common import add_fast_option, add_runtime_options, defaults_of, positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("pretrain", help="pretrain a diffusion U-Net on unlabeled images",
                              description="Pretrain a diffusion U-Net (DDPM) on a folder of unlabeled images. "
                                          "Sizes are given in x y [z] order.")
    default = defaults_of(PretrainOptions)
    p.add_argument("--images", type=Path, required=True, help="folder of unlabeled images (2D or 3D, not mixed)")
    p.add_argument("--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--dims", type=int, choices=(2, 3), help="check that the images are 2D or 3D")
    p.add_argument("--preset", default=default["preset"], choices=list(PRETRAIN_PRESETS),
                   help="network size (default: " + ", ".join(f"{d}D {p}" for d, p in DEFAULT_PRESETS.items()) + ")")
    p.add_argument("--iterations", type=positive_int, default=default["iterations"])
    p.add_argument("--batch-size", type=positive_int, default=default["batch_size"])
    p.add_argument("--learning-rate", type=float, default=default["learning_rate"])
    p.add_argument("--weight-decay", type=float, default=default["weight_decay"])
    p.add_argument("--image-size", type=positive_int, nargs="+", help="resize whole images to this (2D default: 64 across the shorter side, the other in proportion)")
    p.add_argument("--spacing", type=float, nargs="+", help="resample to this spacing in mm (CT, MRI)")
    p.add_argument("--patch-size", type=positive_int, nargs="+", help="training patch size (3D default 64 64 32)")
    p.add_argument("--coordinates", default=default["coordinates"], metavar="none|position|bpr:MODEL_DIR",
                   help="condition the U-Net on coordinate channels: the voxel's normalised position in the "
                        "volume, or body-part regression scores (`diffusionseg bpr train`); default none")
    p.add_argument("--modality", default=default["modality"], choices=AUTO_MODALITIES,
                   help="intensity normalisation: ct (HU window) or xray/mri/other (percentiles); auto guesses")
    p.add_argument("--timesteps", type=positive_int, default=default["timesteps"],
                   help="diffusion steps (papers: 500-4000)")
    p.add_argument("--schedule", default=default["schedule"], choices=SCHEDULES)
    p.add_argument("--objective", default=default["objective"], choices=OBJECTIVES,
                   help="ddpm: diffusion denoising (the method); masked: masked image modelling (a baseline)")
    p.add_argument("--ema-decay", type=float, default=default["ema_decay"])
    p.add_argument("--checkpoint-every", type=positive_int, default=default["checkpoint_every"])
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no random affine augmentation")
    p.add_argument("--workers", type=int, help="data loading processes (default 0 on the CPU, 4 on a GPU)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model in --out")
    add_fast_option(p, PretrainOptions)
    add_runtime_options(p, PretrainOptions)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..pretrain.run import pretrain

    opts = PretrainOptions(
        images=args.images, out=args.out, dims=args.dims, preset=args.preset, iterations=args.iterations,
        batch_size=args.batch_size, learning_rate=args.learning_rate, weight_decay=args.weight_decay,
        image_size=args.image_size, spacing=args.spacing, patch_size=args.patch_size, modality=args.modality,
        coordinates=args.coordinates,
        timesteps=args.timesteps, schedule=args.schedule, ema_decay=args.ema_decay,
        checkpoint_every=args.checkpoint_every, augment=args.augment, resume=args.resume, overwrite=args.overwrite,
        seed=args.seed, device=args.device, precision=args.precision, fast=args.fast, workers=args.workers,
        progress=args.progress,
        objective=args.objective)
    summary = pretrain(opts)
    if args.progress != "json":
        print(json.dumps(summary, indent=2))
    return 0
