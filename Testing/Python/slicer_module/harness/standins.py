"""Stand-ins for the parts of 3D Slicer that cannot run here: its C++ Qt widgets and application.

Everything else the module touches is real: Qt (PySide6), MRML and the module logics
(slicer-core), and Slicer's own Python layer (util.py, ScriptedLoadableModule.py,
parameterNodeWrapper, i18n) copied from a Slicer release. Each class below names the
real class it replaces and implements only what DiffusionSeg and Slicer's Python layer
call on it; the class names are the real ones, so ``className()`` and
``type(widget) == ctk.ctkPathLineEdit`` behave as in Slicer.
"""

from __future__ import annotations

import enum
import types

from PySide6 import QtCore, QtWidgets

Property, Signal, Slot = QtCore.Property, QtCore.Signal, QtCore.Slot


# -- CTK widgets -----------------------------------------------------------------------


class ctkCollapsibleButton(QtWidgets.QWidget):
    """Replaces ctkCollapsibleButton (a container whose title button folds its contents)."""

    contentsCollapsed = Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._text, self._collapsed = "", False

    def _getText(self):
        return self._text

    def _setText(self, value):
        self._text = value

    def _getCollapsed(self):
        return self._collapsed

    def _setCollapsed(self, value):
        self._collapsed = bool(value)
        self.contentsCollapsed.emit(self._collapsed)

    text = Property(str, _getText, _setText)
    collapsed = Property(bool, _getCollapsed, _setCollapsed)


class ctkPathLineEdit(QtWidgets.QWidget):
    """Replaces ctkPathLineEdit (a path field with a browse button; here only the path)."""

    class Filter(enum.IntFlag):
        """ctkPathLineEdit::Filter (ctkPathLineEdit.h); the loader turns <set>ctkPathLineEdit::Dirs</set>
        into these numbers, since a Python-defined Qt property cannot carry a C++ enum type."""

        Dirs = 0x001
        Files = 0x002
        Drives = 0x004
        AllEntries = 0x007
        NoDotAndDotDot = 0x1000
        Readable = 0x010
        Writable = 0x020
        Executable = 0x040

    currentPathChanged = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._path, self._filters, self._nameFilters = "", int(self.Filter.Files), []

    def _getPath(self):
        return self._path

    def _setPath(self, value):
        value = str(value)
        if value != self._path:
            self._path = value
            self.currentPathChanged.emit(value)

    def _getFilters(self):
        return self._filters

    def _setFilters(self, value):
        self._filters = int(value)

    def _getNameFilters(self):
        return list(self._nameFilters)

    def _setNameFilters(self, value):
        self._nameFilters = list(value)

    currentPath = Property(str, _getPath, _setPath)
    filters = Property(int, _getFilters, _setFilters)
    nameFilters = Property("QStringList", _getNameFilters, _setNameFilters)


# -- Slicer MRML widgets -------------------------------------------------------------


class qMRMLWidget(QtWidgets.QWidget):
    """Replaces qMRMLWidget: a QWidget that holds the MRML scene and passes it on by signal."""

    mrmlSceneChanged = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    def mrmlScene(self):
        return self._scene

    @Slot(object)
    def setMRMLScene(self, scene):
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)


class qMRMLNodeComboBox(QtWidgets.QComboBox):
    """Replaces qMRMLNodeComboBox: lists the scene's nodes of ``nodeTypes``; no add/rename/delete UI.

    The current node is kept as a node reference; a node removed from the scene stops
    being current (as in Slicer).
    """

    currentNodeChanged = Signal(object)
    currentNodeIDChanged = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene, self._current, self._nodeTypes = None, None, []
        for name in ("showChildNodeTypes", "addEnabled", "removeEnabled", "noneEnabled", "renameEnabled",
                     "editEnabled", "selectNodeUponCreation", "showHidden"):
            self.setProperty("_" + name, False)

    def _getNodeTypes(self):
        return list(self._nodeTypes)

    def _setNodeTypes(self, value):
        self._nodeTypes = [str(v) for v in value]

    nodeTypes = Property("QStringList", _getNodeTypes, _setNodeTypes)

    def _flag(name):  # noqa: N805  (a Property factory for the boolean options of the real widget)
        return Property(bool, lambda self: bool(self.property("_" + name)),
                        lambda self, value: self.setProperty("_" + name, bool(value)))

    showChildNodeTypes = _flag("showChildNodeTypes")
    addEnabled = _flag("addEnabled")
    removeEnabled = _flag("removeEnabled")
    noneEnabled = _flag("noneEnabled")
    renameEnabled = _flag("renameEnabled")
    editEnabled = _flag("editEnabled")
    selectNodeUponCreation = _flag("selectNodeUponCreation")
    showHidden = _flag("showHidden")
    del _flag

    def mrmlScene(self):
        return self._scene

    @Slot(object)
    def setMRMLScene(self, scene):
        self._scene = scene

    def nodes(self):
        if self._scene is None:
            return []
        found = []
        for nodeType in self._nodeTypes:
            for i in range(self._scene.GetNumberOfNodesByClass(nodeType)):
                node = self._scene.GetNthNodeByClass(i, nodeType)
                if node not in found and (self.showHidden or not node.GetHideFromEditors()):
                    found.append(node)
        return found

    def currentNode(self):
        node = self._current
        if node is not None and (self._scene is None or node.GetScene() is not self._scene):
            self._current = None
        return self._current

    def currentNodeID(self):
        node = self.currentNode()
        return node.GetID() if node else ""

    def setCurrentNode(self, node):
        if node is not None and self._nodeTypes and not any(node.IsA(t) for t in self._nodeTypes):
            raise TypeError(f"{node.GetClassName()} is not one of {self._nodeTypes}")
        if node is self._current:
            return
        self._current = node
        self.currentNodeChanged.emit(node)
        self.currentNodeIDChanged.emit(node.GetID() if node else "")

    def setCurrentNodeID(self, nodeID):
        self.setCurrentNode(self._scene.GetNodeByID(nodeID) if nodeID else None)


