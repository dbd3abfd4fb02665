"""Drawing new images from a pretrained denoiser: the first check that it learned the anatomy."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from ..vocabulary import SAMPLERS
from .ddpm import DiffusionConfig


def make_sampler(config: DiffusionConfig, method: str) -> DDPMScheduler | DDIMScheduler:
    """The reverse-process scheduler.

    Why DDIM by default: MONAI's DDPMScheduler.step assumes consecutive timesteps
    (it uses ``alphas_cumprod[t - 1]``), so strided DDPM sampling is wrong; DDIM
    (eta = 0) is the standard way to sample a DDPM-trained network in 50-250 steps.
    """
    if method not in SAMPLERS:
        raise ValueError(f"method must be one of {SAMPLERS}, not {method!r}")
    kwargs = dict(num_train_timesteps=config.num_train_timesteps, schedule=config.schedule)
    return DDIMScheduler(**kwargs) if method == "ddim" else DDPMScheduler(**kwargs)


@torch.no_grad()
def sample_images(model: torch.nn.Module, config: DiffusionConfig, shape: Sequence[int], *,
                  steps: int, method: str, generator: torch.Generator, device: torch.device,
                  condition: torch.Tensor | None = None,
                  on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Generate images by running the reverse diffusion process.

    Args:
        shape: ``(N, 1, H, W[, D])``.
        steps: denoising steps; with ``method='ddpm'`` it is the number of training
            steps whatever is asked (see :func:`make_sampler`).
        method: 'ddim' or 'ddpm'.
        generator: CPU generator for the initial noise and the DDPM step noise.
        condition: optional extra input channels ``(N, K, H, W[, D])``.
        on_step: called as ``on_step(done, total)`` after each step.
    Returns:
        images of ``shape`` in [-1, 1], on the CPU.
    """
    scheduler = make_sampler(config, method)
    if method == "ddpm":
        steps = config.num_train_timesteps
    scheduler.set_timesteps(num_inference_steps=min(steps, config.num_train_timesteps))
    image = torch.randn(tuple(shape), generator=generator)
    timesteps = [int(t) for t in scheduler.timesteps]
    for i, t in enumerate(timesteps):
        net_in = image.to(device)
        if condition is not None:
            net_in = torch.cat([net_in, condition.to(device)], dim=1)
        t_batch = torch.full((shape[0],), t, device=device, dtype=torch.long)
        noise_pred = model(net_in, t_batch).float().cpu()
        if method == "ddpm":
            image, _ = scheduler.step(noise_pred, t, image, generator=generator)
        else:
            image, _ = scheduler.step(noise_pred, t, image)
        if on_step is not None:
            on_step(i + 1, len(timesteps))
    return image.clamp(-1, 1)
