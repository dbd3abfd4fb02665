"""SuggestOptions, torch-free: the command line reads its defaults here without importing the feature code.

Every default of ``diffusionseg suggest`` is stated once, in this dataclass (the strategy list and
the mix weight in :mod:`.select`); Testing/Python/test_option_defaults.py checks the command line
against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from ..vocabulary import PRECISIONS, PROGRESS_MODES, Precision, Progress
from .select import STRATEGIES, UNCERTAINTY_WEIGHT

#: What ``--strategy auto`` is before any label exists (benchmarks/results/suggest: k-medoids covers the pool
#: better than k-centre in every space measured).
COLD_START_DEFAULT = "kmedoids"


@dataclass
class SuggestOptions:
    model: Path
    images: Path
    count: int
    out: str | Path                  # a folder (suggestions.json/.csv inside) or a file prefix
    labels: Path | None = None       # segmentation annotations: the cases they name are labeled
    landmarks: Path | None = None    # landmark annotations
    strategy: Annotated[str, STRATEGIES] = "auto"
    uncertainty_weight: float = UNCERTAINTY_WEIGHT
    cache_dir: Path | None = None    # default MODEL/cache/suggest
    seed: int = 0
    device: str = "auto"
    precision: Annotated[str, PRECISIONS] = Precision.AUTO.value
    progress: Annotated[str, PROGRESS_MODES] = Progress.BAR.value
