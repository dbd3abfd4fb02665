"""Tie the background process to Slicer: no console window, no orphan when Slicer goes.

The portable part is in process.py and the backend: the child's stdin is a pipe that the
operating system closes when Slicer exits or crashes, and the backend stops at its end
(``--stop-on-stdin-close``). This file adds what each platform offers on top of it:

- Windows: ``CREATE_NO_WINDOW`` (a GUI parent would otherwise open a console window for
  every run), and a Job Object with ``JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE``: when Slicer's
  handle to the job closes (at exit, or when Windows cleans up a crashed Slicer), Windows
  kills the backend and everything it started, even a backend stuck in a long operation.
- Linux: ``PR_SET_PDEATHSIG`` = SIGTERM, set in the child between fork and exec, so the
  backend gets SIGTERM when the thread that started it ends (Slicer's main thread, i.e.
  when Slicer exits). macOS has no equivalent; the stdin pipe covers it.
- POSIX: a new session, so that the backend leads a process group the tree kill can reach.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Callable

CREATE_NO_WINDOW = 0x08000000  # winbase.h; subprocess defines it on Windows only
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000  # winnt.h
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION = 9  # JOBOBJECTINFOCLASS
PR_SET_PDEATHSIG = 1  # linux/prctl.h
KILLED_EXIT_CODE = 137


def popen_options(platform: str | None = None) -> dict:
    """The subprocess.Popen keyword arguments for the backend on ``platform`` (sys.platform)."""
    platform = sys.platform if platform is None else platform
    if platform == "win32":
        return {"creationflags": CREATE_NO_WINDOW}
    options: dict = {"start_new_session": True}
    if platform.startswith("linux"):
        preexec = die_with_parent_preexec()
        if preexec is not None:
            options["preexec_fn"] = preexec
    return options


def die_with_parent_preexec() -> Callable[[], None] | None:
    """A preexec_fn that makes Linux send the child SIGTERM when its parent dies; None
    where libc has no prctl. Everything is looked up before the fork: the function that
    runs in the child only makes the system call."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent, sigterm = os.getpid(), int(signal.SIGTERM)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sigterm, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os._exit(1)

    return preexec


# -- Windows Job Object ----------------------------------------------------------------
# The structures of winnt.h with explicit widths (DWORD is 32 bits, SIZE_T pointer-sized),
# so that their layout can be checked on any platform: 144 bytes on 64-bit Windows.

class _BasicLimitInformation(ctypes.Structure):
    _fields_ = [("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
                ("LimitFlags", ctypes.c_uint32), ("MinimumWorkingSetSize", ctypes.c_size_t),
                ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", ctypes.c_uint32),
                ("Affinity", ctypes.c_size_t), ("PriorityClass", ctypes.c_uint32),
                ("SchedulingClass", ctypes.c_uint32)]


class _IoCounters(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
        "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]


class ExtendedLimitInformation(ctypes.Structure):
    """JOBOBJECT_EXTENDED_LIMIT_INFORMATION."""

    _fields_ = [("BasicLimitInformation", _BasicLimitInformation), ("IoInfo", _IoCounters),
                ("ProcessMemoryLimit", ctypes.c_size_t), ("JobMemoryLimit", ctypes.c_size_t),
                ("PeakProcessMemoryUsed", ctypes.c_size_t), ("PeakJobMemoryUsed", ctypes.c_size_t)]


def _kernel32():
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # AttributeError off Windows
    handle, boolean = ctypes.c_void_p, ctypes.c_int
    for name, argtypes, restype in (
            ("CreateJobObjectW", [ctypes.c_void_p, ctypes.c_wchar_p], handle),
            ("SetInformationJobObject", [handle, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32], boolean),
            ("AssignProcessToJobObject", [handle, handle], boolean),
            ("TerminateJobObject", [handle, ctypes.c_uint32], boolean),
            ("CloseHandle", [handle], boolean)):
        function = getattr(kernel32, name)
        function.argtypes, function.restype = argtypes, restype
    return kernel32


class WindowsJob:
    """A Job Object holding the backend: closing it (or Slicer ending) kills the whole tree."""

    def __init__(self, handle, kernel32):
        self.handle = handle
        self._kernel32 = kernel32

    @classmethod
    def create_for(cls, proc, kernel32=None) -> WindowsJob | None:
        """Put ``proc`` (a subprocess.Popen) in a new kill-on-close job; None if Windows
        refuses (the stdin pipe then still stops the backend when Slicer goes)."""
        try:
            kernel32 = _kernel32() if kernel32 is None else kernel32
            handle = kernel32.CreateJobObjectW(None, None)
        except (OSError, AttributeError):
            return None
        if not handle:
            return None
        info = ExtendedLimitInformation()
        info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        if (kernel32.SetInformationJobObject(handle, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION, ctypes.byref(info),
                                             ctypes.sizeof(info))
                and kernel32.AssignProcessToJobObject(handle, int(proc._handle))):
            return cls(handle, kernel32)
        kernel32.CloseHandle(handle)
        return None

    def terminate(self) -> bool:
        """Kill every process of the job now; False if that failed."""
        return bool(self.handle) and bool(self._kernel32.TerminateJobObject(self.handle, KILLED_EXIT_CODE))

    def close(self) -> None:
        """Close Slicer's handle: Windows kills what is left in the job."""
        if self.handle:
            self._kernel32.CloseHandle(self.handle)
            self.handle = None


def attach_job(proc, platform: str | None = None, kernel32=None) -> WindowsJob | None:
    """On Windows, the kill-on-close job that now holds ``proc``; elsewhere None."""
    platform = sys.platform if platform is None else platform
    return WindowsJob.create_for(proc, kernel32) if platform == "win32" else None
