"""Where the DiffusionSegLib backend lives, and importing its light, torch-free parts.

An installed extension has ``DiffusionSegLib/`` beside ``DiffusionSeg.py`` (the CMake
install copies it there); a source checkout has it one level up, beside the module
folder. ``DIFFUSIONSEG_BACKEND_DIR`` overrides both (e.g. a backend on a GPU server's
shared disk).

The module itself only imports ``DiffusionSegLib.project`` and ``DiffusionSegLib.vocabulary``
(plain Python). Everything
that needs torch runs in the background process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1]  # .../DiffusionSeg (holds DiffusionSeg.py)


def find_backend_dir() -> Path:
    """The folder that contains the DiffusionSegLib package."""
    candidates = []
    if os.environ.get("DIFFUSIONSEG_BACKEND_DIR"):
        candidates.append(Path(os.environ["DIFFUSIONSEG_BACKEND_DIR"]))
    candidates += [MODULE_DIR, MODULE_DIR.parent]
    for folder in candidates:
        if (folder / "DiffusionSegLib" / "__init__.py").is_file():
            return folder
    raise RuntimeError("The DiffusionSeg backend (DiffusionSegLib) was not found in: "
                       + ", ".join(str(c) for c in candidates)
                       + ". Reinstall the extension, or set DIFFUSIONSEG_BACKEND_DIR.")


def ensure_importable() -> Path:
    """Put the backend folder on sys.path (for DiffusionSegLib.project) and return it."""
    folder = find_backend_dir()
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
    return folder


def project_module():
    """DiffusionSegLib.project: the project folder contract shared with the backend."""
    ensure_importable()
    from DiffusionSegLib import project

    return project


def vocabulary():
    """DiffusionSegLib.vocabulary: case names, file suffixes and choice lists (plain Python)."""
    ensure_importable()
    from DiffusionSegLib import vocabulary as module

    return module
