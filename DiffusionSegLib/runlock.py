"""One run per output folder (and per project): a lock file beside the folder.

A run that writes ``<parent>/<name>`` holds ``<parent>/.<name>.diffusionseg-lock``, a
JSON file ``{"pid", "host", "started", "command", "pid_start"}``, for as long as it runs.
The lock sits beside the folder, not in it, so it exists before the folder does and an
empty output folder stays empty. It is created complete in one step (written under a
temporary name, then hard-linked to its name, which fails if a lock exists).

A second run on the same folder is refused with the holder's pid and host. A lock is
stale, and taken over, when it was written on this host by a process that is gone:
its pid is not alive, or the pid now belongs to a process started at another time (pid
reuse; Linux only, from ``/proc``). A lock written on another host (a shared network
folder) cannot be checked from here: it is refused, and the message tells the user to
delete it if that run has ended. A lock file that is not valid JSON was not written by
DiffusionSeg and is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from .errors import UserError

LOCK_SUFFIX = ".diffusionseg-lock"


def lock_path(folder: str | Path) -> Path:
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}{LOCK_SUFFIX}"


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def holder_is_gone(info: dict) -> bool:
    """True when the lock's writer has certainly ended (see the module doc)."""
    if info.get("host") != socket.gethostname():
        return False
    pid = int(info.get("pid", -1))
    if not _alive(pid):
        return True
    started = info.get("pid_start")
    return started is not None and _process_start(pid) not in (None, started)


class RunLock:
    """Context manager holding the lock of ``folder`` (see the module doc).

    Args:
        folder: the output folder (or project folder) the run writes.
        what: how the message names it ("output folder", "project").
    """

    def __init__(self, folder: str | Path, what: str = "output folder"):
        self.folder = Path(folder)
        self.what = what
        self.path = lock_path(self.folder)
        self.held = False
        self._made: list[Path] = []  # folders made to hold the lock, removed again if still empty

    def _record(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv[:3]), "pid_start": _process_start(os.getpid())}

    def _try_create(self) -> bool:
        try:
            missing = [d for d in [self.path.parent, *self.path.parent.parents] if not d.exists()]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._made = missing + self._made
            fd, tmp = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.path.parent)
        except OSError as exc:  # e.g. no write permission: name the folder the user chose, not the lock
            raise OSError(exc.errno, exc.strerror, str(self.folder)) from exc
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self._record(), f)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.path)
                return True
            except FileExistsError:
                return False
            except OSError:  # no hard links on this file system: exclusive create instead
                try:
                    with open(self.path, "x") as f:
                        json.dump(self._record(), f)
                    return True
                except FileExistsError:
                    return False
        finally:
            os.unlink(tmp)

    def _read(self) -> dict | None:
        """The holder's record; {} for a file that is not ours; None if it vanished meanwhile."""
        try:
            info = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def acquire(self) -> None:
        try:
            self._acquire()
        except BaseException:
            self.release()  # the folders made for the lock
            raise

    def _acquire(self) -> None:
        for _ in range(10):
            if self._try_create():
                self.held = True
                return
            info = self._read()
            if info is None:
                continue
            if info and not holder_is_gone(info):
                where = "" if info.get("host") == socket.gethostname() else f" on host {info.get('host')}"
                raise UserError(
                    f"another DiffusionSeg run (pid {info.get('pid')}{where}, started {info.get('started')}: "
                    f"{info.get('command')}) is using this {self.what}.", path=self.folder,
                    fix=f"wait for that run to end, or cancel it; if it is no longer running, delete {self.path}.")
            # Stale: its writer is gone. Move it aside (one taker wins the rename) and retry; if what
            # was moved is not the stale lock (another taker's fresh one, in a narrow race), put it back.
            aside = Path(f"{self.path}.stale-{os.getpid()}")
            try:
                os.replace(self.path, aside)
            except FileNotFoundError:
                continue
            try:
                moved = json.loads(aside.read_text())
            except (OSError, ValueError):
                moved = {}
            if moved != info:
                try:
                    os.link(aside, self.path)
                except OSError:
                    pass
            aside.unlink(missing_ok=True)
        raise UserError("could not take the run lock.", path=self.path, fix="delete the lock file and retry.")

    def release(self) -> None:
        if self.held:
            self.held = False
            info = self._read()
            if info and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
        for folder in self._made:  # innermost first; a folder the run filled stays
            try:
                folder.rmdir()
            except OSError:
                break
        self._made = []

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


def project_of(folder: str | Path) -> Path | None:
    """The project folder (one holding ``project.json``) that ``folder`` lies in, if any."""
    for parent in Path(folder).absolute().parents:
        if (parent / "project.json").is_file():
            return parent
    return None
