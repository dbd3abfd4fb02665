"""The optimisation loop shared by pretraining, fine-tuning and body-part regression.

What it owns: optimiser steps with mixed precision and gradient clipping, EMA, the
learning-rate schedule, DistributedDataParallel, progress events, the loss curve,
atomic checkpoints (rank 0 only) and exact resume. What it does not know: the data
and the loss, which the caller passes in.

Every random draw of step ``s`` comes from generators seeded by ``(seed, s, rank)``
(noise, timesteps) or by the sampler (data order, augmentation), so a resumed run
repeats an uninterrupted one exactly without storing generator states.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ..errors import UserError
from ..nets.fast import FastOptions
from .checkpoint import load_training_state, save_model, save_training_state
from .curves import LossLog
from .device import Precision
from .distributed import DistContext
from .ema import EMA
from .progress import Reporter

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor], torch.Generator], torch.Tensor]


@dataclass
class LoopSettings:
    total_steps: int
    learning_rate: float
    weight_decay: float = 0.0
    optimizer: str = "adamw"          # 'adamw' | 'adam'
    schedule: str = "constant"        # 'constant' | 'cosine', both after a linear warm-up
    warmup_steps: int = 0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    seed: int = 0

    def lr_at(self, step: int) -> float:
        if self.warmup_steps and step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        if self.schedule == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return self.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))
        return self.learning_rate


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The CPU generator for step ``step`` on ``rank``."""
    g = torch.Generator()
    g.manual_seed(int(np.random.default_rng([seed, 2, step, rank]).integers(0, 2**62)))
    return g


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def train(*, model: torch.nn.Module, loss_fn: LossFn, make_batches: Callable[[int], Iterable[dict]],
          settings: LoopSettings, out_dir: Path, run_dir: Path,
          make_config: Callable[[int, dict[str, torch.Tensor]], dict],
          ctx: DistContext, device: torch.device, precision: Precision, reporter: Reporter,
          resume: bool, batch_images: int, fast: FastOptions = FastOptions(), dims: int = 2) -> dict:
    """Train ``model`` for ``settings.total_steps`` steps and keep its checkpoints in ``out_dir``.

    Args:
        make_batches: ``start_step -> iterable`` of this rank's batches for steps
            ``start_step .. total_steps - 1``, tensors on the CPU.
        make_config: ``(step, weights) -> config dict`` written as the model's config.json beside
            ``weights`` (the EMA weights saved as model.safetensors), for a config that
            records something measured with them (bpr's score range).
        run_dir: where events.jsonl, loss.csv and loss.png go.
        resume: continue from ``out_dir/training_state.safetensors``.
        batch_images: images per step over all ranks (for the throughput figure).
        fast: channels-last and torch.compile of the forward and backward (nets/fast.py; its mixed
            precision is already in ``precision``); ``dims``: the images' spatial dimensions.
    Returns:
        summary: steps, seconds, images per second, final loss, peak memory.
    """
    fast.in_memory_format(model.to(device), dims)   # before the optimiser and the EMA take the parameters
    opt_cls = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scaler = precision.grad_scaler()
    ema = EMA(model, settings.ema_decay)
    start = 0
    log = LossLog()
    if resume:
        state = load_training_state(out_dir)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        start = state["step"]
        log = LossLog(state["extra"].get("loss_rows", []))
        if start >= settings.total_steps:
            raise UserError(f"this run already finished its {start} steps.", path=out_dir,
                            fix=f"pass --iterations larger than {start} to train longer.")
    net: torch.nn.Module = model
    if ctx.enabled:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    net = fast.compiled(net)   # around DDP, as PyTorch recommends, so its gradient hooks stay outside the graph

    def checkpoint(step: int) -> None:
        if ctx.is_main:
            # The model (weights, then config.json) before the training state: a folder with a
            # training state always has the config that --resume reads, whenever a kill -9 lands.
            save_model(out_dir, make_config(step, ema.state_dict()), ema.state_dict())
            save_training_state(out_dir, step=step, model=model.state_dict(), ema=ema.state_dict(),
                                optimizer=optimizer, scaler=scaler, extra={"loss_rows": log.rows})
            log.write(run_dir / "loss.csv", run_dir / "loss.png", title=f"{reporter.stage} loss")
            reporter.emit("checkpoint", step=step, path=str(out_dir))
        ctx.barrier()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    reporter.start(settings.total_steps, start_step=start, out=str(out_dir), device=str(device),
                   precision=precision.name)
    t0 = time.monotonic()
    step = start
    loss_value = float("nan")
    net.train()
    try:
        for batch in make_batches(start):
            lr = settings.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = {k: fast.inputs(v.to(device, non_blocking=True)) for k, v in batch.items()}
            with precision.autocast():
                loss = loss_fn(net, batch, step_generator(settings.seed, step, ctx.rank))
            if not torch.isfinite(loss):
                raise UserError(f"the loss became {loss.item()} at step {step}.",
                                fix="lower --learning-rate, or use --precision fp32.")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            ema.update(model, step)
            step += 1
            loss_value = loss.item()
            log.add(step, loss_value, lr, time.monotonic() - t0)
            reporter.progress(step, settings.total_steps, loss=round(loss_value, 5), lr=lr)
            if step % settings.checkpoint_every == 0 or step == settings.total_steps:
                checkpoint(step)
    except RuntimeError as exc:
        if is_out_of_memory(exc):
            raise UserError(f"out of memory on {device} at {batch_images} images per step.",
                            fix="lower --batch-size or the image/patch size, or choose a smaller --preset.") from exc
        raise
    seconds = time.monotonic() - t0
    done_steps = step - start
    summary = {
        "steps": step,
        "seconds": round(seconds, 2),
        "images_per_s": round(done_steps * batch_images / seconds, 3) if seconds > 0 else None,
        "final_loss": loss_value,
        "peak_memory_mb": (round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                           if device.type == "cuda" else None),
    }
    return summary
