"""``diffusionseg bpr train``: fit the slice regressor to a folder of unlabeled CT volumes.

The optimisation is the loop pretraining and fine-tuning use (training/loop.py: mixed
precision, atomic checkpoints, exact ``--resume``, DistributedDataParallel); this module
gives it the data (bpr/volumes.py), the loss (bpr/losses.py) and the model's config, which
records the score range measured on the training volumes with the weights saved beside it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import UserError
from ..imageio import Normalisation, normalisation_for
from ..training.checkpoint import STATE_NAME, load_model_config
from ..training.device import Precision
from ..training.distributed import DistContext, rank_share
from ..training.guard import check_out_dir, prepare_out_dir
from ..training.loop import LoopSettings, train
from ..training.progress import Reporter, new_run_dir
from ..training.runtime import training_runtime
from .losses import slice_ordering_loss
from .model import BprNet, BprNetConfig
from .options import BprOptions  # stated there, torch-free; imported from here too (__all__)
from .predict import predict_slices, spearman
from .volumes import TrainingVolume, load_volumes, sample_slice_indices, step_batches, volume_paths

# sample_slice_indices lived here before volumes.py; callers and tests still import it from here.
__all__ = ["KIND", "BprOptions", "sample_slice_indices", "train_bpr"]

KIND = "bpr"


def _check_options(opts: BprOptions) -> None:
    if opts.slices < 3:
        raise UserError(f"--slices {opts.slices} is too few: the distance loss compares two gaps.",
                        fix="use --slices 3 or more (8 is the usual choice).")
    for name, value in (("--iterations", opts.iterations), ("--batch-size", opts.batch_size)):
        if value < 1:
            raise UserError(f"{name} must be positive, got {value}.", fix=f"give {name} 1 or more.")
    if not opts.learning_rate > 0:
        raise UserError(f"--learning-rate must be positive, got {opts.learning_rate}.", fix="use e.g. 1e-3.")
    BprNetConfig(channels=list(opts.channels), slice_size=list(opts.slice_size)).validate()


def _resume_settings(opts: BprOptions) -> Normalisation:
    """Resuming repeats the interrupted run: its recorded settings (network, slices, normalisation,
    batch size, learning rate, distance weight, seed) win over today's flags, as in pretrain and
    finetune --resume; only --iterations may grow. Returns the recorded normalisation."""
    before = load_model_config(opts.out)
    if before.kind != KIND:
        raise UserError(f"this folder holds a {before.kind} model, not a body-part regression run.", path=opts.out,
                        fix="resume it with the command that wrote it, or start a new run in a new --out.")
    training = before.training
    opts.channels, opts.slice_size = list(before.network.channels), list(before.network.slice_size)
    opts.slices, opts.distance_weight = training.slices, training.distance_weight
    opts.batch_size, opts.learning_rate, opts.seed = training.batch_size, training.learning_rate, training.seed
    return Normalisation.from_dict(before.preprocessing.normalisation.to_dict())


def train_bpr(opts: BprOptions) -> dict:
    """Train a body-part regressor on the 3D volumes in ``opts.images``; write the model folder ``opts.out``.

    Returns:
        the run's summary (steps, seconds, final loss, score range, per-volume Spearman).
    """
    opts.out, opts.images = Path(opts.out), Path(opts.images)
    with training_runtime("bpr-train", opts.out, opts.device, opts.precision, opts.progress) as (
            reporter, ctx, guard, device, precision):
        # Only a run that reached a checkpoint has settings to repeat; one stopped before it starts
        # again, and a folder with no run in it is refused (prepare_out_dir, once the volumes have loaded).
        resuming = opts.resume and (opts.out / STATE_NAME).is_file()
        normalisation = _resume_settings(opts) if resuming else normalisation_for(opts.modality)
        _check_options(opts)
        share = rank_share(opts.batch_size, ctx)
        check_out_dir(opts.out, resume=opts.resume, overwrite=opts.overwrite)
        volumes = load_volumes(volume_paths(opts.images), opts.slice_size, opts.slices, normalisation, reporter)
        # One output-folder policy for every training command: the model folder is written in
        # place with checkpoints that survive a kill, so that --resume has something to continue
        # (a folder staged aside and renamed at the end, as bpr train once did, would leave none).
        # It comes after the volumes have loaded, so a bad volume never costs the model --overwrite replaces.
        if ctx.is_main:
            guard.created, _ = prepare_out_dir(opts.out, resume=opts.resume, overwrite=opts.overwrite)
        ctx.barrier()
        summary = _train(volumes, opts, normalisation, _Runtime(ctx, device, precision, reporter, share), resuming)
        reporter.done(**summary)
        return summary


@dataclass
class _Runtime:
    """Where and how the run trains: its process group, device, precision, reporter and this rank's volumes per step."""
    ctx: DistContext
    device: torch.device
    precision: Precision
    reporter: Reporter
    share: int


