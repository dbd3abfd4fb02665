"""What the Slicer module pip-installs into Slicer's Python agrees with the backend's needs.

One source: pyproject.toml's ``[project].dependencies`` are the backend's requirements.
Resources/requirements-slicer.txt is a copy of the part of them that Slicer does not
ship, line for line, and the torch range that DiffusionSegModuleLib.dependencies passes
to the PyTorch extension is pyproject's. Every package the backend imports (anywhere, also
inside functions) must be bundled with both Slicer 5.8.1 and 5.12.3, or listed in
requirements-slicer.txt, or be torch, which the PyTorch extension installs.

The bundled lists (../shared/slicer-python/<release>/bundled-python-packages.txt) are the
names of each release's SuperBuild ``External_python-*.cmake`` projects. SimpleITK and vtk
are built into Slicer outside that list (5.8.1 builds SimpleITK with its own
External_SimpleITK.cmake; 5.12.3 lists it), so they count as bundled: BUILT_IN.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BACKEND = REPO / "DiffusionSegLib"
REQUIREMENTS = REPO / "Resources" / "requirements-slicer.txt"
SLICER_PYTHON = REPO.parent / "shared" / "slicer-python"
RELEASES = ("v5.8.1", "v5.12.3")

#: Shipped by every Slicer release, but not as a pip-installed SuperBuild python-* project.
BUILT_IN = {"simpleitk", "vtk"}
#: Installed by the PyTorch extension (PyTorchUtils), never by DiffusionSeg's pip install.
FROM_PYTORCH_EXTENSION = {"torch"}
#: Imported only where a fallback exists (training/curves.py draws loss.png without matplotlib).
OPTIONAL = {"matplotlib"}
#: Import name -> distribution, for names that differ (used when the package is not installed here).
DISTRIBUTIONS = {"nrrd": "pynrrd", "PIL": "pillow", "yaml": "pyyaml", "skimage": "scikit-image",
                 "sklearn": "scikit-learn", "cv2": "opencv-python"}

sys.path.insert(0, str(REPO / "DiffusionSeg"))
from DiffusionSegModuleLib import dependencies  # noqa: E402


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def pyproject_dependencies() -> dict[str, str]:
    """``{canonical name: requirement string}`` of ``[project].dependencies``."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    with open(REPO / "pyproject.toml", "rb") as f:
        requirements = tomllib.load(f)["project"]["dependencies"]
    return {canonical(dependencies.requirement_name(r)): r for r in requirements}


def slicer_requirements() -> dict[str, str]:
    return {canonical(dependencies.requirement_name(r)): r for r in dependencies.read_requirements(REQUIREMENTS)}


def bundled_in_every_release() -> set[str]:
    """Canonical names bundled with both Slicer releases, plus BUILT_IN; skips without ../shared."""
    lists = [SLICER_PYTHON / release / "bundled-python-packages.txt" for release in RELEASES]
    if not all(p.is_file() for p in lists):
        pytest.skip(f"Slicer's bundled package lists are not here ({SLICER_PYTHON})")
    names = [{canonical(line.strip()) for line in p.read_text().splitlines() if line.strip()} for p in lists]
    return set.intersection(*names) | BUILT_IN


def backend_imports() -> dict[str, list[str]]:
    """Top-level third-party import names of every DiffusionSegLib file -> where they are imported."""
    stdlib = getattr(sys, "stdlib_module_names", None)
    if stdlib is None:
        pytest.skip("needs sys.stdlib_module_names (Python 3.10+)")
    found: dict[str, list[str]] = {}
    for path in sorted(BACKEND.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in stdlib and top != BACKEND.name:
                    found.setdefault(top, []).append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def distribution(import_name: str) -> str:
    """The canonical distribution name that provides ``import_name``."""
    from importlib import metadata

    installed = getattr(metadata, "packages_distributions", dict)().get(import_name)
    return canonical(installed[0] if installed else DISTRIBUTIONS.get(import_name, import_name))


def test_each_slicer_requirement_is_the_backends_requirement():
    backend = pyproject_dependencies()
    for name, line in slicer_requirements().items():
        assert name in backend, f"{line} is in requirements-slicer.txt but not in pyproject.toml's dependencies"
        assert line == backend[name], f"requirements-slicer.txt says {line!r}, pyproject.toml says {backend[name]!r}"


def test_torch_range_for_the_pytorch_extension_is_the_backends():
    assert dependencies.TORCH_REQUIREMENT == pyproject_dependencies()["torch"]


def test_every_backend_requirement_reaches_slicer():
    """Each pyproject dependency is bundled with Slicer, pip-installed by the module, torch, or optional."""
    bundled, listed = bundled_in_every_release(), set(slicer_requirements())
    unreached = [r for name, r in pyproject_dependencies().items()
                 if name not in bundled | listed | FROM_PYTORCH_EXTENSION | OPTIONAL]
    assert not unreached, f"add to Resources/requirements-slicer.txt: {unreached}"


def test_every_package_the_backend_imports_reaches_slicer():
    bundled, listed, declared = bundled_in_every_release(), set(slicer_requirements()), set(pyproject_dependencies())
    imports = backend_imports()
    assert {"torch", "monai", "numpy", "SimpleITK"} <= set(imports)  # the walk sees the real imports
    problems = []
    for name, where in sorted(imports.items()):
        dist = distribution(name)
        if dist not in declared:
            problems.append(f"{name} ({dist}) is imported at {where[0]} but not in pyproject.toml's dependencies")
        if dist not in bundled | listed | FROM_PYTORCH_EXTENSION | OPTIONAL:
            problems.append(f"{name} ({dist}) is imported at {where[0]}, is not bundled with Slicer "
                            f"{' and '.join(RELEASES)} and not in requirements-slicer.txt")
    assert not problems, "\n".join(problems)


def test_optional_imports_have_a_fallback():
    """OPTIONAL holds only where the backend works without the package: the loss curve and the
    learning curve draw with their numpy renderer then (test_curves.py and test_curve.py test it)."""
    where = [w for name in OPTIONAL for w in backend_imports().get(name, [])]
    with_fallback = ("DiffusionSegLib/training/curves.py:", "DiffusionSegLib/curve/plot.py:")
    assert all(w.startswith(with_fallback) for w in where), where
