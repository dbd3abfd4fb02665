"""PredictOptions, torch-free: the command line reads its defaults here without importing the prediction code.

Every default of ``diffusionseg predict`` is stated once, in this dataclass (the
sliding-window ones in :mod:`.defaults`, with why); see Testing/Python/test_option_defaults.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from ..vocabulary import PRECISIONS, PROGRESS_MODES, Precision, Progress
from .defaults import DEFAULT_OVERLAP


@dataclass
class PredictOptions:
    model: Path
    images: Path
    out: Path
    formats: list[str] = field(default_factory=list)   # extra label-map formats besides .seg.nrrd
    overlay: bool = False
    min_confidence: float = 0.3
    overlap: float = DEFAULT_OVERLAP
    max_window_voxels: int | None = None   # None: windows of the training patch's size
    fast: bool = False   # mixed precision, channels-last, torch.compile (nets/fast.py)
    device: str = "auto"
    precision: Annotated[str, PRECISIONS] = Precision.AUTO.value
    progress: Annotated[str, PROGRESS_MODES] = Progress.BAR.value
