"""CurveOptions, torch-free: the command line reads its defaults here without importing the training code.

Every default of ``diffusionseg curve`` is stated once, in this dataclass (the plan's in
:mod:`.plan`); Testing/Python/test_option_defaults.py checks the command line against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from ..vocabulary import PRECISIONS, PROGRESS_MODES, TASKS, Precision, Progress
from .plan import DEFAULT_FOLDS, DEFAULT_ITERATIONS


@dataclass
class CurveOptions:
    task: Annotated[str, TASKS]
    pretrained: Path
    images: Path
    annotations: Path              # --labels or --landmarks
    out: Path
    sizes: list[int] | None = None
    folds: int = DEFAULT_FOLDS
    iterations: int = DEFAULT_ITERATIONS
    metric: str | None = None      # dice (default) or iou for segmentation; mre for landmarks
    batch_size: int = 4
    learning_rate: float = 1e-3
    classes: list[str] | None = None
    landmark_names: list[str] | None = None
    seed: int = 0
    device: str = "auto"
    precision: Annotated[str, PRECISIONS] = Precision.AUTO.value
    progress: Annotated[str, PROGRESS_MODES] = Progress.BAR.value
    command: str = ""              # the command line, recorded in curve.json
