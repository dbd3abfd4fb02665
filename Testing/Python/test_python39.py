"""The backend and the module run in Slicer 5.8's Python (3.9.10), not only in 3.10+.

Three checks, from static to real:
- vermin finds nothing in DiffusionSegLib/ or DiffusionSeg/ that needs more than 3.9
  (``itertools.pairwise``, ``zip(strict=)``, ``match``, ``dataclass(slots=)``, ...);
- no ``X | Y`` union of types is evaluated at run time (vermin cannot tell an evaluated
  union from an annotation that ``from __future__ import annotations`` keeps a string);
- when a Python 3.9 is on this machine, every file compiles with it and every module
  whose third-party packages that interpreter has imports with it (at least the
  torch-free ones the Slicer module loads). ``DIFFUSIONSEG_PYTHON39`` names a 3.9
  interpreter to use (e.g. one with numpy installed, to import more of the backend).
"""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FOLDERS = (REPO / "DiffusionSegLib", REPO / "DiffusionSeg")
TARGET = (3, 9)

#: Imported by the Slicer module in Slicer's own Python: plain Python, no torch or numpy.
MUST_IMPORT = (
    "DiffusionSegLib.errors",
    "DiffusionSegLib.modelconfig",
    "DiffusionSegLib.project",
    "DiffusionSegLib.vocabulary",
    "DiffusionSegModuleLib.backend",
    "DiffusionSegModuleLib.dependencies",
    "DiffusionSegModuleLib.process",
    "DiffusionSegModuleLib.progress",
    "DiffusionSegModuleLib.projectfiles",
)


def python_files() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_vermin_finds_nothing_newer_than_python39():
    pytest.importorskip("vermin", reason="vermin is in the 'test' extra: pip install -e .[test]")
    target = "-t={}.{}-".format(*TARGET)
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from vermin import main; sys.exit(main())",
         target, "--violations", "--no-tips", "--processes=1", *map(str, python_files())],
        capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, f"needs more than Python {TARGET}:\n{result.stdout}{result.stderr}"


# -- unions evaluated at run time ------------------------------------------------------

_TYPE_NAMES = {"None", "int", "float", "complex", "str", "bytes", "bool", "list", "dict", "tuple", "set",
               "frozenset", "type", "object", "Any", "Path", "Tensor", "ndarray", "Sequence", "Mapping",
               "Iterable", "Callable"}


def _is_type_like(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, ast.Name):
        return node.id in _TYPE_NAMES
    if isinstance(node, ast.Attribute):
        return node.attr in _TYPE_NAMES
    if isinstance(node, ast.Subscript):
        return _is_type_like(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _is_type_like(node.left) or _is_type_like(node.right)
    return False


def _annotations(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            yield from (arg.annotation for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
                        if arg is not None and arg.annotation is not None)
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


def evaluated_unions(source: str, filename: str = "<source>") -> list[str]:
    """``X | Y`` of types that Python 3.9 would evaluate (and fail on), as ``file:line: code``."""
    tree = ast.parse(source, filename)
    lazy = any(isinstance(s, ast.ImportFrom) and s.module == "__future__" and any(a.name == "annotations" for a in s.names)
               for s in tree.body)
    skip = {id(n) for ann in _annotations(tree) for n in ast.walk(ann)} if lazy else set()
    return [f"{filename}:{n.lineno}: {ast.get_source_segment(source, n)}" for n in ast.walk(tree)
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) and id(n) not in skip and _is_type_like(n)]


def test_the_union_check_tells_evaluated_unions_from_lazy_annotations():
    lazy = "from __future__ import annotations\ndef f(x: int | None) -> str | None:\n    y: list[int] | None = None\n"
    assert evaluated_unions(lazy) == []
    assert evaluated_unions("def f(x: int | None): pass\n")  # annotations evaluated at def time
    assert evaluated_unions(lazy + "Alias = str | Path\n")
    assert evaluated_unions(lazy + "ok = isinstance(1, int | float)\n")
    assert evaluated_unions("flags = 1 | 2\nmask = a | b\n") == []


def test_no_union_of_types_is_evaluated_at_run_time():
    offenders = [hit for p in python_files() for hit in evaluated_unions(p.read_text(encoding="utf-8"), str(p))]
    assert not offenders, "X | Y is evaluated at run time (Python 3.10+); use typing.Optional/Union:\n" + "\n".join(
        offenders)


# -- a real Python 3.9 --------------------------------------------------------------------


def find_python39() -> str | None:
    """A working Python 3.9 interpreter: $DIFFUSIONSEG_PYTHON39, python3.9 on PATH, or pyenv's."""
    candidates = [os.environ.get("DIFFUSIONSEG_PYTHON39"), shutil.which("python3.9")]
    for root in (os.environ.get("PYENV_ROOT"), "~/.pyenv", "/root/.pyenv"):
        if root:
            candidates += sorted(glob.glob(os.path.join(os.path.expanduser(root), "versions", "3.9*", "bin", "python3.9")))
    for candidate in filter(None, candidates):
        try:  # a pyenv shim is on PATH even when it cannot run 3.9
            out = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 9))"],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == "True":
            return candidate
    return None


