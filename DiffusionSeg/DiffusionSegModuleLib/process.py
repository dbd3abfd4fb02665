"""The cancellable background ``diffusionseg`` process.

The module never runs training inside Slicer's own Python: torch would block the GUI
and a crash would take Slicer down. Instead it starts ``<python> -m DiffusionSegLib
--stop-on-stdin-close <subcommand> ... --progress json`` as a child process, reads its
JSON progress lines on a reader thread, and lets the GUI collect them from a timer
(``poll``), as SlicerMONAIAuto3DSeg does.

Stopping, the same way on every platform: the child's stdin is a pipe that stays open for
the whole run. Cancel writes ``cancel`` and closes it; if Slicer exits or crashes, the
operating system closes it. Either way the backend stops as on SIGTERM (exit 130, the last
complete checkpoint kept). After a grace period cancel kills the whole process tree (the
backend may start data-loader workers). Besides: on Windows the child gets no console
window (CREATE_NO_WINDOW) and lives in a Job Object that kills it with Slicer; on Linux it
gets SIGTERM when Slicer dies (PR_SET_PDEATHSIG); on POSIX it leads its own process group,
for the tree kill.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Sequence

from .i18n import _
from .lifetime import CREATE_NO_WINDOW, WindowsJob, attach_job, popen_options
from .progress import Event, ProgressState, parse_line

#: Exit codes of the ``diffusionseg`` command (docs/CLI.md).
EXIT_OK, EXIT_FAILURE, EXIT_USER_ERROR, EXIT_CANCELLED = 0, 1, 2, 130

#: The backend option that makes it watch stdin (docs/CLI.md), and the line cancel sends.
STOP_OPTION, CANCEL_LINE = "--stop-on-stdin-close", b"cancel\n"


@dataclasses.dataclass
class RunResult:
    """How a finished run ended.

    status: ``done``, ``failed`` or ``cancelled``.
    message: the sentence to show the user (empty for success).
    """

    status: str
    returncode: int | None
    message: str
    state: ProgressState
    stderr_tail: list[str]

    @property
    def ok(self) -> bool:
        return self.status == "done"


class BackendProcess:
    """One background run at a time; reusable once a run has finished.

    Args:
        python_executable: the interpreter to run the backend with (in Slicer:
            PythonSlicer; in tests: sys.executable).
        backend_dir: the folder that contains the ``DiffusionSegLib`` package; it is put
            first on the child's PYTHONPATH.
        module: the module run with ``-m`` (tests substitute a fake backend).
        grace_seconds: how long cancel waits for the backend to stop by itself before
            killing the process tree.
    """

    def __init__(self, python_executable: str, backend_dir: str | Path | None = None,
                 module: str = "DiffusionSegLib", grace_seconds: float = 10.0):
        self.python_executable = str(python_executable)
        self.backend_dir = None if backend_dir is None else str(backend_dir)
        self.module = module
        self.grace_seconds = grace_seconds
        self._reset()
        self.result: RunResult | None = None

    # -- lifecycle -------------------------------------------------------------------

    def _reset(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._threads: list[threading.Thread] = []
        self._queue: queue.Queue = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=200)
        self._cancel_requested = False
        self._kill_deadline: float | None = None
        self._exit_seen_at: float | None = None
        self._job: WindowsJob | None = None
        self.state = ProgressState()
        self.command: list[str] = []

    @property
    def running(self) -> bool:
        """True from start() until poll() has seen the process end and collected its output."""
        return self._proc is not None

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    def build_command(self, args: Sequence[str]) -> list[str]:
        """The full command line: python -m module --stop-on-stdin-close args... --progress json."""
        args = [str(a) for a in args]
        command = [self.python_executable, "-u", "-m", self.module]
        command += ([] if STOP_OPTION in args else [STOP_OPTION]) + args
        if "--progress" not in command:
            command += ["--progress", "json"]
        return command

    def child_environment(self) -> dict[str, str]:
        """The parent's environment with the backend first on PYTHONPATH, unbuffered output."""
        env = dict(os.environ)
        if self.backend_dir:
            old = env.get("PYTHONPATH", "")
            env["PYTHONPATH"] = self.backend_dir + (os.pathsep + old if old else "")
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        return env

    def start(self, args: Sequence[str], cwd: str | Path | None = None) -> list[str]:
        """Start a run; raises RuntimeError if one is still running. Returns the command."""
        if self.running:
            raise RuntimeError(_("A DiffusionSeg run is already in progress. Wait for it or cancel it first."))
        self._reset()
        self.result = None
        self.command = self.build_command(args)
        try:
            self._proc = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE,
                cwd=None if cwd is None else str(cwd), env=self.child_environment(), **popen_options())
        except OSError as exc:
            self._proc = None
            raise RuntimeError(_("Could not start the DiffusionSeg backend ({command}): {error}").format(
                command=self.python_executable, error=exc)) from exc
        self._job = attach_job(self._proc)
        for stream_name, stream in (("stdout", self._proc.stdout), ("stderr", self._proc.stderr)):
            thread = threading.Thread(target=self._read, args=(stream_name, stream),
                                      name=f"DiffusionSeg-{stream_name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self.command

    def _read(self, stream_name: str, stream) -> None:
        """Reader thread: one queue item per line until the pipe closes."""
        try:
            for raw in iter(stream.readline, b""):
                self._queue.put((stream_name, raw.decode("utf-8", errors="replace")))
        finally:
            stream.close()

    # -- polling ---------------------------------------------------------------------

    def poll(self) -> list[Event]:
        """Collect the events that arrived since the last call (never blocks).

        When the process has ended and its output is drained, ``result`` is set and the
        runner is ready for the next start().
        """
        events = self._drain()
        if self._proc is None:
            return events
        if self._kill_deadline is not None and time.monotonic() >= self._kill_deadline:
            self._kill_tree()
            self._kill_deadline = None
        returncode = self._proc.poll()
        if returncode is None:
            return events
        if self._exit_seen_at is None:
            self._exit_seen_at = time.monotonic()
        # A grandchild that survived could hold the pipes open; do not wait for it forever.
        readers_done = all(not t.is_alive() for t in self._threads)
        if not readers_done and time.monotonic() - self._exit_seen_at < 2.0:
            return events
        events += self._drain()
        self._finish(returncode)
        return events

    def _drain(self) -> list[Event]:
        events = []
        while True:
            try:
                stream, line = self._queue.get_nowait()
            except queue.Empty:
                return events
            if stream == "stderr" and line.strip():
                self._stderr.append(line.rstrip("\r\n"))
            event = parse_line(line, stream)
            if event is not None:
                self.state.update(event)
                events.append(event)

    def wait(self, timeout: float | None = None, interval: float = 0.05, on_events=None) -> RunResult | None:
        """Poll until the run ends (for batch mode and tests); None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running:
            events = self.poll()
            if on_events is not None and events:
                on_events(events)
            if deadline is not None and time.monotonic() > deadline:
                return None
            if self.running:
                time.sleep(interval)
        return self.result

    # -- cancel ----------------------------------------------------------------------

    def cancel(self) -> None:
        """Ask the run to stop (``cancel`` on its stdin, then end of file); the tree is
        killed if it has not stopped after the grace period."""
        if self._proc is None or self._cancel_requested:
            return
        self._cancel_requested = True
        self._close_stdin(CANCEL_LINE)
        self._kill_deadline = time.monotonic() + self.grace_seconds

    def _close_stdin(self, last_words: bytes = b"") -> None:
        stdin = self._proc.stdin if self._proc is not None else None
        if stdin is None or stdin.closed:
            return
        try:
            if last_words:
                stdin.write(last_words)
                stdin.flush()
        except (OSError, ValueError):  # the backend has exited: nobody reads any more
            pass
        try:
            stdin.close()
        except (OSError, ValueError):
            pass

    def _kill_tree(self) -> None:
        """Kill the backend and everything it started (the polite stop goes through stdin)."""
        proc = self._proc
        if proc is None:
            return
        if sys.platform == "win32":
            if self._job is not None and self._job.terminate():
                return
            subprocess.run(["taskkill", "/PID", str(proc.pid), "/T", "/F"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, check=False,
                           creationflags=CREATE_NO_WINDOW)
            return
        try:
            # The child leads its own process group (start_new_session), so this reaches
            # its data-loader workers too, even after the leader itself has exited.
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    # -- result ----------------------------------------------------------------------

    def _finish(self, returncode: int) -> None:
        if self._cancel_requested:
            self._kill_tree()  # nothing of the tree may outlive a cancelled run
        self._close_stdin()
        if self._job is not None:
            self._job.close()  # kills whatever of the tree is left (KILL_ON_JOB_CLOSE)
        stderr_tail = list(self._stderr)
        state = self.state
        if returncode == EXIT_OK and not self._cancel_requested:
            status, message = "done", ""
        elif self._cancel_requested or returncode == EXIT_CANCELLED:
            status = "cancelled"
            message = _("Cancelled.")
            if state.last_checkpoint:
                message += " " + _("The last checkpoint is kept: {path}").format(path=state.last_checkpoint)
        else:
            status, message = "failed", error_message(returncode, stderr_tail, state.error_event_message)
        for thread in self._threads:
            thread.join(timeout=0.5)
        self.result = RunResult(status, returncode, message, state, stderr_tail)
        self._proc = None
        self._threads = []
        self._kill_deadline = None
        self._cancel_requested = False
        self._job = None


def error_message(returncode: int | None, stderr_lines: Sequence[str], event_message: str = "") -> str:
    """The one sentence a user sees when a run fails.

    Preference: the backend's last ``error: ...`` line on stderr (a UserError, which
    names the file and the fix), then the message of a JSON ``error`` event, then the
    last line of a traceback, then the bare exit code.
    """
    for line in reversed(stderr_lines):
        stripped = line.strip()
        if stripped.lower().startswith("error:"):
            return stripped[len("error:"):].strip()
    if event_message:
        return event_message
    for line in reversed(stderr_lines):
        if line.strip():
            return line.strip()
    if returncode is not None and returncode < 0:
        return _("The backend was stopped by signal {signal}.").format(signal=-returncode)
    return _("The backend failed with exit code {code}.").format(code=returncode)