def _train(volumes: list[TrainingVolume], opts: BprOptions, normalisation: Normalisation, run: _Runtime,
           resuming: bool) -> dict:
    """Fit the regressor with the shared loop, checkpointing into ``opts.out``; returns the run's summary."""
    torch.manual_seed(opts.seed)  # the initial weights
    net_cfg = BprNetConfig(channels=list(opts.channels), slice_size=list(opts.slice_size))
    model = BprNet(net_cfg)
    # Scores the saved weights at each checkpoint; a copy, not a second BprNet, draws no random numbers.
    scorer = copy.deepcopy(model).to(run.device)
    run_dir = new_run_dir(opts.out / "runs", "bpr-train")
    if run.ctx.is_main:
        run.reporter.attach(run_dir / "events.jsonl")
    run.reporter.log(f"bpr: {opts.iterations} steps of {opts.batch_size} volumes x {opts.slices} slices, "
                     f"slices {net_cfg.slice_size[0]}x{net_cfg.slice_size[1]}, {run.device} {run.precision.name}, "
                     f"{run.ctx.world_size} process(es)")
    last_loss = [float("nan")]
    measured: dict = {}

    def make_batches(start: int):
        return step_batches(volumes, count=run.share, m=opts.slices, seed=opts.seed, start=start,
                            stop=opts.iterations, rank=run.ctx.rank)

    def loss_fn(net, batch, generator):  # noqa: ARG001 (the batch holds every random draw)
        # In float32 whatever the autocast: the losses compare small differences of scores.
        scores = net(batch["pixels"]).float().view(batch["heights"].shape)
        loss, _ = slice_ordering_loss(scores, batch["heights"], opts.distance_weight)
        last_loss[0] = float(loss.detach())
        return loss

    def make_config(step: int, weights: dict[str, torch.Tensor]) -> dict:
        # The score range on the training volumes, with the weights saved beside this config: the
        # coordinate map scales scores by it to about [-1, 1], so every checkpoint is a usable model.
        scorer.load_state_dict(weights)
        per_volume = [predict_slices(scorer, v.pixels, run.device) for v in volumes]
        every = np.concatenate(per_volume)
        measured["score_range"] = [float(every.min()), float(every.max())]
        measured["rho"] = [spearman(v.z_mm, s) for v, s in zip(volumes, per_volume)]
        return {
            "kind": KIND,
            "network": net_cfg.to_dict(),
            "preprocessing": {"slice_size": list(net_cfg.slice_size), "normalisation": normalisation.to_dict(),
                              "orientation": "LPS"},
            "slices": opts.slices,
            "score_range": measured["score_range"],
            "training": {"step": step, "iterations": opts.iterations, "batch_size": opts.batch_size,
                         "slices": opts.slices, "learning_rate": opts.learning_rate,
                         "distance_weight": opts.distance_weight, "seed": opts.seed, "volumes": len(volumes),
                         "final_loss": last_loss[0], "train_spearman_min": float(np.nanmin(measured["rho"]))},
            "created_by": f"diffusionseg {__version__}",
        }

    # Adam at a constant rate, and the weights saved as trained (EMA decay 0), as bpr trained before
    # it shared the loop: the score ranges and the tests' thresholds were measured so.
    settings = LoopSettings(total_steps=opts.iterations, learning_rate=opts.learning_rate, optimizer="adam",
                            grad_clip=opts.grad_clip, ema_decay=0.0, checkpoint_every=opts.checkpoint_every,
                            seed=opts.seed)
    summary = train(model=model, loss_fn=loss_fn, make_batches=make_batches, settings=settings, out_dir=opts.out,
                    run_dir=run_dir, make_config=make_config, ctx=run.ctx, device=run.device,
                    precision=run.precision, reporter=run.reporter, resume=resuming,
                    batch_images=opts.batch_size * opts.slices)
    summary.update(out=str(opts.out), score_range=measured.get("score_range"), volumes=len(volumes),
                   train_spearman=[round(r, 4) for r in measured.get("rho", [])], device=str(run.device),
                   precision=run.precision.name, world_size=run.ctx.world_size)
    return summary
