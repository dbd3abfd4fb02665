"""The DDPM noise-prediction objective (Ho et al. 2020) with MONAI's DDPMScheduler."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from monai.networks.schedulers import DDPMScheduler

from ..errors import UserError
from ..vocabulary import SCHEDULES, Schedule


@dataclass
class DiffusionConfig:
    """The noise schedule; saved with every model so sampling repeats training.

    The papers used 500 to 4000 steps (PTDR: 4000; the landmark paper: 1000).
    """

    num_train_timesteps: int = 1000
    schedule: str = Schedule.LINEAR_BETA.value

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DiffusionConfig":
        return cls(**data)

    def validate(self) -> None:
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown noise schedule '{self.schedule}'.", fix=f"use one of {', '.join(SCHEDULES)}.")
        if not 10 <= self.num_train_timesteps <= 100_000:
            raise UserError(f"{self.num_train_timesteps} diffusion steps is out of range.",
                            fix="use --timesteps between 10 and 100000 (the papers used 500 to 4000).")


def make_scheduler(config: DiffusionConfig) -> DDPMScheduler:
    """MONAI's DDPMScheduler for ``config`` (epsilon prediction, samples clipped to [-1, 1])."""
    config.validate()
    return DDPMScheduler(num_train_timesteps=config.num_train_timesteps, schedule=config.schedule)


def item_generators(seeds: torch.Tensor) -> list[torch.Generator]:
    """One CPU generator per batch item, seeded by the sampler's per-item seed.

    Why per item: the noise an image receives then depends only on its place in the
    run, not on which process or batch slot it landed in, so a resumed run and a
    run split over K processes draw exactly the noise a single uninterrupted run does.
    """
    return [torch.Generator().manual_seed(int(s) * 2 + 1) for s in seeds.tolist()]


def ddpm_loss(model: torch.nn.Module, scheduler: DDPMScheduler, images: torch.Tensor, seeds: torch.Tensor,
              condition: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error between true and predicted noise at uniform random timesteps.

    Args:
        images: clean images ``(N, 1, *S)`` in [-1, 1], ``S`` = ``(H, W)`` or ``(D, H, W)``.
        seeds: ``(N,)`` integer seeds, one per image, for its noise and timestep (drawn on
            the CPU so a run repeats exactly on any device).
        condition: optional extra input channels ``(N, K, *S)`` (for example anatomical
            coordinates), concatenated to the noisy image and never noised.
    Returns:
        scalar loss.
    """
    generators = item_generators(seeds)
    noise = torch.stack([torch.randn(images.shape[1:], generator=g) for g in generators]).to(images.device)
    timesteps = torch.cat([torch.randint(0, scheduler.num_train_timesteps, (1,), generator=g)
                           for g in generators]).to(images.device)
    noisy = scheduler.add_noise(original_samples=images, noise=noise, timesteps=timesteps)
    if condition is not None:
        noisy = torch.cat([noisy, condition], dim=1)
    predicted = model(noisy, timesteps)
    return F.mse_loss(predicted.float(), noise.float())
