"""diffusionseg: pretrain a diffusion U-Net on unlabeled images, fine-tune it on a few annotated cases, predict.

Exit codes: 0 success, 2 a user error (one line: what, which file, the fix),
1 an unexpected failure (with its traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys

from .. import __version__
from ..errors import UserError, as_user_error
from . import parentwatch
from .malloc_arenas import use_one_malloc_arena
from .usage import CommandLineParser, UsageError, report_usage_error


def build_parser() -> argparse.ArgumentParser:
    # Imported here, inside main's error handling: a missing torch or MONAI then ends in
    # one clear message instead of a traceback at start-up.
    from . import (bpr_cmd, curve_cmd, demo_cmd, evaluate_cmd, finetune_cmd, predict_cmd, pretrain_cmd,
                   sample_cmd, selftrain_cmd, suggest_cmd, synthesize_cmd)

    parser = CommandLineParser(prog="diffusionseg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"diffusionseg {__version__}")
    parser.add_argument("--stop-on-stdin-close", action="store_true",
                        help="stop like on SIGTERM (exit 130, last complete checkpoint kept) when stdin ends "
                             "or reads a line 'cancel' (the Slicer module's cancel, and its exit)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (pretrain_cmd, sample_cmd, finetune_cmd, synthesize_cmd, selftrain_cmd, predict_cmd, evaluate_cmd,
                   suggest_cmd, curve_cmd, bpr_cmd, demo_cmd):
        module.add_parser(subparsers)
    return parser


_stopping = False


def _terminate_as_interrupt(signum, frame):  # noqa: ARG001
    # A stop request (SIGTERM, CTRL_BREAK on Windows, or the stdin watcher's) unwinds like
    # Ctrl-C so cleanup runs. Only the first one: a second request (the parent's death
    # closes stdin and, on Linux, sends SIGTERM too) must not break off that cleanup.
    global _stopping
    if not _stopping:
        _stopping = True
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    global _stopping
    _stopping = False
    use_one_malloc_arena()   # before torch starts any thread (cli/malloc_arenas.py says why)
    try:
        args = build_parser().parse_args(argv)
        import SimpleITK

        SimpleITK.ProcessObject.SetGlobalWarningDisplay(False)  # errors come back as one line each, not ITK chatter
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
        if hasattr(signal, "SIGBREAK"):  # Windows: what a CTRL_BREAK_EVENT raises
            signal.signal(signal.SIGBREAK, _terminate_as_interrupt)
        if args.stop_on_stdin_close:
            parentwatch.watch_stdin()  # after the handler: its request is a SIGTERM
        return args.run(args)
    except UsageError as exc:  # argparse's usage lines, and the error event with --progress json
        return report_usage_error(exc, sys.argv[1:] if argv is None else argv)
    except (UserError, OSError) as exc:  # OSError: a full disk, a read-only folder is one line too
        error = as_user_error(exc)
        if error is None:
            raise
        print(f"error: {error.render()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last complete checkpoint (if any) is kept.", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("DiffusionSegLib"):
            raise
        print(f"error: the Python package '{exc.name}' is missing. Fix: install DiffusionSeg's requirements "
              f"(scripts/setup-venv, or pip install -e . in your environment).", file=sys.stderr)
        return 2
