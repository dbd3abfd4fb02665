"""Another self-supervised pretraining of the same U-Net, as a baseline for DDPM pretraining.

Masked image modelling (SimMIM-style, for a convolutional U-Net): random square blocks
of the image are replaced by noise and the network reconstructs the image, scored on
the masked pixels. Same network, same data, same loop as DDPM pretraining; only the
objective differs, so a comparison isolates what the diffusion objective contributes
(the papers' claim that it beats other self-supervised pretraining).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..vocabulary import OBJECTIVES  # noqa: F401  (re-exported)
from .ddpm import item_generators



def block_mask(shape: tuple[int, ...], block: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """A ``shape`` (spatial) float mask, 1 on a random ``ratio`` of ``block``-sized cells."""
    cells = [max(1, s // block) for s in shape]
    coarse = (torch.rand(cells, generator=generator) < ratio).float()[None, None]
    mask = F.interpolate(coarse, size=shape, mode="nearest")[0, 0]
    return mask


def masked_image_loss(model: torch.nn.Module, images: torch.Tensor, seeds: torch.Tensor, *,
                      block: int = 8, ratio: float = 0.5, condition: torch.Tensor | None = None) -> torch.Tensor:
    """L1 reconstruction of the masked pixels.

    Args:
        images: ``(N, 1, *S)`` in [-1, 1].
        seeds: ``(N,)`` per-item seeds (masks and fill noise repeat exactly on resume).
        condition: optional extra input channels ``(N, K, *S)`` (coordinates), never masked.
    Returns:
        scalar loss.
    """
    generators = item_generators(seeds)
    spatial = tuple(images.shape[2:])
    masks = torch.stack([block_mask(spatial, block, ratio, g) for g in generators])[:, None].to(images.device)
    fill = torch.stack([torch.randn(images.shape[1:], generator=g) for g in generators]).to(images.device)
    corrupted = images * (1 - masks) + fill * masks
    # The timestep input is unused by this objective; 0 keeps the embedding constant.
    t = torch.zeros(images.shape[0], dtype=torch.long, device=images.device)
    net_in = corrupted if condition is None else torch.cat([corrupted, condition], dim=1)
    reconstruction = model(net_in, t).float()
    return (F.l1_loss(reconstruction, images.float(), reduction="none") * masks).sum() / masks.sum().clamp_min(1)
