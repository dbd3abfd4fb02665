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

# Defaults from the measurement in docs/CLI.md (synthesize): on held-out phantoms with added noise, foreground
# confidence >= 0.9 kept labels of mean Dice 0.90 (rejected 0.44); every landmark >= 0.7 kept MRE 13 mm (rejected 53).
DEFAULT_MIN_CONFIDENCE = {"segmentation": 0.9, "landmarks": 0.7}
#: Of the images labeled, keep at most this fraction, the most confident first (after the threshold);
#: 1: the threshold alone decides. Why a relative filter: on JSRT the absolute threshold kept every
#: pseudo-label of the real pool while the confidence still ranked them (Spearman +0.6 with the label's
#: IoU, session 10), and keeping the surest half won selftrain's validation (89.4 / 90.2 mIoU against
#: 89.3 / 89.9 at N = 1 / 2, one draw, session 11 of benchmarks/results/RESULTS.md). synthesize keeps 1:
#: no other value was measured for it.
DEFAULT_KEEP_FRACTION = {"selftrain": 0.5, "synthesize": 1.0}
#: Sliding-window overlap of pseudo-labelling (3D). Why 0.5, not predict's 0.25: a pseudo-label is
#: trained on, so the smoother blend is worth twice the windows; the cost is paid once per case.
PSEUDO_LABEL_OVERLAP = 0.5


@dataclass
class SynthesizeOptions:
    pretrained: Path          # the DDPM model that draws the images
    model: Path               # the fine-tuned model that labels them
    out: Path
    count: int = 16
    steps: int = 50           # DDIM steps
    batch_size: int = 8
    min_confidence: float | None = None    # None: DEFAULT_MIN_CONFIDENCE of the task
    keep_fraction: float = DEFAULT_KEEP_FRACTION["synthesize"]
    measure: Annotated[str | None, CONFIDENCE_MEASURES] = None   # None: the task's first measure
    keep_rejected: bool = True             # write the rejected cases to rejected/ too
    overlap: float = PSEUDO_LABEL_OVERLAP
    seed: int = 0
    device: str = "auto"
    precision: Annotated[str, PRECISIONS] = Precision.AUTO.value
    progress: Annotated[str, PROGRESS_MODES] = Progress.BAR.value


@dataclass
class SelftrainOptions:
    finetune: FinetuneOptions        # the fine-tuning of every round (its out is the final model)
    rounds: int = 1
    min_confidence: float | None = None
    keep_fraction: float = DEFAULT_KEEP_FRACTION["selftrain"]
    measure: Annotated[str | None, CONFIDENCE_MEASURES] = None
    overlap: float = PSEUDO_LABEL_OVERLAP
