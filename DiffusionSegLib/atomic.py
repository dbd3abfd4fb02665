"""Atomic file writes: a reader never sees half a file, and a crash never leaves one.

Every writer in the package goes through :func:`atomic_path`: the content is written to
a hidden temporary file in the destination folder (same file system, so the final
``os.replace`` is atomic) and only a complete file takes the destination's name.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    Args:
        suffix: ending of the temporary name, for writers that choose the format by the
            file name (``".nrrd"``, ``".seg.nrrd"``, ``".png"``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions an ordinary file gets.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_atomic(path: str | Path, write: Callable[[Path], None], suffix: str = "") -> None:
    """Call ``write(tmp_path)`` and move the result onto ``path``."""
    with atomic_path(path, suffix) as tmp:
        write(tmp)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def jsonable(value):
    """NaN and infinity as null: JSON has no NaN, and many readers reject it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def write_json_atomic(path: str | Path, data) -> None:
    write_text_atomic(path, json.dumps(jsonable(data), indent=2) + "\n")
