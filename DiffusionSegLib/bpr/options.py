"""BprOptions and BprPredictOptions, torch-free: the command line reads its defaults here without importing torch.

Every default of ``diffusionseg bpr train`` and ``bpr predict`` is stated once, in these
dataclasses (Testing/Python/test_option_defaults.py checks the command line against them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from ..vocabulary import PRECISIONS, PROGRESS_MODES, Modality, Precision, Progress


@dataclass
class BprOptions:
    """Options of ``diffusionseg bpr train``; ``slice_size`` in (x, y) order.

    Attributes:
        batch_size: volumes per step; each gives ``slices`` slices, so a step scores
            ``batch_size * slices`` slices.
        slices: m, the slices taken from one volume at equal gaps (Yan et al. use 8).
        distance_weight: weight of the equal-spacing loss against the order loss.
        resume: continue the interrupted run in ``out`` (as pretrain and finetune --resume).
    """

    images: Path
    out: Path
    iterations: int = 2000
    batch_size: int = 4
    slices: int = 8
    slice_size: list[int] = field(default_factory=lambda: [64, 64])
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 64])
    learning_rate: float = 1e-3
    distance_weight: float = 1.0
    grad_clip: float = 1.0
    modality: str = Modality.CT.value
    checkpoint_every: int = 500
    resume: bool = False
    seed: int = 0
    overwrite: bool = False
    device: str = "auto"
    precision: Annotated[str, PRECISIONS] = Precision.AUTO.value
    progress: Annotated[str, PROGRESS_MODES] = Progress.BAR.value


@dataclass
class BprPredictOptions:
    """Options of ``diffusionseg bpr predict``."""

    model: Path
    images: Path
    out: Path
    volume: bool = False
    device: str = "auto"
    progress: Annotated[str, PROGRESS_MODES] = Progress.BAR.value
