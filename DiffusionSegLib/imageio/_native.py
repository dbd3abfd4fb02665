"""Keeping C libraries' own messages off the command's stderr."""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def native_stderr_silenced():
    """Send what C libraries print straight to file descriptor 2 (MetaIO's "data not read completely",
    NIfTI's "** ERROR") to the null device: the failure comes back as an exception and is reported
    once, as one line. Python's own sys.stderr is flushed first and restored after."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. a GUI): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
