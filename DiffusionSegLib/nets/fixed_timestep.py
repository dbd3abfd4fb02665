"""A diffusion U-Net run at one fixed timestep: the task network's form, as finetune trains it and predict runs it.

It is a network, not a fine-tuning step, so predict builds it from config.json without importing finetune.
"""

from __future__ import annotations

import torch
from torch import nn


class FixedTimestepUNet(nn.Module):
    """``(N, C_in, *S) -> (N, C_out, *S)``: a DiffusionModelUNet evaluated at ``timestep``."""

    def __init__(self, unet: nn.Module, timestep: int):
        super().__init__()
        self.unet = unet
        self.timestep = int(timestep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.full((x.shape[0],), self.timestep, device=x.device, dtype=torch.long)
        return self.unet(x, t)
