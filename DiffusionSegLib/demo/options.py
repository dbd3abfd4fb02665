"""DemoOptions, torch-free: the command line reads its defaults here without importing the pipeline.

Every default of ``diffusionseg demo`` is stated once, in this dataclass;
Testing/Python/test_option_defaults.py checks the command line against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from ..vocabulary import PROGRESS_MODES, Progress


@dataclass
class DemoOptions:
    out: Path
    cases: int = 24
    labeled: int = 5
    size: int = 64
    pretrain_iterations: int = 400
    finetune_iterations: int = 200
    device: str = "auto"
    progress: Annotated[str, PROGRESS_MODES] = Progress.BAR.value
    seed: int = 0
