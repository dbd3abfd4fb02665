"""What every training command does when it fails: report it once, leave nothing half-written."""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path

from ..atomic import remove_partials
from ..errors import UserError
from ..runlock import RunLock, project_of
from .. import modelconfig
from .checkpoint import CONFIG_NAME, STATE_NAME, WEIGHTS_NAME
from .distributed import DistContext
from .progress import Reporter


class RunGuard:
    """Context manager around a training run that writes the model folder ``out_dir``.

    On entry (rank 0) it takes the run lock of ``out_dir`` and, when ``out_dir`` lies in
    a project folder, of the project (see :mod:`DiffusionSegLib.runlock`): a second run
    on either is refused. On failure (a UserError, a crash, Ctrl-C or the Slicer
    module's cancel) it emits the ``error`` event, and removes ``out_dir`` if this run
    created it and never wrote a checkpoint, so a failed run leaves either nothing or a
    resumable checkpoint. The locks are released and the process group is always
    closed. Set ``created`` once the run has made ``out_dir``.
    """

    def __init__(self, reporter: Reporter, ctx: DistContext, out_dir: Path):
        self.reporter = reporter
        self.ctx = ctx
        self.out_dir = Path(out_dir)
        self.created = False
        self._locks = ExitStack()

    def __enter__(self) -> "RunGuard":
        if self.ctx.is_main:
            try:
                project = project_of(self.out_dir)
                if project is not None:
                    self._locks.enter_context(RunLock(project, "project (a training run is using it)"))
                self._locks.enter_context(RunLock(self.out_dir, "output folder"))
            except BaseException as exc:
                self._locks.close()
                self.__exit__(type(exc), exc, None)
                raise
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
            try:
                self._locks.close()
            finally:
                self.ctx.close()
        return False


def prepare_out_dir(out: Path, *, resume: bool, overwrite: bool) -> tuple[bool, bool]:
    """The one output-folder policy of the training commands (call it holding the run lock).

    - ``resume``: continue from the last complete checkpoint in ``out``. When the run was
      interrupted before its first checkpoint (``out`` holds only its ``runs/`` log and
      temporary files), there is nothing to continue and it starts again from step 0.
      Temporary files of an interrupted write are removed.
    - otherwise ``out`` must be missing or empty, or hold a model (``config.json``) and
      ``overwrite`` is given (the model is then deleted).

    Returns:
        (created: this run made ``out``, so it may remove it on failure;
         resuming: a checkpoint exists and is to be continued).
    """
    out = Path(out)
    if resume:
        if (out / STATE_NAME).is_file():
            remove_partials(out)
            return False, True
        leftovers = [p for p in out.iterdir() if p.name != "runs" and ".partial" not in p.name] if out.is_dir() else []
        names = {p.name for p in leftovers}
        if names <= {CONFIG_NAME, WEIGHTS_NAME} and (CONFIG_NAME not in names or _unfinished(out)):
            leftovers = []  # killed while writing the first checkpoint (its model before its training state)
        if not out.is_dir() or leftovers:
            raise UserError("there is no run to resume here (no training_state.safetensors).", path=out,
                            fix="drop --resume to start a new run, or pass the folder of the interrupted run.")
        remove_partials(out)
        return False, False  # interrupted before its first checkpoint: start again
    if out.exists() and any(out.iterdir()):
        if not (overwrite and (out / CONFIG_NAME).is_file()):
            raise UserError("the output folder exists and is not empty.", path=out,
                            fix="choose a new --out, use --resume to continue a run, "
                                "or --overwrite to replace a model.")
        shutil.rmtree(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    return created, False


def _unfinished(out: Path) -> bool:
    """True when ``out/config.json`` records a training that stopped before its last step."""
    try:
        training = modelconfig.load(out).training
    except UserError:
        return False
    return training is not None and training.step is not None and training.step < training.iterations
