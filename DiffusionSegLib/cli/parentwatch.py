"""Stop politely when the parent asks on stdin or goes away (``--stop-on-stdin-close``).

The Slicer module starts the backend with stdin a pipe that it keeps open for the whole
run. A line ``cancel`` on that pipe, or its end (the module closed it, or Slicer exited or
crashed and the operating system closed it), is a stop request handled exactly like
SIGTERM: the main thread unwinds as on Ctrl-C, the run guard cleans up, the last complete
checkpoint is kept and the command exits with 130. This works the same on Windows, Linux
and macOS, for a GUI parent without a console (where CTRL_BREAK cannot be delivered), and
when the parent dies without cleaning up.

Torch-free: the fake backend of the module's tests uses it too.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Callable

CANCEL_LINE = b"cancel"


def request_stop() -> None:
    """Send this process SIGTERM: a stop request that is exactly a SIGTERM.

    Python runs its SIGTERM handler (cli.main installs one) in the main thread. On POSIX the
    signal is sent to the main thread itself, so that it also interrupts a main thread
    waiting in a system call (a sleep, a queue); a running torch operation finishes first.
    Windows has no thread-directed signals: C ``raise`` there (``_thread.interrupt_main(signum)``
    would do the same but needs Python 3.10; Slicer 5.8 has 3.9).
    """
    if hasattr(signal, "pthread_kill"):
        signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
    else:
        signal.raise_signal(signal.SIGTERM)


def watch_stdin(on_stop: Callable[[], None] = request_stop, fd: int | None = None) -> threading.Thread:
    """Start a daemon thread that calls ``on_stop`` once: at a line ``cancel`` or at end of file.

    Other lines are ignored. Reads the raw file descriptor (``os.read``), not ``sys.stdin``,
    so the thread never holds the lock of sys.stdin's buffer when the interpreter shuts down.
    """
    fd = 0 if fd is None else fd

    def watch() -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # stdin closed or invalid: the parent is gone
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if any(line.strip() == CANCEL_LINE for line in lines):
                break
        on_stop()

    thread = threading.Thread(target=watch, name="DiffusionSeg-stdin-watch", daemon=True)
    thread.start()
    return thread
