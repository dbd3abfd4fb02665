"""A mistake on the command line (unknown option, bad choice, missing option, a value of the wrong type)
reported like every other failure: argparse's usage and error lines on stderr, exit code 2, and, when
``--progress json`` was asked for, one ``error`` event on stdout (docs/CLI.md, "Progress events").

argparse itself prints and exits at once, before any command could send the event the Slicer
module waits for; :class:`CommandLineParser` raises :class:`UsageError` instead, and ``main``
hands it to :func:`report_usage_error`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..errors import UserError
from ..vocabulary import Progress


class UsageError(UserError):
    """A command line argparse refused; ``usage`` is the usage line of the (sub)command it was parsing."""

    def __init__(self, message: str, *, prog: str, usage: str):
        super().__init__(f"{message}.", fix=f"run `{prog} --help` for the options and their values.")
        self.prog = prog
        self.usage = usage


class CommandLineParser(argparse.ArgumentParser):
    """An ArgumentParser (and, through ``add_subparsers``, each of its subcommands') that raises
    :class:`UsageError` where argparse would print and exit."""

    def error(self, message: str):
        raise UsageError(message, prog=self.prog, usage=self.format_usage())


def json_progress_requested(argv: Sequence[str]) -> bool:
    """Whether ``argv`` asks for ``--progress json`` (as two words or ``--progress=json``)."""
    words = list(argv)
    return f"--progress={Progress.JSON.value}" in words or any(
        word == "--progress" and following == Progress.JSON.value for word, following in zip(words, words[1:]))


def report_usage_error(error: UsageError, argv: Sequence[str]) -> int:
    """Print argparse's two lines on stderr, send the ``error`` event if JSON progress was asked for; exit code 2."""
    from ..training.progress import Reporter

    print(error.usage, end="", file=sys.stderr)
    print(f"{error.prog}: error: {error.render()}", file=sys.stderr)
    if json_progress_requested(argv):
        stage = "-".join(error.prog.split()[1:]) or error.prog   # "diffusionseg bpr train" -> "bpr-train"
        Reporter(stage, Progress.JSON.value).error(error.render())
    return 2
