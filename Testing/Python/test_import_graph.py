"""No import cycles between the packages of DiffusionSegLib (docs/DESIGN: lower layers never import higher ones).

The graph is read from the source with ``ast``, nothing is imported. Its nodes are the
packages right under DiffusionSegLib (``data``, ``bpr``, ``training``, ``diffusion``,
``finetune``, ``predict``, ...) and the top-level modules (``errors``, ``atomic``,
``modelconfig``, ...); an edge A -> B means some module of A imports some module of B,
by an absolute (``DiffusionSegLib.b.x``) or a relative (``..b.x``) import. Imports inside
a module of one package do not count.

Imports inside functions (and under ``if TYPE_CHECKING``) count exactly like those at
module level. A lazy import defers the cost of loading a package, not the dependency:
the function still needs the other package at run time, and a cycle hidden behind one
(data/coordinates.py importing bpr lazily while bpr imported data) is still a cycle
between layers. The package's lazy imports exist for optional or heavy dependencies
(torch, matplotlib, the subcommands of the CLI), never to dodge a cycle, so counting them
costs nothing and keeps that true.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "DiffusionSegLib"


def module_name(path: Path, root: Path) -> str:
    """``root/data/coordinates.py`` -> ``<root name>.data.coordinates``; a package is named by its folder."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path, modules: set[str]) -> set[str]:
    """Every module of ``root``'s package that the file ``path`` imports, anywhere in it."""
    own = module_name(path, root)
    package = own if path.name == "__init__.py" else own.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # ``from . import x`` / ``from .pkg import mod`` import the module ``x`` / ``pkg.mod`` itself.
            found.update(f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in modules)
    # The deepest module of the package each name lies in (``a.b.func`` -> ``a.b``).
    result = set()
    for name in found:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            result.add(name)
    return result


def package_of(module: str) -> str:
    """The node of ``module``: the first name under the root package (the root itself is ``''``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def package_graph(root: Path) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """``{A: {B: [(module of A, module of B), ...]}}`` for every import from package A into another package B."""
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    graph: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for f in files:
        source = module_name(f, root)
        for target in imported_modules(f, root, modules):
            a, b = package_of(source), package_of(target)
            if a != b:
                graph.setdefault(a, {}).setdefault(b, []).append((source, target))
    return graph


def cycles(graph: dict[str, dict]) -> list[list[str]]:
    """The strongly connected components of more than one package (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(graph) | {w for targets in graph.values() for w in targets}):
        if v not in index:
            visit(v)
    return sorted(found)


def describe(graph: dict, component: list[str]) -> str:
    """One line per edge inside ``component``, with the modules that make it."""
    lines = []
    for a in component:
        for b in component:
            for source, target in sorted(set(graph.get(a, {}).get(b, []))):
                lines.append(f"  {a} -> {b}: {source} imports {target}")
    return "\n".join(lines)


def test_no_import_cycle_between_packages():
    graph = package_graph(ROOT)
    assert "training" in graph and "data" in graph  # the graph was read
    found = cycles(graph)
    assert not found, "import cycles between packages:\n" + "\n\n".join(describe(graph, c) for c in found)


def test_prediction_does_not_import_fine_tuning():
    """predict builds a task network from nets/ (FixedTimestepUNet), not from the code that trained it."""
    graph = package_graph(ROOT)
    assert "finetune" not in graph.get("predict", {}), describe(graph, ["predict", "finetune"])


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_cycle_is_found(tmp_path):
    """The check can fail: a synthetic package whose a and b import each other (b only inside a function)."""
    pkg = _write(tmp_path / "pkg", {
        "__init__.py": "",
        "errors.py": "",
        "a/__init__.py": "",
        "a/x.py": "from ..b.y import helper\nfrom .. import errors\n",
        "b/__init__.py": "",
        "b/y.py": "def helper():\n    from pkg.a import x\n    return x\n",
        "c/__init__.py": "from ..a import x\n",
    })
    graph = package_graph(pkg)
    assert cycles(graph) == [["a", "b"]]
    assert "b -> a: pkg.b.y imports pkg.a.x" in describe(graph, ["a", "b"])


def test_no_cycle_is_found_where_there_is_none(tmp_path):
    pkg = _write(tmp_path / "pkg", {
        "__init__.py": "",
        "a/__init__.py": "",
        "a/x.py": "from ..b import y\n",
        "b/__init__.py": "",
        "b/y.py": "from . import z\n",
        "b/z.py": "",
    })
    assert cycles(package_graph(pkg)) == []


def test_the_command_line_parser_does_not_load_torch():
    """``diffusionseg --help`` and every argparse error answer at once: building the parser reads the
    defaults from the torch-free options modules and the vocabulary, never from the training code."""
    import subprocess
    import sys

    code = ("import sys; from DiffusionSegLib.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'monai', 'SimpleITK') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.strip() == "[]", done.stdout

