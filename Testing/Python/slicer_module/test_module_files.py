"""Static checks of the scripted module that need no Slicer: the .ui, the code that uses it,
the parameter node bindings, packaging files and the dependency list."""

import ast
import json
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
                     "bool": "QCheckBox", "node": "qMRMLNodeComboBox"}


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
    """name -> kind ('Path', 'Choice', 'int', 'bool', 'str' or 'node') from the @parameterNodeWrapper class."""
    tree = ast.parse(SOURCE)
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DiffusionSegParameterNode"]
    fields = {}
    for statement in cls.body:
        if isinstance(statement, ast.AnnAssign):
            text = ast.unparse(statement.annotation)
            kind = ("Choice" if "Choice(" in text else "Path" if text == "Path" else "bool" if text == "bool" else
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
    mrml_widgets = {n for n, c in ui_widgets().items() if c in ("qMRMLNodeComboBox", "qMRMLSegmentEditorWidget")}
    assert receivers == mrml_widgets, "every MRML widget gets the scene"


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
    assert {"monai", "einops", "safetensors", "slicerio"} <= names  # the full list: test_slicer_requirements.py
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


def cmake_list(text, variable):
    """The entries of ``set(VARIABLE a b c)`` in a CMakeLists.txt, ${MODULE_NAME} expanded."""
    match = re.search(r"set\(\s*" + variable + r"\s+(.*?)\)", text, re.S)
    assert match, f"no set({variable} ...)"
    body = re.sub(r"#.*", "", match.group(1)).replace("${MODULE_NAME}", "DiffusionSeg")
    return [quoted or bare for quoted, bare in re.findall(r'"([^"]*)"|(\S+)', body)]


def test_only_the_module_is_a_top_level_script():
    """Slicer loads every .py at the top of qt-scripted-modules as a module at start-up (and runs
    its top-level code); helper scripts must be resources under a subfolder (Scripts/)."""
    cmake = (MODULE / "CMakeLists.txt").read_text()
    scripts = cmake_list(cmake, "MODULE_PYTHON_SCRIPTS")
    resources = cmake_list(cmake, "MODULE_PYTHON_RESOURCES")
    assert "DiffusionSeg.py" in scripts and "Scripts/DiffusionSegBatch.py" in resources
    top_level = [s for s in scripts + resources if "/" not in s and s.endswith(".py") and s != "DiffusionSeg.py"]
    assert not top_level, f"would be loaded as Slicer modules: {top_level}"
    for entry in scripts:
        assert (MODULE / entry).is_file() or (MODULE / f"{entry}.py").is_file(), entry
    for entry in resources:
        assert (MODULE / entry).is_file(), entry


def extension_settings():
    """set(EXTENSION_X "...") of the top-level CMakeLists.txt, as a dict."""
    text = (REPO / "CMakeLists.txt").read_text()
    return dict(re.findall(r'set\((EXTENSION_\w+)\s+"([^"]*)"\)', text))


def test_extension_urls_name_files_of_this_repository():
    """Every EXTENSION_*URL(S) that points into this repository (raw.githubusercontent.com/<org>/<repo>/
    <branch>/<path>) names a file that exists here; the index shows broken images otherwise."""
    settings = extension_settings()
    homepage = settings["EXTENSION_HOMEPAGE"].rstrip("/")
    org_repo = homepage.removeprefix("https://github.com/")
    urls = [u for key, value in settings.items() if re.fullmatch(r"EXTENSION_\w*URLS?", key) for u in value.split()]
    assert any("ICONURL" in k for k in settings) and any("SCREENSHOTURLS" in k for k in settings)
    ours = [u for u in urls if u.startswith(f"https://raw.githubusercontent.com/{org_repo}/")]
    assert len(ours) >= 1, urls  # the icon (the screenshot is to be taken in a real Slicer)
    for url in ours:
        path = url.split("/", 6)[6]  # https: '' host org repo branch path
        assert (REPO / path).is_file(), f"{url}: {path} does not exist in the repository"
    icon = settings["EXTENSION_ICONURL"].split("/", 6)[6]
    assert (REPO / icon).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_extension_metadata_is_complete():
    settings = extension_settings()
    assert settings["EXTENSION_CATEGORY"] == "Segmentation"
    assert settings["EXTENSION_STATUS"] in ("Experimental", "Beta", "Production")
    assert settings["EXTENSION_DEPENDS"] == "PyTorch"
    top = (REPO / "CMakeLists.txt").read_text()
    assert "5.8" in top and "5.12" in top, "the supported Slicer versions are stated"


def test_extensions_index_entry():
    """DiffusionSeg.json, the file submitted to Slicer/ExtensionsIndex (one per Slicer release
    branch: 5.8, 5.12, main), in the catalog-entry schema v1.0.1 format the index uses: required
    $schema, category, scm_url; no other keys than the schema's; types as the schema's."""
    entry = json.loads((REPO / "DiffusionSeg.json").read_text())
    types = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
             "build_dependencies": list, "build_subdirectory": str, "enabled": bool, "tier": int}
    assert {"$schema", "category", "scm_url"} <= set(entry)
    assert set(entry) <= set(types), set(entry) - set(types)
    for key, value in entry.items():
        assert isinstance(value, types[key]) and not (types[key] is int and isinstance(value, bool)), key
    assert entry["$schema"] == ("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
                                "slicer-extension-catalog-entry-schema-v1.0.1.json#")
    assert all(isinstance(d, str) for d in entry["build_dependencies"])
    assert 1 <= entry.get("tier", 1) <= 5 and entry.get("scm_type", "git") in ("git", "local")
    # Consistent with the top-level CMakeLists.txt, as the index's review checklist asks.
    settings = extension_settings()
    assert entry["category"] == settings["EXTENSION_CATEGORY"] == "Segmentation"
    assert entry["build_dependencies"] == settings["EXTENSION_DEPENDS"].split() == ["PyTorch"]
    assert entry["scm_url"].removesuffix(".git") == settings["EXTENSION_HOMEPAGE"]
    assert entry["build_subdirectory"] == "."
