"""Run DiffusionSeg's Slicer module on 3D Slicer's own Python layer, without the Slicer desktop.

``install(version)`` builds, in this Python process, what a scripted module sees inside
Slicer ``version`` (``"v5.8.1"`` or ``"v5.12.3"``):

- ``qt``: real Qt (PySide6, offscreen) with PythonQt's semantics (harness/pythonqt.py);
- ``slicer``: slicer-core's MRML, module logics and a real scene (``slicer.mrmlScene``) with
  the application logic, the Segmentations and Markups logics and the three slice views'
  composite nodes, plus Slicer's own util.py, i18n.py, ScriptedLoadableModule.py,
  parameterNodeWrapper/ and testing.py of that release (../shared/slicer-python);
- ``ctk`` and Slicer's C++ widgets and application: the minimal stand-ins of
  harness/standins.py, each naming the class it replaces.

Then ``load_module()`` loads DiffusionSeg/DiffusionSeg.py the way Slicer's module factory
does (module class, widget class on a module panel, ``setup()``, ``enter()``), and
``uninstall()`` restores the interpreter so the other version can be installed.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import tempfile
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
MODULE_DIR = REPO / "DiffusionSeg"
SLICER_PYTHON = REPO.parent / "shared" / "slicer-python"
VERSIONS = ("v5.8.1", "v5.12.3")
#: The Python each Slicer release runs (../shared/slicer-python/README.md).
PYTHON_OF = {"v5.8.1": (3, 9), "v5.12.3": (3, 12)}

#: Modules that belong to one installed version and are dropped by uninstall().
_VERSIONED = ("slicer.util", "slicer.i18n", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper",
              "slicer.testing", "DiffusionSeg", "DiffusionSegModuleLib", "DiffusionSegBatch")


def available() -> str:
    """'' when the harness can run here, else the reason it cannot (for pytest.skip)."""
    if not SLICER_PYTHON.is_dir():
        return f"{SLICER_PYTHON} is absent (Slicer's Python layer, shipped beside the repository in ../shared)"
    try:
        import PySide6  # noqa: F401
    except ImportError:
        return "PySide6 is not installed (pip install PySide6-Essentials)"
    try:
        import slicer

        if not hasattr(slicer, "vtkMRMLScene"):
            return "the 'slicer' package has no MRML: install slicer-core"
    except ImportError:
        return "slicer-core is not installed"
    return ""


def _load_file(name: str, path: Path, package: bool = False) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        name, path / "__init__.py" if package else path,
        submodule_search_locations=[str(path)] if package else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class SlicerHarness:
    """One installed Slicer version: its ``slicer``, ``qt`` and ``ctk`` modules and scene."""

    def __init__(self, version: str):
        self.version = version
        self.root = SLICER_PYTHON / version / "Base" / "Python" / "slicer"
        self.qt_messages: list[str] = []
        #: Exceptions raised in Qt slots (a click handler...). PythonQt prints them and goes on, and
        #: Slicer's tryWithErrorDisplay re-raises in testing mode: recorded here so tests can see them.
        self.slot_errors: list[BaseException] = []
        self.module = self.widget = self.modulePanel = None
        self._saved: dict = {}
        self._added_module_path = False

    # -- install / uninstall ------------------------------------------------------

    def install(self) -> "SlicerHarness":
        from . import pythonqt, standins, uiloader

        qt = pythonqt.build_qt_module()
        qt.QUiLoader = uiloader.HarnessUiLoader
        sys.modules["qt"] = qt
        sys.modules["ctk"] = standins.placeholder_module("ctk", standins.CTK_WIDGETS)
        uiloader.capture_messages(self.qt_messages)
        self._saved_excepthook = sys.excepthook
        sys.excepthook = lambda kind, error, traceback: self.slot_errors.append(error)
        settings_dir = tempfile.mkdtemp(prefix="slicer-harness-settings-")
        qt.QSettings.setDefaultFormat(qt.QSettings.IniFormat)
        qt.QSettings.setPath(qt.QSettings.IniFormat, qt.QSettings.UserScope, settings_dir)
        qt.QCoreApplication.setOrganizationName("DiffusionSegHarness")

        import slicer

        self.slicer = slicer
        self._saved = {name: getattr(slicer, name) for name in ("util",) if hasattr(slicer, name)}
        self._saved_modules = {name: sys.modules.get(name) for name in ("slicer.util",)}
        # Slicer's Python layer of this release, in Slicer's own import order.
        slicer.util = _load_file("slicer.util", self.root / "util.py")
        slicer.i18n = _load_file("slicer.i18n", self.root / "i18n.py")
        for name, cls in standins.SLICER_WIDGETS.items():
            setattr(slicer, name, cls)
        slicer.qSlicerWidget = standins.qMRMLWidget  # only used as a base-class check
        # Slicer's other C++ widget classes (qMRMLRangeWidget...) are only compared against:
        # empty placeholders named after them, created on first use.
        placeholders = standins.placeholder_module("slicer", {})
        slicer.__getattr__ = lambda name: placeholders.__getattr__(name) if name.startswith("q") else \
            (_ for _ in ()).throw(AttributeError(name))
        scene, app_logic, seg_logic, markups_logic = self._create_scene()
        slicer.mrmlScene = scene
        slicer.app = standins.qSlicerApplication(qt.QApplication.instance(), app_logic, str(REPO),
                                                 tempfile.mkdtemp(prefix="slicer-harness-tmp-"))
        volumes_logic = slicer.vtkSlicerVolumesLogic()
        volumes_logic.SetMRMLApplicationLogic(app_logic)
        volumes_logic.SetMRMLScene(scene)
        slicer.modules = types.SimpleNamespace(  # qSlicerModuleManager's modules: their real logics
            segmentations=types.SimpleNamespace(logic=lambda: seg_logic, name="Segmentations"),
            markups=types.SimpleNamespace(logic=lambda: markups_logic, name="Markups"),
            volumes=types.SimpleNamespace(logic=lambda: volumes_logic, name="Volumes"))
        slicer.selfTests = {}
        slicer.parameterNodeWrapper = _load_file("slicer.parameterNodeWrapper", self.root / "parameterNodeWrapper",
                                                 package=True)
        slicer.ScriptedLoadableModule = _load_file("slicer.ScriptedLoadableModule",
                                                   self.root / "ScriptedLoadableModule.py")
        slicer.testing = _load_file("slicer.testing", self.root / "testing.py")
        return self

    def _create_scene(self):
        """Slicer's scene with its logics: the module's own MRMLContext.create (application logic,
        Segmentations and Markups logics), plus what a Slicer scene also holds below."""
        if str(MODULE_DIR) not in sys.path:
            sys.path.insert(0, str(MODULE_DIR))
            self._added_module_path = True
        from DiffusionSegModuleLib.nodeio import MRMLContext

        context = MRMLContext.create()
        scene, app_logic = context.scene, context.application_logic
        seg_logic, markups_logic = context.segmentations_logic, context.markups_logic
        slicer = self.slicer
        # The three slice views' composite nodes (what setSliceViewerLayers switches).
        for view in ("Red", "Yellow", "Green"):
            composite = slicer.vtkMRMLSliceCompositeNode()
            composite.SetLayoutName(view)
            composite.SetSingletonTag(view)
            scene.AddNode(composite)
        for singleton in ("vtkMRMLInteractionNode", "vtkMRMLSelectionNode"):
            if scene.GetFirstNodeByClass(singleton) is None:
                node = scene.CreateNodeByClass(singleton)
                node.SetSingletonTag("Singleton")
                scene.AddNode(node)
        return scene, app_logic, seg_logic, markups_logic

    def uninstall(self) -> None:
        if self.widget is not None:
            try:
                self.widget.cleanup()
            except Exception:  # a failed test may leave a half-built widget
                logging.exception("cleanup failed")
        if self.modulePanel is not None:
            self.modulePanel.deleteLater()
        for name in list(sys.modules):
            if any(name == v or name.startswith(v + ".") for v in _VERSIONED):
                del sys.modules[name]
        for name, module in self._saved_modules.items():
            if module is not None:
                sys.modules[name] = module
        for name, value in self._saved.items():
            setattr(self.slicer, name, value)
        for name in ("i18n", "ScriptedLoadableModule", "parameterNodeWrapper", "testing", "app", "mrmlScene",
                     "modules", "selfTests", "__getattr__"):
            self.slicer.__dict__.pop(name, None)
        if self._added_module_path and str(MODULE_DIR) in sys.path:
            sys.path.remove(str(MODULE_DIR))
        from . import uiloader

        uiloader.capture_messages(None)
        sys.excepthook = self._saved_excepthook

    # -- the module, as Slicer's scripted-module factory loads it -------------------

    def load_module(self, with_widget: bool = True):
        """Import DiffusionSeg.py from the module folder (on sys.path, as qt-scripted-modules is),
        create the module object, and (with_widget) the panel: Widget(panel), setup(), enter()."""
        from . import standins

        if str(MODULE_DIR) not in sys.path:
            sys.path.insert(0, str(MODULE_DIR))
            self._added_module_path = True
        python_module = _load_file("DiffusionSeg", MODULE_DIR / "DiffusionSeg.py")
        parent = standins.qSlicerScriptedLoadableModule(str(MODULE_DIR / "DiffusionSeg.py"))
        self.module = python_module.DiffusionSeg(parent)
        parent.name = "DiffusionSeg"
        self.slicer.modules.diffusionseg = parent
        self.python_module = python_module
        if with_widget:
            self.modulePanel = standins.qSlicerScriptedLoadableModuleWidget()
            parent._widgetRepresentation = self.modulePanel
            self.widget = python_module.DiffusionSegWidget(self.modulePanel)
            self.modulePanel._python = self.widget
            self.widget.setup()
            self.modulePanel._entered = True
            self.widget.enter()
        return python_module

    def process_events(self, seconds: float = 0.0) -> None:
        """Run the Qt event loop for ``seconds`` (timers fire, queued signals arrive)."""
        import time

        qt = sys.modules["qt"]
        end = time.monotonic() + seconds
        while True:
            qt.QApplication.processEvents()
            if time.monotonic() >= end:
                return
            time.sleep(0.02)
