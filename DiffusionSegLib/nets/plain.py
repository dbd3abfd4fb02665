"""Preset plain: MONAI's BasicUNet, with the diffusion U-Net's call signature.

The supervised U-Net a user would train without DiffusionSeg (instance norm, LeakyReLU, four
halvings, no timestep path), offered in the product because on 3D data it has beaten the
DiffusionSeg variants measured so far (benchmarks/results/RESULTS.md). It takes the same
``(x, timesteps)`` call and names its bottleneck, decoder and output layer as the diffusion
U-Net does, so fine-tuning (``FixedTimestepUNet``), prediction and ``suggest``'s pooled
features treat both alike; the timesteps are ignored.
"""

from __future__ import annotations

import torch
from monai.networks.nets import BasicUNet
from torch import nn

from .presets import NetworkConfig


class PlainUNet(BasicUNet):
    """``(N, C_in, *S) -> (N, C_out, *S)``; every side of ``S`` at least 16 (odd sizes are padded inside)."""

    def __init__(self, config: NetworkConfig):
        super().__init__(spatial_dims=config.spatial_dims, in_channels=config.in_channels,
                         out_channels=config.out_channels, features=tuple(config.channels))
        self.out_channels = config.out_channels

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | None = None, context=None,
                class_labels=None) -> torch.Tensor:
        return super().forward(x)

    @property
    def out(self) -> nn.Module:
        """The output convolution (the diffusion U-Net's ``out``)."""
        return self.final_conv

    @property
    def middle_block(self) -> nn.Module:
        """The bottleneck, at 1/16 resolution."""
        return self.down_4

    @property
    def up_blocks(self) -> list[nn.Module]:
        """The decoder levels, coarsest first."""
        return [self.upcat_4, self.upcat_3, self.upcat_2, self.upcat_1]
