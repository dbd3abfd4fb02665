"""The slice regressor: a small 2D CNN that gives an axial slice one body-height score."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..errors import UserError


@dataclass
class BprNetConfig:
    """Network shape, saved in the model's config.json.

    Attributes:
        channels: output channels of each block; every block halves the resolution.
        slice_size: in-plane input size (x, y); slices are resampled to it.
    """

    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 64])
    slice_size: list[int] = field(default_factory=lambda: [64, 64])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BprNetConfig:
        try:
            cfg = cls(channels=[int(c) for c in data["channels"]], slice_size=[int(s) for s in data["slice_size"]])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"invalid BPR network configuration {data!r}.",
                            fix="use a model folder written by `diffusionseg bpr train`.") from exc
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if not self.channels or min(self.channels) < 1:
            raise UserError(f"BPR channels must be positive, got {self.channels}.", fix="give e.g. 16 32 64 64.")
        if len(self.slice_size) != 2 or min(self.slice_size) < 2 ** len(self.channels):
            raise UserError(f"--slice-size {self.slice_size} is too small for {len(self.channels)} "
                            f"downsampling blocks.", fix=f"give two sizes of at least {2 ** len(self.channels)}.")


def _groups(channels: int) -> int:
    """The largest of 8, 4, 2, 1 that divides ``channels`` (GroupNorm needs a divisor)."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class _Block(nn.Sequential):
    """Stride-2 conv then a 3x3 conv, each followed by GroupNorm and SiLU: ``(N, Ci, H, W) -> (N, Co, H/2, W/2)``."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(_groups(c_out), c_out), nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(_groups(c_out), c_out), nn.SiLU(),
        )


class BprNet(nn.Module):
    """Axial slices ``(N, 1, H, W)`` (normalised to [-1, 1]) -> scores ``(N,)``.

    GroupNorm, not BatchNorm: a batch holds a few volumes' slices, which are far from
    independent, and a score must not depend on the other slices in the batch.
    """

    def __init__(self, config: BprNetConfig):
        super().__init__()
        config.validate()
        self.config = config
        widths = [1, *config.channels]
        self.features = nn.Sequential(*[_Block(a, b) for a, b in zip(widths, widths[1:])])
        self.head = nn.Linear(widths[-1], 1)

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        features = self.features(slices).mean(dim=(2, 3))  # global average pool: (N, C)
        return self.head(features).squeeze(1)
