"""``diffusionseg finetune``: few-shot fine-tuning of a pretrained (or random) U-Net."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .. import __version__
from ..data.augment import recipe_named, training_transform
from ..data.choose import choose_preprocessing
from ..data.datasets import CaseDataset
from ..data.preprocess import Preprocessing
from ..data.sampler import StepBatchSampler
from ..errors import UserError
from ..imageio import check_same_dims, read_image
from ..imageio.verify import verify_images
from ..labels import class_names_from, is_seg_nrrd
from ..landmarks import read_landmarks
from ..nets import NetworkConfig, build_unet, check_fits, network_config
from ..nets.fast import FastOptions
from ..probe import build_probe_network
from ..probe.network import DEFAULT_TIMESTEPS
from ..project import DEFAULT_COLORS
from ..training.checkpoint import STATE_NAME, fit_weights, load_model_config, load_weights
from ..training.guard import prepare_out_dir
from ..training.loop import LoopSettings, train
from ..training.progress import new_run_dir
from ..training.runtime import training_runtime
from ..vocabulary import FINETUNE_MODES as MODES
from ..vocabulary import TASKS
from .cases import LANDMARK_SUFFIXES, SEGMENTATION_SUFFIXES, Case, labeled_cases
from .extra import MixedBatchSampler, check_weight, extra_cases
from .network import task_network
from .options import FinetuneOptions  # noqa: F401  (stated there, torch-free; imported from here too)
from .tasks import LandmarkTask, SegmentationTask


def _segmentation_task(opts: FinetuneOptions, cases: list[Case]) -> SegmentationTask:
    classes = opts.classes
    colors = None
    if not classes:
        seg = next((c.annotation for c in cases if is_seg_nrrd(c.annotation)), None)
        if seg is None:
            raise UserError("label maps carry no class names.", path=opts.annotations,
                            fix="pass --classes name1,name2,... (label value i is the i-th name).")
        classes, colors = class_names_from(seg)
    colors = colors or [list(DEFAULT_COLORS[i % len(DEFAULT_COLORS)]) for i in range(len(classes))]
    return SegmentationTask(classes=list(classes), colors=[list(c) for c in colors], dice_weight=opts.dice_weight)


def _landmark_task(opts: FinetuneOptions, cases: list[Case], spacing_mm: float) -> LandmarkTask:
    names = opts.landmark_names
    if not names:
        names = []
        for case in cases:  # the union of the names, in the order they first appear
            names += [n for n in read_landmarks(case.annotation).names if n not in names]
    # Default sigma: 1.5 network pixels, so the Gaussian is resolved at any resolution.
    sigma = opts.sigma_mm if opts.sigma_mm else round(1.5 * spacing_mm, 3)
    return LandmarkTask(names=list(names), sigma_mm=sigma)


def _base_model(opts: FinetuneOptions, dims: int, first_image: Path
                ) -> tuple[NetworkConfig, Preprocessing, dict | None]:
    """(network config without head, preprocessing, pretrained weights or None).

    With a pretrained model, its network and preprocessing are used as they are; without
    one, they follow the same rules as pretraining (``first_image`` guides the modality).
    """
    if opts.pretrained is not None:
        if network_config(opts.preset, dims).is_plain:
            raise UserError("preset 'plain' (a BasicUNet) is trained from random initialisation, but a pretrained "
                            "model was given.", path=opts.pretrained,
                            fix="drop the pretrained model (--init random) to train the plain U-Net, or drop "
                                "--preset plain to fine-tune the pretrained one.")
        config = load_model_config(opts.pretrained)
        if config.kind != "pretrained":
            raise UserError(f"--pretrained must be a pretrained model, this one is a {config.kind} model.",
                            path=opts.pretrained, fix="pass the folder that `diffusionseg pretrain` wrote.")
        if config.dims != dims:
            raise UserError(f"the pretrained model is {config.dims}D but the images are {dims}D.",
                            path=opts.pretrained, fix=f"pretrain a {dims}D model on images like these.")
        prep = Preprocessing.from_dict(config.preprocessing.to_dict())
        if opts.patch_size is not None:
            if len(opts.patch_size) != dims or prep.image_size is not None:
                raise UserError(f"--patch-size {list(opts.patch_size)} does not apply to this model: it takes "
                                f"{'whole resized images' if prep.image_size else f'{dims} numbers'}.",
                                path=opts.pretrained, fix="drop --patch-size (the pretrained model's patch is used).")
            prep.patch_size = list(opts.patch_size)
        network = NetworkConfig.from_dict(config.network.to_dict())
        weights = load_weights(opts.pretrained)
        fit_weights(build_unet(network), weights, opts.pretrained)  # a clear error if they do not fit
        return network, prep, weights
    # Random initialisation: the same preprocessing rules as pretraining.
    net = network_config(opts.preset, dims)
    prep = choose_preprocessing(dims, first_image, net, modality=opts.modality, image_size=opts.image_size,
                                spacing=opts.spacing, patch_size=opts.patch_size, coordinates=opts.coordinates)
    net.in_channels = prep.input_channels
    return net, prep, None


def _probe_network(opts: FinetuneOptions, backbone: NetworkConfig, out_channels: int,
                   pretrained: dict[str, torch.Tensor]):
    """(probing network with the pretrained backbone loaded, its plain-data description)."""
    config = load_model_config(opts.pretrained)
    if config.pretrain_objective != "ddpm" or config.diffusion is None:
        raise UserError("probing adds diffusion noise at chosen timesteps, so it needs a DDPM-pretrained model; "
                        f"this one was pretrained with the '{config.objective}' objective.",
                        path=opts.pretrained, fix="pass a model from `diffusionseg pretrain` (default objective), "
                                                  "or use --mode full.")
    steps = config.diffusion.num_train_timesteps
    timesteps = list(opts.probe_timesteps or DEFAULT_TIMESTEPS)
    if not timesteps or any(t < 0 or t >= steps for t in timesteps):
        raise UserError(f"probe timesteps {timesteps} must lie in 0..{steps - 1} (the model's diffusion steps).",
                        fix="pass --probe-timesteps with values in that range, e.g. 10 30 60.")
    probe = {"mode": opts.mode, "timesteps": timesteps, "noise_seed": opts.noise_seed, "blocks": None,
             "members": opts.mlp_members, "hidden": opts.probe_hidden, "diffusion": config.diffusion.to_dict(),
             "out_channels": out_channels}
    model = build_probe_network(backbone, probe["diffusion"], out_channels, probe)
    model.features.unet.load_state_dict(pretrained)
    return model, probe


def _resume_settings(opts: FinetuneOptions, kind: str, cases: list[str]) -> None:
    """Resuming repeats the interrupted run: its training settings win over today's flags
    (as pretrain --resume); only --iterations may grow. Another task, mode or case list is refused."""
    before = load_model_config(opts.out)
    training = before.training
    changed = [what for what, now, then in (("task", kind, before.kind), ("mode", opts.mode, before.mode),
                                            ("annotated cases", cases, training and training.cases)) if now != then]
    if changed:
        raise UserError(f"the interrupted run had another {', '.join(changed)}; resuming would mix two trainings.",
                        path=opts.out, fix="resume with the same --task, --mode and annotations, or start a new "
                                           "run in a new --out.")
    opts.batch_size, opts.learning_rate = training.batch_size, training.learning_rate
    opts.weight_decay, opts.seed = training.weight_decay, training.seed
    opts.augmentation = training.augmentation_recipe()


def finetune(opts: FinetuneOptions) -> dict:
    """Fine-tune for ``opts.task`` on the annotated cases and write the model folder ``opts.out``."""
    if opts.task not in TASKS:
        raise UserError(f"unknown task '{opts.task}'.", fix=f"use --task with one of {', '.join(TASKS)}.")
    if opts.mode not in MODES:
        raise UserError(f"unknown mode '{opts.mode}'.", fix=f"use --mode with one of {', '.join(MODES)}.")
    recipe_named(opts.augmentation)  # an unknown name fails now, not after the inputs are read
    if opts.mode != "full" and opts.pretrained is None:
        raise UserError(f"--mode {opts.mode} reads the features of a frozen pretrained U-Net, and none was given.",
                        fix="pass --pretrained MODEL_DIR (a DDPM-pretrained model), or use --mode full.")
    if opts.mode == "mlp" and opts.task != "segmentation":
        raise UserError("the pixel-MLP ensemble (--mode mlp) classifies pixels: it is for segmentation only.",
                        fix="use --mode probe or --mode full for landmarks.")
    opts.out = Path(opts.out)
    fast = FastOptions.choose(opts.fast)
    with training_runtime("finetune", opts.out, opts.device, fast.precision(opts.precision), opts.progress) as (
            reporter, ctx, guard, device, precision):
        suffixes = SEGMENTATION_SUFFIXES if opts.task == "segmentation" else LANDMARK_SUFFIXES
        cases = labeled_cases(opts.images, opts.annotations, suffixes)
        check_weight(opts.extra_weight)
        extras = [case for folder in opts.extra for case in extra_cases(folder, suffixes)]
        dims = check_same_dims([c.image for c in cases])
        if extras and check_same_dims([c.image for c in extras]) != dims:
            raise UserError(f"the --extra images are {3 if dims == 2 else 2}D but the labeled images are {dims}D.",
                            path=extras[0].image, fix=f"pass --extra folders of {dims}D cases.")
        verify_images([c.image for c in cases + extras], dims, log=reporter.log)
        base_net, prep, pretrained = _base_model(opts, dims, cases[0].image)
        # The network grid's spacing of the first case: synthesize gives its samples this spacing.
        grid_spacing = [float(v) for v in prep.resample(read_image(cases[0].image)).GetSpacing()]
        if opts.task == "segmentation":
            task = _segmentation_task(opts, cases)
        else:
            task = _landmark_task(opts, cases, min(grid_spacing))
        net_cfg = NetworkConfig.from_dict({**base_net.to_dict(), "out_channels": task.out_channels})
        check_fits(net_cfg, prep.patch_size, option="--patch-size")
        if ctx.is_main:
            guard.created, _ = prepare_out_dir(opts.out, resume=opts.resume, overwrite=opts.overwrite)
        ctx.barrier()
        opts.resume = opts.resume and (opts.out / STATE_NAME).is_file()  # False: interrupted before a checkpoint
        if opts.resume:
            _resume_settings(opts, task.kind, [c.name for c in cases])
        torch.manual_seed(opts.seed)
        if opts.mode == "full":
            model, fresh = task_network(net_cfg, opts.timestep, pretrained)
            probe = None
        else:
            model, probe = _probe_network(opts, base_net, task.out_channels, pretrained)
            fresh = [f"head.{name}" for name in model.head.state_dict()]
        run_dir = new_run_dir(opts.out / "runs", "finetune")
        if ctx.is_main:
            reporter.attach(run_dir / "events.jsonl")
        what = "fine-tuning" if probe is None else f"{opts.mode} training (frozen backbone)"
        reporter.log(f"{what} for {task.kind} on {len(cases)} case(s), "
                     f"{'pretrained from ' + str(opts.pretrained) if pretrained else 'random initialisation'} "
                     f"({len(fresh)} tensors new), {device} {precision.name}")
        # Reading every case once up front turns a bad annotation into an error now, not mid-run.
        loaded = [task.load(case, prep) for case in cases + extras]
        if extras:
            reporter.log(f"{len(extras)} extra case(s) from {', '.join(str(f) for f in opts.extra)}, "
                         f"{opts.extra_weight:g} of the training items")
        dataset = CaseDataset(len(loaded), lambda i: loaded[i],
                              training_transform(prep.patch_shape, image_keys=task.image_keys,
                                                 label_keys=task.label_keys, recipe=opts.augmentation),
                              cache_size=0)
        workers = opts.workers if opts.workers is not None else (0 if device.type == "cpu" else 2)

        def make_batches(start: int):
            if extras:
                sampler = MixedBatchSampler(len(cases), len(extras), opts.batch_size, opts.iterations,
                                            weight=opts.extra_weight, seed=opts.seed, start_step=start,
                                            rank=ctx.rank, world_size=ctx.world_size)
            else:
                sampler = StepBatchSampler(len(cases), opts.batch_size, opts.iterations, seed=opts.seed,
                                           start_step=start, rank=ctx.rank, world_size=ctx.world_size)
            return DataLoader(dataset, batch_sampler=sampler, num_workers=workers)

        def loss_fn(net, batch, generator):  # noqa: ARG001 (no randomness in the loss)
            if opts.mode != "mlp":
                # Full fine-tuning, or a probe: the task's loss on the network's (or the head's) output,
                # with whatever target the task has (class labels, or landmark heatmaps).
                return task.loss(net(batch["image"]), batch)
            # The pixel-MLP ensemble (segmentation only): the mean of every member's loss on its pixels.
            outputs = net.training_outputs(batch["image"], batch["label"], seed=int(batch["seed"].sum()))
            return sum(task.loss(logits, {"label": label}) for logits, label in outputs) / len(outputs)

        settings = LoopSettings(total_steps=opts.iterations, learning_rate=opts.learning_rate,
                                weight_decay=opts.weight_decay, optimizer="adam", schedule="cosine",
                                warmup_steps=min(20, opts.iterations // 10), ema_decay=0.99,
                                checkpoint_every=opts.checkpoint_every, seed=opts.seed)

        def make_config(step: int, weights) -> dict:  # noqa: ARG001 (the config states no measurement)
            return {
                "kind": task.kind, "dims": dims, "preprocessing": prep.to_dict(),
                # Probing keeps the backbone whole (its head is in "probe"); full mode has its new output layer.
                "network": (net_cfg if probe is None else base_net).to_dict(),
                "timestep": opts.timestep, "task": task.describe(), "mode": opts.mode,
                **({"probe": probe} if probe else {}),
                "training": {"step": step, "iterations": opts.iterations, "batch_size": opts.batch_size,
                             "learning_rate": opts.learning_rate, "weight_decay": opts.weight_decay,
                             "seed": opts.seed, "augmentation": opts.augmentation, "cases": [c.name for c in cases],
                             "init": "pretrained" if pretrained else "random",
                             "pretrained": str(opts.pretrained) if opts.pretrained else None,
                             "grid_spacing": grid_spacing,
                             **({"extra": [str(f) for f in opts.extra], "extra_cases": len(extras),
                                 "extra_weight": opts.extra_weight} if extras else {})},
                "created_by": f"diffusionseg {__version__}",
            }

        summary = train(model=model, loss_fn=loss_fn, make_batches=make_batches, settings=settings,
                        out_dir=opts.out, run_dir=run_dir, make_config=make_config, ctx=ctx, device=device,
                        precision=precision, reporter=reporter, resume=opts.resume, batch_images=opts.batch_size,
                        fast=fast, dims=dims)
        summary.update(out=str(opts.out), cases=len(cases), task=task.kind,
                       **({"extra_cases": len(extras)} if extras else {}))
        reporter.done(**summary)
        return summary
