"""File chores on a project folder that the module needs beyond DiffusionSegLib.project.

Adding images under fresh case names, finding models by their config.json, and
making run and model folders. Nothing here overwrites an existing file.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Iterable

from .backend import vocabulary


def safe_case_name(name: str) -> str:
    """A node or file name made safe as a case name ('CT chest (1)' -> 'CT_chest_1')."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")
    return cleaned or "case"


def unique_case_name(project, base: str) -> str:
    """``base`` (made safe), or ``base_2``, ``base_3``... if images/ already has that case."""
    base = safe_case_name(base)
    taken = set(project.cases())
    name, n = base, 1
    while name in taken or project.image_path(name) is not None:
        n += 1
        name = f"{base}_{n}"
    return name


def image_files(folder: str | Path) -> list[Path]:
    """The image files directly in ``folder`` that the project accepts (labels excluded)."""
    words = vocabulary()
    return [path for path in words.image_entries(folder) if path.is_file()]


def import_image_files(project, files: Iterable[str | Path]) -> list[str]:
    """Copy image files into images/ under new case names; returns the cases added."""
    case_name = vocabulary().case_name
    project.images_dir.mkdir(parents=True, exist_ok=True)
    cases = []
    for source in map(Path, files):
        case = unique_case_name(project, case_name(source))
        suffix = source.name[len(case_name(source)):]
        target = project.images_dir / f"{case}{suffix}"
        temporary = target.with_name(f".{target.name}.partial-{os.getpid()}")
        shutil.copyfile(source, temporary)
        os.replace(temporary, target)
        cases.append(case)
    return cases


def read_model_config(model_dir: str | Path) -> dict | None:
    """A model folder's config.json, validated by DiffusionSegLib.modelconfig (the one definition of
    the format), as plain data; None if it is not a DiffusionSeg model folder or its config is invalid."""
    from .backend import ensure_importable

    ensure_importable()
    from DiffusionSegLib import modelconfig
    from DiffusionSegLib.errors import UserError

    try:
        return modelconfig.load(model_dir).to_dict()
    except UserError:
        return None


def is_model(model_dir: str | Path | None, kinds: Iterable[str] = ("pretrained", "segmentation", "landmarks")) -> bool:
    if not model_dir or str(model_dir) in ("", "."):
        return False
    config = read_model_config(model_dir)
    return config is not None and config.get("kind") in tuple(kinds)


def list_models(project, kinds: Iterable[str]) -> list[Path]:
    """Model folders under models/ of the given kinds, newest first."""
    kinds = tuple(kinds)
    if not project.models_dir.is_dir():
        return []
    found = [p for p in project.models_dir.iterdir() if p.is_dir() and is_model(p, kinds)]
    return sorted(found, key=lambda p: (p / "config.json").stat().st_mtime, reverse=True)


def new_folder(parent: Path, prefix: str) -> Path:
    """``parent/<prefix>-<YYYYmmdd-HHMMSS>``, made unique; not created (the backend creates it)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = parent / f"{prefix}-{stamp}", 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{prefix}-{stamp}-{n}"
    return candidate


def link_inputs(files: Iterable[Path], folder: Path) -> Path:
    """Gather files in one folder for a command that takes a folder (hard link, else copy)."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in files:
        target = folder / source.name
        try:
            os.link(source, target)
        except OSError:  # another file system, or no hard links (FAT, some network shares)
            shutil.copyfile(source, target)
    return folder
