"""The one exception type a user ever sees.

Every failure a user can cause or fix (bad file, wrong geometry, empty label, missing
dependency, out of memory) is raised as a :class:`UserError` that names the file or
option at fault and the fix. The command line prints it as one line and exits with
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A failure the user can fix.

    Args:
        message: what went wrong, in one sentence.
        path: the file or folder at fault, if any; it is named in the message.
        fix: what the user should do about it.
    """

    def __init__(self, message: str, path: str | Path | None = None, fix: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        text = self.message
        if self.path is not None:
            text = f"{self.path}: {text}"
        if self.fix:
            text = f"{text} Fix: {self.fix}"
        return text


#: errno values the user fixes (permissions, a read-only or full disk, a quota), by name.
_USER_OS_ERRORS = {
    "EACCES": ("permission denied", "choose a folder you can write to, or change its permissions."),
    "EPERM": ("operation not permitted", "choose a folder you can write to, or change its permissions."),
    "EROFS": ("the file system is read-only", "choose a folder on a writable disk."),
    "ENOSPC": ("no space left on the disk", "free disk space, or choose a folder on another disk."),
    "EDQUOT": ("the disk quota is exceeded", "free space in your quota, or choose another disk."),
}


def user_error_from_os_error(exc: OSError) -> UserError | None:
    """The UserError for an OSError the user can fix (see ``_USER_OS_ERRORS``), else None (a bug)."""
    import errno

    name = errno.errorcode.get(exc.errno or -1)
    if name not in _USER_OS_ERRORS:
        return None
    what, fix = _USER_OS_ERRORS[name]
    return UserError(f"{what}.", path=exc.filename, fix=fix)


def as_user_error(exc: BaseException) -> UserError | None:
    """``exc`` as the error the user sees: itself, the UserError of a fixable OSError, or None (a bug, an interrupt)."""
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, OSError):
        return user_error_from_os_error(exc)
    return None
