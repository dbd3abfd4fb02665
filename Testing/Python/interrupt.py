"""Stopping a training run in this process right after a chosen step, as Ctrl-C or the Slicer module's cancel do.

The tests of exact resume (finetune, bpr train) stop a run one step after a checkpoint
with :func:`stopped_after`, then run it again with ``--resume``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from unittest import mock

from DiffusionSegLib.training.progress import Reporter


@contextlib.contextmanager
def stopped_after(step: int) -> Iterator[None]:
    """Within the block, a run raises KeyboardInterrupt once it has reported ``step`` (after the step, before
    any checkpoint of that step is written)."""
    real = Reporter.progress

    def stop(self, done, total, **fields):
        real(self, done, total, **fields)
        if done == step:
            raise KeyboardInterrupt

    with mock.patch.object(Reporter, "progress", stop):
        yield