class qMRMLSegmentEditorWidget(QtWidgets.QWidget):
    """Replaces qMRMLSegmentEditorWidget (Segment Editor's effects and segment list; here only
    which segmentation and source volume it edits, which is what a module sets)."""

    segmentationNodeChanged = Signal(object)
    sourceVolumeNodeChanged = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = self._editorNode = self._segmentation = self._source = None

    @Slot(object)
    def setMRMLScene(self, scene):
        self._scene = scene

    def mrmlScene(self):
        return self._scene

    def setMRMLSegmentEditorNode(self, node):
        self._editorNode = node

    def mrmlSegmentEditorNode(self):
        return self._editorNode

    def setSegmentationNode(self, node):
        self._segmentation = node
        if self._editorNode is not None:
            self._editorNode.SetAndObserveSegmentationNode(node)
        self.segmentationNodeChanged.emit(node)

    def segmentationNode(self):
        return self._segmentation

    def setSourceVolumeNode(self, node):
        self._source = node
        if self._editorNode is not None:
            self._editorNode.SetAndObserveSourceVolumeNode(node)
        self.sourceVolumeNodeChanged.emit(node)

    def sourceVolumeNode(self):
        return self._source

    def setActiveEffectByName(self, name):
        self._effect = name

    def setActiveEffect(self, effect):
        self._effect = effect


SLICER_WIDGETS = {cls.__name__: cls for cls in (qMRMLWidget, qMRMLNodeComboBox, qMRMLSegmentEditorWidget)}
CTK_WIDGETS = {cls.__name__: cls for cls in (ctkCollapsibleButton, ctkPathLineEdit)}


def placeholder_module(name: str, classes: dict) -> types.ModuleType:
    """A module whose listed classes are the stand-ins above and whose other names are
    empty placeholder classes (named after the real class), so that ``type(w) == ctk.X``
    is simply False for widgets that are not used here."""
    module = types.ModuleType(name)
    module.__dict__.update(classes)

    def __getattr__(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        placeholder = type(attr, (QtWidgets.QWidget,), {"__doc__": f"Placeholder for {name}.{attr} (unused here)."})
        setattr(module, attr, placeholder)
        return placeholder

    module.__getattr__ = __getattr__
    return module


# -- The application and the module's Qt side ---------------------------------------


class qSlicerModuleManager(QtCore.QObject):
    """Replaces qSlicerModuleManager: only the unload signal that module widgets connect to."""

    moduleAboutToBeUnloaded = Signal(str)


class qSlicerApplication:
    """Replaces slicer.app (qSlicerApplication) in testing mode with no main window:
    what Slicer's util.py and a scripted module call on it."""

    def __init__(self, qapp, application_logic, slicer_home: str, temporary_path: str):
        self._qapp = qapp
        self._applicationLogic = application_logic
        self._moduleManager = qSlicerModuleManager()
        self.slicerHome = slicer_home
        self.temporaryPath = temporary_path
        self.applicationName = "Slicer"
        self.exitCode = None
        self._commandOptions = types.SimpleNamespace(runPythonAndExit=True, testingEnabled=True, noMainWindow=True)
        self.commandOptions = lambda: self._commandOptions

    def testingEnabled(self):
        return True  # Slicer's own self-tests run so: dialogs log and return their default

    def processEvents(self, *args):
        self._qapp.processEvents()

    def moduleManager(self):
        return self._moduleManager

    def applicationLogic(self):
        return self._applicationLogic

    def layoutManager(self):
        return None  # no views: as Slicer with --no-main-window

    def mainWindow(self):
        return None

    def setOverrideCursor(self, cursor):
        pass

    def restoreOverrideCursor(self):
        pass

    def pauseRender(self):
        pass

    def resumeRender(self):
        pass

    def settings(self):
        return QtCore.QSettings()

    userSettings = settings

    def startupEnvironment(self):
        import os

        return dict(os.environ)

    def translate(self, context, text):
        return QtCore.QCoreApplication.translate(context, text)

    def exit(self, status=0):
        self.exitCode = status

    def restart(self):
        raise RuntimeError("restart requested")


class qSlicerScriptedLoadableModule:
    """Replaces qSlicerScriptedLoadableModule, the C++ module object a ScriptedLoadableModule
    describes (``parent`` in DiffusionSeg.__init__): plain attributes, its path and logic."""

    def __init__(self, path: str):
        self.path = path
        self.title = self.helpText = self.acknowledgementText = ""
        self.categories, self.dependencies, self.contributors = [], [], []
        self.icon = None
        self.hidden = False
        self._widgetRepresentation = None
        self.name = None

    def widgetRepresentation(self):
        return self._widgetRepresentation


class qSlicerScriptedLoadableModuleWidget(QtWidgets.QWidget):
    """Replaces qSlicerScriptedLoadableModuleWidget, the panel a module widget draws into."""

    def __init__(self):
        super().__init__()
        self.setLayout(QtWidgets.QVBoxLayout())
        self._entered = False
        self._python = None

    def _getEntered(self):
        return self._entered

    isEntered = Property(bool, _getEntered)

    def self(self):
        return self._python
