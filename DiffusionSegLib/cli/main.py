"""diffusionseg: pretrain a diffusion U-Net on unlabeled images, fine-tune it on a few annotated cases, predict.

Exit codes: 0 success, 2 a user error (one line: what, which file, the fix),
1 an unexpected failure (with its traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys

from .. import __version__
from ..errors import UserError


def build_parser() -> argparse.ArgumentParser:
    # Imported here, inside main's error handling: a missing torch or MONAI then ends in
    # one clear message instead of a traceback at start-up.
    from . import bpr_cmd, demo_cmd, evaluate_cmd, finetune_cmd, predict_cmd, pretrain_cmd, sample_cmd

    parser = argparse.ArgumentParser(prog="diffusionseg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"diffusionseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (pretrain_cmd, sample_cmd, finetune_cmd, predict_cmd, evaluate_cmd, bpr_cmd, demo_cmd):
        module.add_parser(subparsers)
    return parser


def _terminate_as_interrupt(signum, frame):  # noqa: ARG001
    # The Slicer module cancels with SIGTERM (CTRL_BREAK on Windows): unwind like Ctrl-C so cleanup runs.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
        if hasattr(signal, "SIGBREAK"):  # Windows: what the module's CTRL_BREAK_EVENT raises
            signal.signal(signal.SIGBREAK, _terminate_as_interrupt)
        return args.run(args)
    except UserError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
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
