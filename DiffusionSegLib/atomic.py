"""Atomic file writes: a reader never sees half a file, and a crash never leaves one.

Every writer in the package goes through :func:`atomic_path`: the content is written to
a hidden temporary file in the destination folder (same file system, so the final
``os.replace`` is atomic) and only a complete file takes the destination's name.

Durability: the temporary file is flushed to disk (``fsync``) before the rename and the
folder after it, so a power cut or a kill -9 at any moment leaves either the previous
file or the new one, complete (a rename can otherwise reach the disk before the data).
A kill -9 can leave a hidden ``.<name>.*.partial`` file behind; :func:`remove_partials`
clears them when a run resumes.
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


def fsync_file(path: str | Path) -> None:
    """Flush ``path``'s data to the disk."""
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (a rename in it) to the disk; not possible, nor needed, on Windows."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_partials(folder: str | Path) -> int:
    """Delete the temporary files an interrupted :func:`atomic_path` left in ``folder``; return how many."""
    count = 0
    for path in Path(folder).glob(".*.partial*"):
        if path.is_file():
            path.unlink()
            count += 1
    return count


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
        try:
            yield tmp_path
        except OSError as exc:  # a full disk or a lost permission: name the file being written
            if exc.filename is None:
                raise OSError(exc.errno, exc.strerror, str(path)) from exc
            raise
        # mkstemp creates 0600 files; give the result the permissions an ordinary file gets.
        os.chmod(tmp_path, 0o666 & ~_umask())
        try:
            fsync_file(tmp_path)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
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
