"""Which Python packages the backend needs in Slicer's Python, and how to install them safely.

torch comes from the PyTorch extension (PyTorchUtils picks the CUDA build that fits the
machine); monai, einops, safetensors and slicerio come from Resources/requirements-slicer.txt
through Slicer's pip. The install is constrained to the versions of numpy, SimpleITK,
vtk and torch that are already there, so it can fail with a clear message but never
swap out a package Slicer itself depends on.

Nothing is checked or installed at import time; the Logic calls these on demand.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from .backend import MODULE_DIR

#: Packages Slicer or the PyTorch extension own: never installed or upgraded by this module.
PROTECTED = ("numpy", "SimpleITK", "vtk", "torch")


def requirements_file() -> Path:
    """Resources/requirements-slicer.txt: beside the installed module, or at the repository top."""
    for folder in (MODULE_DIR / "Resources", MODULE_DIR.parent / "Resources"):
        path = folder / "requirements-slicer.txt"
        if path.is_file():
            return path
    raise FileNotFoundError("requirements-slicer.txt is missing from the DiffusionSeg installation.")


def read_requirements(path: Path | None = None) -> list[str]:
    """The requirement lines (comments and blank lines dropped)."""
    lines = (path or requirements_file()).read_text(encoding="utf-8").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]


def missing_requirements(requirements: list[str] | None = None) -> list[str]:
    """Requirements that are not installed, or installed in a version that does not satisfy them."""
    requirements = read_requirements() if requirements is None else requirements
    missing = []
    for requirement in requirements:
        try:
            version = metadata.version(requirement_name(requirement))
        except metadata.PackageNotFoundError:
            missing.append(requirement)
            continue
        if not _satisfies(requirement, version):
            missing.append(requirement)
    return missing


def _satisfies(requirement: str, version: str) -> bool:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # without packaging, presence is all we can check
        return True
    return Requirement(requirement).specifier.contains(version, prereleases=True)


def constraints() -> list[str]:
    """Pins (``numpy==2.1.3``...) for the protected packages that are installed."""
    pins = []
    for name in PROTECTED:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass  # e.g. Slicer's vtk is built in, not a pip distribution: pip cannot touch it anyway
    return pins


def torch_installed() -> bool:
    try:
        metadata.version("torch")
        return True
    except metadata.PackageNotFoundError:
        return False
