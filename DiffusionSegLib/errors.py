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
