"""The runtime every training command starts with: progress reporter, distributed context, run guard,
device and precision, set up in one order (pretrain, finetune, bpr train)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from .device import Precision, choose_device
from .distributed import DistContext, init_distributed_for, local_rank_from_env
from .guard import RunGuard
from .progress import Reporter


@contextlib.contextmanager
def training_runtime(stage: str, out: Path, device: str, precision: str, progress: str
                     ) -> Iterator[tuple[Reporter, DistContext, RunGuard, "torch.device", Precision]]:  # noqa: F821
    """``(reporter, ctx, guard, device, precision)`` for a run writing ``out``; only rank 0 reports, and
    the guard (lock of ``out``, the error event, clean-up) holds for the whole run."""
    reporter = Reporter(stage, progress)
    ctx = init_distributed_for(device)
    reporter.enabled = ctx.is_main
    with RunGuard(reporter, ctx, out) as guard:
        chosen = choose_device(device, local_rank_from_env())
        yield reporter, ctx, guard, chosen, Precision.choose(chosen, precision)
