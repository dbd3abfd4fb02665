"""The backend never imports slicer, qt, ctk or vtk (it must run with no Slicer at all)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import DiffusionSegLib

FORBIDDEN = {"slicer", "qt", "ctk", "vtk", "PythonQt"}
PACKAGE = Path(DiffusionSegLib.__file__).parent


def test_no_forbidden_import_statements():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path}:{node.lineno} {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not offenders


def test_importing_every_module_loads_none_of_them():
    modules = sorted("DiffusionSegLib." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
                     for p in PACKAGE.rglob("*.py") if p.name not in ("__main__.py",))
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m.removesuffix('.__init__'))\n"
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r})\n"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_dependency_is_one_clear_message():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from DiffusionSegLib.cli.main import main\n"
            "sys.exit(main(['pretrain', '--images', 'x', '--out', 'y']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "'torch' is missing" in result.stderr and "Traceback" not in result.stderr
