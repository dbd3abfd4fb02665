"""What every training command does when it fails: report it once, leave nothing half-written."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import UserError
from .checkpoint import STATE_NAME
from .distributed import DistContext
from .progress import Reporter


class RunGuard:
    """Context manager around a training run that writes the model folder ``out_dir``.

    On failure (a UserError, a crash, Ctrl-C or the Slicer module's cancel) it emits the
    ``error`` event, and removes ``out_dir`` if this run created it and never wrote a
    checkpoint, so a failed run leaves either nothing or a resumable checkpoint. The
    process group is always closed. Set ``created`` once the run has made ``out_dir``.
    """

    def __init__(self, reporter: Reporter, ctx: DistContext, out_dir: Path):
        self.reporter = reporter
        self.ctx = ctx
        self.out_dir = Path(out_dir)
        self.created = False

    def __enter__(self) -> "RunGuard":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc is not None:
                if isinstance(exc, UserError):
                    self.reporter.error(exc.render())
                else:
                    self.reporter.close()
                if self.created and self.ctx.is_main and not (self.out_dir / STATE_NAME).exists():
                    shutil.rmtree(self.out_dir, ignore_errors=True)
        finally:
            self.ctx.close()
        return False
