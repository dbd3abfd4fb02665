"""Trainable readers of frozen features: a small convolutional head and a pixel-MLP ensemble."""

from __future__ import annotations

import torch
from torch import nn


def _conv(dims: int):
    return nn.Conv2d if dims == 2 else nn.Conv3d


def _groups(channels: int) -> int:
    return next(g for g in (16, 8, 4, 2, 1) if channels % g == 0)


class ConvHead(nn.Module):
    """``(N, F, *S) -> (N, C, *S)``: 1x1 reduction, a 3x3 convolution (GroupNorm, SiLU each), 1x1 classifier.

    The probing paper's "small non-linear convolutional head": unlike a per-pixel reader,
    it sees a neighbourhood, so it can smooth boundaries the features leave ragged. The
    1x1 reduction first keeps it cheap: F is several hundred channels at full resolution.
    """

    def __init__(self, dims: int, in_channels: int, out_channels: int, hidden: int = 64):
        super().__init__()
        conv = _conv(dims)
        self.net = nn.Sequential(
            conv(in_channels, hidden, 1), nn.GroupNorm(_groups(hidden), hidden), nn.SiLU(),
            conv(hidden, hidden, 3, padding=1), nn.GroupNorm(_groups(hidden), hidden), nn.SiLU(),
            conv(hidden, out_channels, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class PixelMLPEnsemble(nn.Module):
    """Baranchuk et al.'s reader: K independent per-pixel MLPs, their class probabilities averaged.

    Each member is Linear-ReLU-BatchNorm, Linear-ReLU-BatchNorm, Linear (hidden 128 and 32
    in the paper), written as 1x1 convolutions so it runs on whole images. ``forward``
    returns the log of the mean probability ``(N, C, *S)``, so an arg-max and a softmax
    downstream behave as for any logits; ``member_logits`` gives each member's own logits
    ``(K, N, C, *S)`` for training (every member learns on its own, as in the paper).
    Training reads a random sample of pixels, as the paper does (whole 3D patches through
    ten MLPs would cost more than the backbone).
    """

    def __init__(self, dims: int, in_channels: int, out_channels: int, members: int = 10,
                 hidden: tuple[int, int] = (128, 32)):
        super().__init__()
        conv = _conv(dims)
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        self.members = nn.ModuleList(nn.Sequential(
            conv(in_channels, hidden[0], 1), nn.ReLU(), norm(hidden[0]),
            conv(hidden[0], hidden[1], 1), nn.ReLU(), norm(hidden[1]),
            conv(hidden[1], out_channels, 1)) for _ in range(members))

    def member_logits(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(features) for m in self.members])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        probabilities = self.member_logits(features).float().softmax(dim=2).mean(0)
        return probabilities.clamp_min(1e-8).log()
