"""What every command does around its work: one run at a time, one ``error`` event, nothing half-written."""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path

from ..atomic import remove_partials
from ..errors import UserError, as_user_error
from ..runlock import RunLock, project_of
from .. import modelconfig
from .checkpoint import CONFIG_NAME, STATE_NAME, WEIGHTS_NAME
from .distributed import DistContext
from .outputs import check_output_folder, fresh_folder
from .progress import Reporter

_ON_STDOUT = "_diffusionseg_error_event_sent"


def report_failure(reporter: Reporter, exc: BaseException) -> None:
    """Emit the ``error`` event for a failure the user can fix; close the progress bar in any case.

    A UserError, or an OSError the user fixes (a full disk, no permission), is reported;
    a bug or an interrupt is not (its traceback, or exit code 130, says it). Commands
    nest (demo runs pretrain, curve runs finetune): the Slicer module reading stdout gets
    one event per failure, from the innermost command that speaks JSON there.
    """
    error = as_user_error(exc)
    if error is None or (reporter.mode == "json" and getattr(exc, _ON_STDOUT, False)):
        reporter.close()
        return
    reporter.error(error.render())
    if reporter.mode == "json" and reporter.enabled:
        setattr(exc, _ON_STDOUT, True)


class CommandGuard:
    """Context manager around one command that writes ``out`` (a folder or a file prefix).

    On entry it takes the run lock of ``out`` (when given) and, with ``project``, of the
    project folder ``out`` lies in (see :mod:`DiffusionSegLib.runlock`): a second run on
    either is refused. On failure (a UserError, a crash, Ctrl-C or the Slicer module's
    cancel) it reports it (:func:`report_failure`) and, if the command made ``out`` (it
    sets ``created``) and :meth:`_discard` agrees, removes ``out``. The locks are always
    released.

    Args:
        is_main: False on ranks other than 0 of a distributed run: they neither lock nor remove.
    """

    def __init__(self, reporter: Reporter, out: str | Path | None = None, *, project: bool = False,
                 is_main: bool = True):
        self.reporter = reporter
        self.out = None if out is None else Path(out)
        self.project = project
        self.is_main = is_main
        self.created = False
        self._locks = ExitStack()

    def __enter__(self):
        if self.is_main and self.out is not None:
            try:
                project = project_of(self.out) if self.project else None
                if project is not None:
                    self._locks.enter_context(RunLock(project, "project (a training run is using it)"))
                self._locks.enter_context(RunLock(self.out, "output folder"))
            except BaseException as exc:
                self.__exit__(type(exc), exc, None)
                raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc is not None:
                report_failure(self.reporter, exc)
                if self.created and self.is_main and self._discard():
                    shutil.rmtree(self.out, ignore_errors=True)
        finally:
            self._locks.close()
        return False

    def _discard(self) -> bool:
        """Whether a failed run's ``out`` goes (it does: nothing half-written is kept)."""
        return True


class RunGuard(CommandGuard):
    """The guard of a training run writing the model folder ``out_dir`` in place (pretrain, finetune, bpr train).

    As :class:`CommandGuard`, locking the project too; a failed run's ``out_dir`` is
    removed only if it never wrote a checkpoint, so a failed run leaves either nothing
    or a resumable checkpoint; and the process group is always closed.
    """

    def __init__(self, reporter: Reporter, ctx: DistContext, out_dir: Path):
        super().__init__(reporter, out_dir, project=True, is_main=ctx.is_main)
        self.ctx = ctx
        self.out_dir = self.out

    def _discard(self) -> bool:
        return not (self.out_dir / STATE_NAME).exists()

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            return super().__exit__(exc_type, exc, tb)
        finally:
            self.ctx.close()


def prepare_out_dir(out: Path, *, resume: bool, overwrite: bool) -> tuple[bool, bool]:
    """The output folder of a training run, written in place so that it can resume (call it holding the run lock).

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
    return fresh_folder(out, overwrite=overwrite, fix=_NEW_RUN), False


_NEW_RUN = "choose a new --out, use --resume to continue a run, or --overwrite to replace a model."


def check_out_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """:func:`prepare_out_dir`'s refusal of a taken ``out`` for a new run, said before the run
    spends time on its inputs; it writes nothing (a resume's checks stay with prepare_out_dir)."""
    if not resume:
        check_output_folder(out, overwrite=overwrite, fix=_NEW_RUN)


def _unfinished(out: Path) -> bool:
    """True when ``out/config.json`` records a training that stopped before its last step."""
    try:
        training = modelconfig.load(out).training
    except UserError:
        return False
    return training is not None and training.step is not None and training.step < training.iterations
