"""Static checks of the scripted module that need no Slicer: the .ui, the code that uses it,
the parameter node bindings, packaging files and the dependency list."""

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MODULE = REPO / "DiffusionSeg"
SOURCE = (MODULE / "DiffusionSeg.py").read_text()
UI = ET.parse(MODULE / "Resources" / "UI" / "DiffusionSeg.ui")

# The widget class each parameter type needs (slicer.parameterNodeWrapper.guiConnectors
# matches the exact class, e.g. a ctkSpinBox would not bind to an int).
CONNECTOR_WIDGETS = {"Path": "ctkPathLineEdit", "Choice": "QComboBox", "int": "QSpinBox", "str": "QLineEdit",
                     "node": "qMRMLNodeComboBox"}


def ui_widgets():
    return {w.get("name"): w.get("class") for w in UI.iter("widget")}


def ui_parameter_bindings():
    bindings = {}
    for widget in UI.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bindings[prop.find("string").text] = widget.get("class")
    return bindings


def parameter_node_fields():
    """name -> kind ('Path', 'Choice', 'int', 'str' or 'node') from the @parameterNodeWrapper class."""
    tree = ast.parse(SOURCE)
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DiffusionSegParameterNode"]
    fields = {}
    for statement in cls.body:
        if isinstance(statement, ast.AnnAssign):
            text = ast.unparse(statement.annotation)
            kind = ("Choice" if "Choice(" in text else "Path" if text == "Path" else
                    "node" if "vtkMRML" in text else "int" if "int" in text else "str")
            fields[statement.target.id] = kind
    return fields


def test_every_widget_the_code_uses_exists_in_the_ui():
    used = set(re.findall(r"self\.ui\.(\w+)", SOURCE))
    # Names used indirectly: getattr(self.ui, name) over string literals.
    used |= {name for name in re.findall(r'"(\w+(?:Button|ComboBox|LineEdit|SpinBox|Selector|Label|Bar))"', SOURCE)}
    assert used, "the regexes found nothing: the test is broken"
    missing = sorted(used - set(ui_widgets()))
    assert not missing, f"used in DiffusionSeg.py but not in DiffusionSeg.ui: {missing}"


def test_ui_bindings_match_the_parameter_node():
    fields = parameter_node_fields()
    bindings = ui_parameter_bindings()
    assert set(bindings) == set(fields), "each parameter is bound to exactly the widgets of the .ui"
    for name, widget_class in bindings.items():
        assert widget_class == CONNECTOR_WIDGETS[fields[name]], f"{name}: {widget_class}"


def test_ui_is_structurally_sound():
    names = [w.get("name") for w in UI.iter("widget")]
    assert len(names) == len(set(names)), "duplicate objectName in the .ui"
    assert UI.getroot().find("widget").get("class") == "qMRMLWidget"
    declared = {c.find("class").text for c in UI.iter("customwidget")}
    used = {w.get("class") for w in UI.iter("widget") if not w.get("class").startswith("Q")}
    assert used <= declared
    receivers = {c.find("receiver").text for c in UI.iter("connection")}
    combos = {n for n, c in ui_widgets().items() if c == "qMRMLNodeComboBox"}
    assert receivers == combos, "every node combo box gets the scene"


def test_module_file_follows_the_template_order():
    tree = ast.parse(SOURCE)
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    assert classes == ["DiffusionSeg", "DiffusionSegParameterNode", "DiffusionSegWidget", "DiffusionSegLogic",
                       "DiffusionSegTest"]
    assert "from slicer.i18n import tr as _" in SOURCE


def test_cmake_lists_every_module_file():
    cmake = (MODULE / "CMakeLists.txt").read_text()
    for path in sorted(MODULE.rglob("*")):
        relative = path.relative_to(MODULE).as_posix()
        if path.is_file() and path.suffix in (".py", ".ui", ".png") and "__pycache__" not in relative:
            name = relative[:-3] if relative.endswith(".py") else relative
            assert relative in cmake or name in cmake.replace("${MODULE_NAME}", "DiffusionSeg"), relative
    top = (REPO / "CMakeLists.txt").read_text()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", 'EXTENSION_DEPENDS "PyTorch"',
                "add_subdirectory(DiffusionSeg)"):
        assert key in top, key


def test_icon_is_a_real_png():
    data = (MODULE / "Resources" / "Icons" / "DiffusionSeg.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_requirements_never_touch_slicers_own_packages():
    import sys

    sys.path.insert(0, str(MODULE))
    from DiffusionSegModuleLib import dependencies

    requirements = dependencies.read_requirements()
    names = {dependencies.requirement_name(r).lower() for r in requirements}
    assert names == {"monai", "einops", "safetensors", "slicerio"}
    assert not names & {p.lower() for p in dependencies.PROTECTED}
    assert dependencies.missing_requirements(requirements) == []  # the test venv has them all
    assert dependencies.missing_requirements(["monai>=999"]) == ["monai>=999"]
    assert dependencies.missing_requirements(["surely-not-installed-pkg"]) == ["surely-not-installed-pkg"]
    pins = dependencies.constraints()
    assert any(p.startswith("numpy==") for p in pins) and any(p.startswith("torch==") for p in pins)


@pytest.mark.parametrize("path", ["DiffusionSeg/DiffusionSegModuleLib"])
def test_qt_free_parts_never_import_qt(path):
    for file in (REPO / path).glob("*.py"):
        tree = ast.parse(file.read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & {"qt", "ctk", "torch", "monai"}, file.name
