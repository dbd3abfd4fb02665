"""PretrainOptions, torch-free: the command line reads its defaults here without importing the training code.

Every default of ``diffusionseg pretrain`` is stated once, in this dataclass; fields typed
``Annotated[str, <choice list>]`` take their values from the vocabulary's list, which argparse
offers as ``choices`` (Testing/Python/test_option_defaults.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from ..vocabulary import (AUTO_MODALITIES, AUTO_MODALITY, DEFAULT_PRETRAIN_ITERATIONS, OBJECTIVES, PRECISIONS,
                          PROGRESS_MODES, SCHEDULES, Objective, Precision, Progress, Schedule)


@dataclass
class PretrainOptions:
    """Options of ``diffusionseg pretrain``; sizes in (x, y[, z]) order."""

    images: Path
    out: Path
    dims: int | None = None
    preset: str | None = None          # None: nets.presets.DEFAULT_PRESETS (2D small, 3D tiny)
    iterations: int = DEFAULT_PRETRAIN_ITERATIONS
    batch_size: int = 8
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    image_size: list[int] | None = None
    spacing: list[float] | None = None
    patch_size: list[int] | None = None
    modality: Annotated[str, AUTO_MODALITIES] = AUTO_MODALITY
    timesteps: int = 1000
    schedule: Annotated[str, SCHEDULES] = Schedule.LINEAR_BETA.value
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    warmup_steps: int = 100
    checkpoint_every: int = 500
    augment: bool = True
    resume: bool = False
    overwrite: bool = False
    seed: int = 0
    device: str = "auto"
    precision: Annotated[str, PRECISIONS] = Precision.AUTO.value
    fast: bool = False                  # channels-last, torch.compile, bf16 also on a CPU (nets/fast.py)
    workers: int | None = None
    progress: Annotated[str, PROGRESS_MODES] = Progress.BAR.value
    objective: Annotated[str, OBJECTIVES] = Objective.DDPM.value   # 'masked': the masked-image-modelling baseline
    coordinates: str | None = None      # coordinate channels: None, "position", "bpr:<model>"
    extra: dict = field(default_factory=dict)
