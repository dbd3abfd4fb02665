"""SampleOptions, torch-free: ``diffusionseg sample``'s defaults, stated once.

The command line reads them here without importing torch; ``draw.sample_model`` takes its keyword
defaults from the same fields (Testing/Python/test_option_defaults.py checks the command line).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from ..vocabulary import PRECISIONS, PROGRESS_MODES, SAMPLERS, Precision, Progress, Sampler


@dataclass
class SampleOptions:
    model: Path
    out: Path
    count: int = 16
    steps: int = 100                # DDIM steps; ddpm runs the whole chain
    method: Annotated[str, SAMPLERS] = Sampler.DDIM.value
    seed: int = 0
    device: str = "auto"
    precision: Annotated[str, PRECISIONS] = Precision.AUTO.value
    progress: Annotated[str, PROGRESS_MODES] = Progress.BAR.value