@pytest.fixture(scope="module")
def python39() -> str:
    found = find_python39()
    if found is None:
        pytest.skip("no Python 3.9 interpreter found (set DIFFUSIONSEG_PYTHON39 or install python3.9)")
    return found


def _run39(python39: str, code: str, payload) -> subprocess.CompletedProcess:
    # -I: nothing of this (newer) environment leaks in; -B: no cpython-39 .pyc files left in the tree.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run([python39, "-I", "-B", "-c", code, json.dumps(payload)],
                          capture_output=True, text=True, env=env, timeout=600)


_COMPILE = """
import json, sys
failed = []
for path in json.loads(sys.argv[1]):
    try:
        compile(open(path, encoding="utf-8").read(), path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        failed.append(f"{path}:{exc.lineno}: {exc.msg}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_file_compiles_with_python39(python39):
    result = _run39(python39, _COMPILE, [str(p) for p in python_files()])
    assert result.returncode == 0, result.stdout + result.stderr


_IMPORT = """
import importlib, json, sys, traceback
args = json.loads(sys.argv[1])
sys.path[:0] = args["paths"]
third_party = set(args["third_party"])
imported, needs, failed = [], {}, []
for name in args["modules"]:
    try:
        importlib.import_module(name)
        imported.append(name)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top in third_party:
            needs[name] = top
        else:
            failed.append(f"{name}: {traceback.format_exc()}")
    except Exception:
        failed.append(f"{name}: {traceback.format_exc()}")
print(json.dumps({"imported": imported, "needs": needs, "failed": failed}))
"""

#: Packages a bare Python 3.9 may lack: a module that needs one is skipped, not failed.
_THIRD_PARTY = ["torch", "numpy", "monai", "SimpleITK", "einops", "safetensors", "slicerio", "nrrd", "tqdm",
                "matplotlib", "scipy", "packaging", "slicer", "qt", "ctk", "vtk", "PythonQt"]


def _module_names() -> list[str]:
    names = []
    for folder, base in ((REPO / "DiffusionSegLib", REPO), (REPO / "DiffusionSeg" / "DiffusionSegModuleLib",
                                                            REPO / "DiffusionSeg")):
        for path in sorted(folder.rglob("*.py")):
            if path.name == "__main__.py" or "__pycache__" in path.parts:
                continue
            parts = path.relative_to(base).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_modules_import_with_python39(python39):
    payload = {"paths": [str(REPO), str(REPO / "DiffusionSeg")], "modules": _module_names(),
               "third_party": _THIRD_PARTY}
    result = _run39(python39, _IMPORT, payload)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert not report["failed"], "\n".join(report["failed"])
    assert set(MUST_IMPORT) <= set(report["imported"]), report
