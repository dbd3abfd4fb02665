"""FinetuneOptions, torch-free: the command line reads its defaults here without importing the training code.

Every default of ``diffusionseg finetune`` (and of selftrain's fine-tuning) is stated once,
in this dataclass; fields typed ``Annotated[str, <choice list>]`` take their values from
the vocabulary's list, which argparse offers as ``choices`` (Testing/Python/test_option_defaults.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from ..vocabulary import (AUGMENTATIONS, AUTO_MODALITIES, AUTO_MODALITY, DEFAULT_AUGMENTATION,
                          DEFAULT_FINETUNE_ITERATIONS, FINETUNE_MODES, PRECISIONS, PROGRESS_MODES, TASKS, FinetuneMode,
                          Precision, Progress)


@dataclass
class FinetuneOptions:
    """Options of ``diffusionseg finetune``; sizes in (x, y[, z]) order."""

    task: Annotated[str, TASKS]
    images: Path
    annotations: Path
    out: Path
    pretrained: Path | None = None     # None: random initialisation (the baseline)
    # full: fine-tune the whole U-Net (PTDR); probe: frozen U-Net features at `probe_timesteps`
    # read by a small conv head; mlp: the same features read by a pixel-MLP ensemble.
    mode: Annotated[str, FINETUNE_MODES] = FinetuneMode.FULL.value
    probe_timesteps: list[int] | None = None   # None: probe.network.DEFAULT_TIMESTEPS
    noise_seed: int = 0
    mlp_members: int = 10
    probe_hidden: int = 64
    classes: list[str] | None = None
    landmark_names: list[str] | None = None
    iterations: int = DEFAULT_FINETUNE_ITERATIONS
    batch_size: int = 4
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    timestep: int = 0
    dice_weight: float = 1.0
    sigma_mm: float | None = None
    augmentation: Annotated[str, AUGMENTATIONS] = DEFAULT_AUGMENTATION     # data/augment.py
    # Training patch (3D); with a pretrained model its patch unless given: the U-Net is
    # convolutional, so a patch that covers a whole small volume (nnU-Net's choice for
    # hippocampus crops) gives more context and fewer windows at prediction.
    patch_size: list[int] | None = None
    # Used only without --pretrained (otherwise the pretrained model decides):
    preset: str | None = None          # None: nets.presets.DEFAULT_PRESETS (2D small, 3D tiny)
    image_size: list[int] | None = None
    spacing: list[float] | None = None
    modality: Annotated[str, AUTO_MODALITIES] = AUTO_MODALITY
    coordinates: str | None = None
    # Extra labeled cases (synthesize / selftrain output, or any images/ + labels/ folder),
    # a fraction `extra_weight` of the training items (see finetune/extra.py).
    extra: list[Path] = field(default_factory=list)
    extra_weight: float = 0.5
    checkpoint_every: int = 100
    resume: bool = False               # continue the interrupted run in `out` (as pretrain --resume)
    overwrite: bool = False
    seed: int = 0
    device: str = "auto"
    precision: Annotated[str, PRECISIONS] = Precision.AUTO.value
    fast: bool = False                 # channels-last, torch.compile, bf16 also on a CPU (nets/fast.py)
    workers: int | None = None
    progress: Annotated[str, PROGRESS_MODES] = Progress.BAR.value
