"""DDPM pretraining on a folder of unlabeled images: the backbone every task starts from."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .. import __version__
from ..data.augment import training_transform
from ..data.choose import choose_preprocessing
from ..data.datasets import CaseDataset, unlabeled_image_loader
from ..data.preprocess import Preprocessing
from ..diffusion import DiffusionConfig, ddpm_loss, make_scheduler
from ..diffusion.pretext import OBJECTIVES, masked_image_loss
from ..errors import UserError
from ..imageio import check_same_dims, list_images
from ..imageio.verify import verify_images
from ..nets import NetworkConfig, build_unet, network_config
from ..nets.presets import PRETRAIN_PRESETS
from ..nets.fast import FastOptions
from ..training.checkpoint import STATE_NAME, load_model_config
from ..training.distributed import rank_share
from ..training.guard import prepare_out_dir
from ..training.loop import LoopSettings, train
from ..training.progress import new_run_dir
from ..training.runtime import training_runtime
from .options import PretrainOptions  # noqa: F401  (stated there, torch-free; imported from here too)


def pretrain(opts: PretrainOptions, trained: list | None = None) -> dict:
    """Pretrain a diffusion U-Net on ``opts.images`` and write the model folder ``opts.out``.

    Args:
        trained: if given, this process's trained network (raw, not EMA) is appended to
            it; the distributed test compares them across ranks.
    Returns:
        the run's summary (steps, seconds, images per second, final loss, peak memory).
    """
    opts.out = Path(opts.out)
    fast = FastOptions.choose(opts.fast)
    with training_runtime("pretrain", opts.out, opts.device, fast.precision(opts.precision), opts.progress) as (
            reporter, ctx, guard, device, precision):
        paths = list_images(opts.images)
        dims = check_same_dims(paths)
        if opts.dims is not None and opts.dims != dims:
            raise UserError(f"--dims {opts.dims} was given but the images are {dims}D.", path=opts.images,
                            fix=f"use --dims {dims}, or point --images at {opts.dims}D images.")
        verify_images(paths, dims, log=reporter.log)
        if ctx.is_main:
            guard.created, _ = prepare_out_dir(opts.out, resume=opts.resume, overwrite=opts.overwrite)
        ctx.barrier()
        # A run interrupted before its first checkpoint starts again (see prepare_out_dir).
        opts.resume = opts.resume and (opts.out / STATE_NAME).is_file()
        if opts.resume:
            previous = load_model_config(opts.out)
            net_cfg = NetworkConfig.from_dict(previous.network.to_dict())
            diffusion = DiffusionConfig.from_dict(previous.diffusion.to_dict())
            prep = Preprocessing.from_dict(previous.preprocessing.to_dict())
            # Resuming means repeating the interrupted run: its data settings win over today's flags.
            before = previous.training
            opts.batch_size, opts.learning_rate = before.batch_size, before.learning_rate
            opts.seed, opts.augment = before.seed, before.augment
        else:
            net_cfg = network_config(opts.preset, dims)
            if net_cfg.is_plain:
                raise UserError("preset 'plain' is a U-Net without the timestep input a denoiser needs, so it "
                                "cannot be pretrained.",
                                fix=f"pretrain with --preset {' or '.join(PRETRAIN_PRESETS)}; or train the plain U-Net "
                                    "directly: diffusionseg finetune --init random --preset plain.")
            diffusion = DiffusionConfig(num_train_timesteps=opts.timesteps, schedule=opts.schedule)
            prep = choose_preprocessing(dims, paths[0], net_cfg, modality=opts.modality, image_size=opts.image_size,
                                        spacing=opts.spacing, patch_size=opts.patch_size,
                                        coordinates=opts.coordinates)
            net_cfg.in_channels = prep.input_channels  # the image plus any coordinate channels
        diffusion.validate()
        objective = previous.pretrain_objective if opts.resume else opts.objective
        if objective not in OBJECTIVES:
            raise UserError(f"unknown objective '{objective}'.",
                            fix=f"use --objective with one of {', '.join(OBJECTIVES)}.")
        rank_share(opts.batch_size, ctx)  # refused now, not by the sampler at the first step
        torch.manual_seed(opts.seed)  # the initial weights
        model = build_unet(net_cfg)
        scheduler = make_scheduler(diffusion)
        run_dir = new_run_dir(opts.out / "runs", "pretrain")
        if ctx.is_main:
            reporter.attach(run_dir / "events.jsonl")
        reporter.log(f"pretraining on {len(paths)} {dims}D images, preset {net_cfg.preset}, patch {prep.patch_size}, "
                     f"{device} {precision.name}, {ctx.world_size} process(es)")

        dataset = CaseDataset(len(paths), unlabeled_image_loader(paths, prep),
                              training_transform(prep.patch_shape, recipe="mild" if opts.augment else "none"))
        workers = opts.workers if opts.workers is not None else (0 if device.type == "cpu" else 4)

        def make_batches(start: int):
            from ..data.sampler import StepBatchSampler

            sampler = StepBatchSampler(len(paths), opts.batch_size, opts.iterations, seed=opts.seed,
                                       start_step=start, rank=ctx.rank, world_size=ctx.world_size)
            return DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                              pin_memory=device.type == "cuda", persistent_workers=False)

        def loss_fn(net, batch, generator):  # noqa: ARG001 (noise comes from the per-item seeds)
            # Channel 0 is the image (noised or masked); any others are coordinates (conditioning, kept clean).
            image, condition = batch["image"][:, :1], batch["image"][:, 1:]
            condition = condition if condition.shape[1] else None
            if objective == "masked":
                return masked_image_loss(net, image, batch["seed"], condition=condition)
            return ddpm_loss(net, scheduler, image, batch["seed"], condition=condition)

        settings = LoopSettings(total_steps=opts.iterations, learning_rate=opts.learning_rate,
                                weight_decay=opts.weight_decay,
                                warmup_steps=min(opts.warmup_steps, opts.iterations // 5),
                                grad_clip=opts.grad_clip, ema_decay=opts.ema_decay,
                                checkpoint_every=opts.checkpoint_every, seed=opts.seed)

        def make_config(step: int, weights) -> dict:  # noqa: ARG001 (the config states no measurement)
            return {
                "kind": "pretrained",
                "objective": objective,
                "dims": dims,
                "network": net_cfg.to_dict(),
                "diffusion": diffusion.to_dict(),
                "preprocessing": prep.to_dict(),
                "training": {"step": step, "iterations": opts.iterations, "batch_size": opts.batch_size,
                             "learning_rate": opts.learning_rate, "seed": opts.seed, "images": len(paths),
                             "augment": opts.augment},
                "created_by": f"diffusionseg {__version__}",
            }

        summary = train(model=model, loss_fn=loss_fn, make_batches=make_batches, settings=settings,
                        out_dir=opts.out, run_dir=run_dir, make_config=make_config, ctx=ctx, device=device,
                        precision=precision, reporter=reporter, resume=opts.resume, batch_images=opts.batch_size,
                        fast=fast, dims=dims)
        if trained is not None:
            trained.append(model)
        summary.update(out=str(opts.out), device=str(device), precision=precision.name, world_size=ctx.world_size)
        reporter.done(**summary)
        return summary
