"""SynthesizeOptions and SelftrainOptions, torch-free: the command line reads their defaults here.

Every default of ``diffusionseg synthesize`` and ``selftrain`` is stated once, in these
dataclasses (selftrain's fine-tuning in FinetuneOptions); Testing/Python/test_option_defaults.py
checks the command line against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from ..finetune.options import FinetuneOptions
from ..vocabulary import CONFIDENCE_MEASURES, PRECISIONS, PROGRESS_MODES, Precision, Progress


@dataclass
class SynthesizeOptions:
    pretrained: Path          # the DDPM model that draws the images
    model: Path               # the fine-tuned model that labels them
    out: Path
    count: int = 16
    steps: int = 50           # DDIM steps
    batch_size: int = 8
    min_confidence: float | None = None    # None: DEFAULT_MIN_CONFIDENCE of the task
    measure: Annotated[str | None, CONFIDENCE_MEASURES] = None   # None: the task's first measure
    keep_rejected: bool = True             # write the rejected cases to rejected/ too
    overlap: float = 0.5
    seed: int = 0
    device: str = "auto"
    precision: Annotated[str, PRECISIONS] = Precision.AUTO.value
    progress: Annotated[str, PROGRESS_MODES] = Progress.BAR.value


@dataclass
class SelftrainOptions:
    finetune: FinetuneOptions        # the fine-tuning of every round (its out is the final model)
    rounds: int = 1
    min_confidence: float | None = None
    measure: Annotated[str | None, CONFIDENCE_MEASURES] = None
    overlap: float = 0.5
