"""Which Python packages the backend needs in Slicer's Python, and how to install them safely.

torch comes from the PyTorch extension (PyTorchUtils picks the CUDA build that fits the
machine), in the range TORCH_REQUIREMENT; monai, einops, safetensors, slicerio, pynrrd and tqdm
come from Resources/requirements-slicer.txt through Slicer's pip. Both are copies of the
backend's requirements in pyproject.toml (Testing/Python/test_slicer_requirements.py checks
that they agree; the installed extension has no pyproject.toml to read). The install is constrained to the versions of numpy, SimpleITK,
vtk and torch that are already there, so it can fail with a clear message but never
swap out a package Slicer itself depends on.

Nothing is checked or installed at import time; the Logic calls these on demand.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from .backend import MODULE_DIR
from .i18n import _

#: Packages Slicer or the PyTorch extension own: never installed or upgraded by this module.
PROTECTED = ("numpy", "SimpleITK", "vtk", "torch")

#: The torch the backend needs (pyproject.toml's range). PyTorchUtils installs it, never this module's pip.
TORCH_REQUIREMENT = "torch>=2.2"


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
    except ImportError:
        try:  # Slicer bundles pip, and pip its own packaging
            from pip._vendor.packaging.requirements import Requirement
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


def torch_version_requirement() -> str:
    """The range alone (``">=2.2"``), as ``PyTorchUtilsLogic.installTorch(torchVersionRequirement=...)`` takes it."""
    return TORCH_REQUIREMENT[len(requirement_name(TORCH_REQUIREMENT)):].strip()


def torch_version() -> str | None:
    """The installed torch's version (e.g. ``"2.7.1+cu126"``), or None."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def torch_problem(version: str | None = None) -> str | None:
    """None when torch (``version``, else the installed one) satisfies TORCH_REQUIREMENT, else what to do.

    The message names the installed version, the range the backend needs, and the fix:
    update torch through the PyTorch extension (PyTorchUtils), then restart Slicer.
    """
    version = version or torch_version()
    if version is None:
        return _("DiffusionSeg needs PyTorch ({requirement}), which is not installed in Slicer's Python. "
                 "Install it with the PyTorch extension (PyTorch Utils module, or "
                 "PyTorchUtils.PyTorchUtilsLogic().installTorch(torchVersionRequirement=\"{range}\")).").format(
            requirement=TORCH_REQUIREMENT, range=torch_version_requirement())
    if _satisfies(TORCH_REQUIREMENT, version):
        return None
    return _("DiffusionSeg needs {requirement}, but torch {version} is installed in Slicer's Python. "
             "Update it with the PyTorch extension (PyTorch Utils module, version requirement \"{range}\"; or "
             "PyTorchUtils.PyTorchUtilsLogic().installTorch(torchVersionRequirement=\"{range}\")), "
             "then restart Slicer.").format(
        requirement=TORCH_REQUIREMENT, version=version, range=torch_version_requirement())
