"""``diffusionseg finetune``: few-shot fine-tuning for segmentation or landmarks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..finetune.options import FinetuneOptions
from ..nets.presets import PRESETS
from ..vocabulary import AUGMENTATIONS, AUTO_MODALITIES, FINETUNE_MODES, TASKS, Augmentation
from .common import add_fast_option, add_runtime_options, defaults_of, positive_int


def names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("finetune", help="fine-tune a pretrained model on a few annotated cases",
                              description="Fine-tune the pretrained U-Net (or a random one, --init random) on the "
                                          "annotated cases: each image in --images with an annotation of the same "
                                          "name in --labels (segmentation) or --landmarks.")
    add_finetune_options(p)
    default = defaults_of(FinetuneOptions)
    p.add_argument("--mode", choices=FINETUNE_MODES, default=default["mode"],
                   help="full: fine-tune the whole U-Net (default); probe: keep it frozen and train a small "
                        "conv head on its decoder features at --probe-timesteps; mlp: a pixel-MLP ensemble "
                        "on the same features (segmentation only)")
    p.add_argument("--probe-timesteps", type=int, nargs="+", metavar="T",
                   help="--mode probe/mlp: noise levels of the features (default 10 30 60)")
    p.add_argument("--noise-seed", type=int, default=default["noise_seed"],
                   help="--mode probe/mlp: seed of the fixed feature noise")
    p.add_argument("--mlp-members", type=int, default=default["mlp_members"],
                   help=f"--mode mlp: ensemble size (default {default['mlp_members']})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model in --out")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out from its last complete checkpoint")
    add_fast_option(p, FinetuneOptions)
    add_runtime_options(p, FinetuneOptions)
    p.set_defaults(run=run)


def add_finetune_options(p: argparse.ArgumentParser) -> None:
    """The options of one fine-tuning (shared with ``selftrain``, which fine-tunes every round)."""
    default = defaults_of(FinetuneOptions)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--pretrained", type=Path, help="model folder written by pretrain")
    p.add_argument("--init", choices=("pretrained", "random"), default="pretrained",
                   help="random: train from scratch (a baseline; --pretrained is then not needed)")
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--labels", type=Path, help="segmentation: .seg.nrrd files or label maps named like the images")
    p.add_argument("--landmarks", type=Path, help="landmarks: .mrk.json, .fcsv or CSV files named like the images")
    p.add_argument("--classes", type=names, help="class names for label maps, comma-separated (value i = i-th name)")
    p.add_argument("--landmark-names", type=names, help="landmarks to learn, comma-separated (default: all found)")
    p.add_argument("--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--iterations", type=positive_int, default=default["iterations"])
    p.add_argument("--batch-size", type=positive_int, default=default["batch_size"])
    p.add_argument("--learning-rate", type=float, default=default["learning_rate"])
    p.add_argument("--weight-decay", type=float, default=default["weight_decay"])
    p.add_argument("--timestep", type=int, default=default["timestep"],
                   help="--mode full: the fixed diffusion timestep the network runs at")
    p.add_argument("--dice-weight", type=float, default=default["dice_weight"],
                   help="segmentation: weight of the Dice term (0: CE only)")
    p.add_argument("--sigma-mm", type=float,
                   help="landmarks: heatmap sigma in mm (default 1.5 network pixels)")
    p.add_argument("--augmentation", choices=AUGMENTATIONS, default=default["augmentation"],
                   help="strong: nnU-Net-style spatial and intensity; mild: small affine; none: crops only")
    p.add_argument("--no-augment", dest="augmentation", action="store_const", const=Augmentation.NONE.value,
                   help="the same as --augmentation none")
    p.add_argument("--preset", default=default["preset"], choices=list(PRESETS),
                   help="with --init random only; plain: MONAI's BasicUNet, the supervised U-Net without pretraining")
    p.add_argument("--image-size", type=positive_int, nargs="+", help="with --init random only")
    p.add_argument("--spacing", type=float, nargs="+", help="with --init random only")
    p.add_argument("--patch-size", type=positive_int, nargs="+",
                   help="3D training patch (x y z); default: the pretrained model's")
    p.add_argument("--modality", default=default["modality"], choices=AUTO_MODALITIES,
                   help="with --init random only")
    p.add_argument("--coordinates", default=default["coordinates"], metavar="none|position|bpr:MODEL_DIR",
                   help="with --init random only (a pretrained model brings its own); default none")
    p.add_argument("--extra", type=Path, action="append", default=default["extra"], metavar="DIR",
                   help="extra labeled cases mixed into training: DIR/images and DIR/labels (what "
                        "`diffusionseg synthesize` writes); may repeat")
    p.add_argument("--extra-weight", type=float, default=default["extra_weight"], metavar="W",
                   help="fraction of the training items drawn from the --extra cases, in [0, 1) "
                        f"(default {default['extra_weight']:g}; every batch of 2 or more keeps a real case)")
    p.add_argument("--checkpoint-every", type=positive_int, default=default["checkpoint_every"])
    p.add_argument("--workers", type=int)


def finetune_options(args: argparse.Namespace):
    """FinetuneOptions from the parsed arguments."""
    from ..errors import UserError

    annotations = args.labels if args.task == "segmentation" else args.landmarks
    if annotations is None:
        flag = "--labels" if args.task == "segmentation" else "--landmarks"
        raise UserError(f"--task {args.task} needs {flag}.", fix=f"pass {flag} DIR with the annotation files.")
    if args.init == "pretrained" and args.pretrained is None:
        raise UserError("no pretrained model was given.",
                        fix="pass --pretrained MODEL_DIR, or --init random to train from scratch.")
    opts = FinetuneOptions(
        task=args.task, images=args.images, annotations=annotations, out=args.out,
        pretrained=args.pretrained if args.init == "pretrained" else None, classes=args.classes,
        landmark_names=args.landmark_names, iterations=args.iterations, batch_size=args.batch_size,
        learning_rate=args.learning_rate, weight_decay=args.weight_decay, timestep=args.timestep,
        dice_weight=args.dice_weight, sigma_mm=args.sigma_mm, augmentation=args.augmentation, preset=args.preset,
        image_size=args.image_size, spacing=args.spacing, patch_size=args.patch_size, modality=args.modality,
        coordinates=args.coordinates, mode=args.mode, probe_timesteps=args.probe_timesteps,
        noise_seed=args.noise_seed, mlp_members=args.mlp_members, extra=list(args.extra),
        extra_weight=args.extra_weight, checkpoint_every=args.checkpoint_every, overwrite=args.overwrite,
        seed=args.seed, device=args.device, precision=args.precision, fast=args.fast, workers=args.workers,
        progress=args.progress)
    return opts


def run(args: argparse.Namespace) -> int:
    from ..finetune.run import finetune

    opts = finetune_options(args)
    opts.resume = args.resume
    summary = finetune(opts)
    if args.progress != "json":
        print(json.dumps(summary, indent=2))
    return 0
