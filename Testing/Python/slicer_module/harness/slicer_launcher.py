"""``Slicer --no-main-window --python-script FILE -- ARGS`` on the harness.

    python -m harness.slicer_launcher --slicer v5.12.3 --python-script FILE -- ARGS...

What Slicer does for that command line, in this order: its Python layer and scene are
set up (harness.install), every scripted module in the module folder is loaded without
a panel (no main window), ``sys.argv`` becomes ``[FILE, ARGS...]`` and the file runs as
``__main__``. The process exits with the code the script gave ``slicer.util.exit``
(or ``sys.exit``), as Slicer does.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Testing/Python/slicer_module

from harness import VERSIONS, SlicerHarness  # noqa: E402


def main() -> int:
    argv = sys.argv[1:]
    ours, rest = (argv[: argv.index("--")], argv[argv.index("--"):]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser()
    parser.add_argument("--slicer", choices=VERSIONS, required=True)
    parser.add_argument("--python-script", required=True, type=Path)
    args = parser.parse_args(ours)
    harness = SlicerHarness(args.slicer).install()
    harness.load_module(with_widget=False)
    import slicer

    sys.argv = [str(args.python_script), *rest]
    code = 0
    try:
        runpy.run_path(str(args.python_script), run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if slicer.app.exitCode is not None:
        code = slicer.app.exitCode
    return code


if __name__ == "__main__":
    sys.exit(main())
