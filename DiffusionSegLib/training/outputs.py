"""The one output-folder policy of every command that writes a folder (``--out``).

- New, or a model to replace: ``out`` must be missing or empty; only with ``--overwrite``
  may a folder holding a model (``config.json``) be replaced. :func:`check_output_folder`
  says so in one message, before the command spends any time; :func:`fresh_folder` makes
  a folder written in place (training, selftrain).
- Complete or nothing: a folder of results (sample, synthesize, curve) is built in a
  hidden sibling ``.<name>.partial`` and renamed onto ``out`` only when complete
  (:func:`staged_folder`); a model being replaced is swapped out only then. A failure
  removes the sibling; a kill -9 leaves it, and the next run on ``out`` removes it.
  Training runs (pretrain, finetune, bpr train) write their model folder in place
  instead, with checkpoints that survive a kill, because ``--resume`` continues from
  them (see ``guard.prepare_out_dir``).

The caller holds the run lock of ``out`` (``guard.CommandGuard``), so no two runs share a
sibling and a fixed sibling name is safe.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..atomic import fsync_dir
from ..errors import UserError
from ..modelconfig import CONFIG_NAME

NEW_FOLDER = "choose a new --out."


def check_output_folder(out: str | Path, *, overwrite: bool = False, fix: str = NEW_FOLDER) -> None:
    """Refuse an ``out`` that is a file, or a non-empty folder (unless ``overwrite`` and it holds a model).

    Args:
        fix: the advice of the refusal, naming the options this command has.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError("the output path is a file.", path=out, fix="give a folder for --out.")
    if out.is_dir() and any(out.iterdir()) and not (overwrite and (out / CONFIG_NAME).is_file()):
        raise UserError("the output folder exists and is not empty.", path=out, fix=fix)


def fresh_folder(out: str | Path, *, overwrite: bool = False, fix: str = NEW_FOLDER) -> bool:
    """Make ``out`` to write into in place, after :func:`check_output_folder`; the model ``overwrite``
    replaces is deleted. Returns whether this run made ``out`` (so a failure may remove it)."""
    out = Path(out)
    check_output_folder(out, overwrite=overwrite, fix=fix)
    if out.is_dir() and any(out.iterdir()):
        shutil.rmtree(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    return created


def partial_folder(out: str | Path) -> Path:
    """The hidden sibling in which ``out`` is built."""
    out = Path(out)
    return out.parent / f".{out.name}.partial"


@contextlib.contextmanager
def staged_folder(out: str | Path) -> Iterator[Path]:
    """Yield an empty hidden sibling of ``out`` to write into; on success it becomes ``out``.

    Call it holding the run lock of ``out``. On failure the sibling is removed and ``out``
    is left as it was.
    """
    out = Path(out)
    tmp = partial_folder(out)
    shutil.rmtree(tmp, ignore_errors=True)  # a killed run's leftovers (no other run can hold out's lock)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_folder(new: Path, out: Path) -> None:
    """Move the complete folder ``new`` onto ``out``.

    An existing ``out`` (empty, or a model being overwritten) is moved aside first and
    deleted only once ``new`` is in place: a rename cannot replace a folder on Windows,
    and a failure in between puts the old one back.
    """
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
