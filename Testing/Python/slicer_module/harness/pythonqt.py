"""A ``qt`` module with PythonQt's semantics, built on real Qt (PySide6, offscreen).

Slicer's Python sees Qt through PythonQt, not PySide. The differences that Slicer's own
Python layer (util.py, parameterNodeWrapper, ScriptedLoadableModule.py) and a scripted
module rely on, and that this file adds on top of PySide6's real classes:

- Qt properties read and written as attributes (``button.text = "Go"``, ``box.currentIndex``),
  with the property shadowing a getter of the same name, as in PythonQt;
- ``obj.connect("clicked(bool)", slot)`` / ``obj.disconnect(...)`` with C++ signatures;
- ``obj.name`` for the objectName and ``obj.className()`` for the C++ class name;
- one flat ``qt`` namespace holding QtCore, QtGui, QtWidgets and QUiLoader.

Everything else (widgets, layouts, signals, the .ui loader, QSettings) is real Qt.
"""

from __future__ import annotations

import os
import types

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shiboken6  # noqa: E402
from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets  # noqa: E402

_object_getattribute = QtCore.QObject.__getattribute__
_object_setattr = shiboken6.Object.__setattr__  # the C-level setattr below every Qt class
# Names that must stay methods although a Qt property of that name exists.
_METHODS = frozenset({"metaObject", "property", "setProperty", "objectName", "setObjectName", "parent",
                      "children", "layout", "connect", "disconnect"})


def _property_index(obj, name: str) -> int:
    if name.startswith("_") or name in _METHODS:
        return -1
    return _object_getattribute(obj, "metaObject")().indexOfProperty(name)


def _getattribute(self, name):
    override = _OVERRIDES.get(name)
    if override is not None:  # Shiboken finds its own connect() before the class dict
        return types.MethodType(override, self)
    if _property_index(self, name) >= 0:
        return _object_getattribute(self, "property")(name)
    if name == "name":  # PythonQt: the objectName
        return _object_getattribute(self, "objectName")()
    return _object_getattribute(self, name)


def _setattr(self, name, value):
    if _property_index(self, name) >= 0:
        if isinstance(value, tuple):  # PythonQt converts any sequence to a QStringList / QVariantList
            value = list(value)
        if not _object_getattribute(self, "setProperty")(name, value):
            raise AttributeError(f"cannot set Qt property {name!r} of {type(self).__name__} to {value!r}")
        return
    if name == "name":
        _object_getattribute(self, "setObjectName")(value)
        return
    _object_setattr(self, name, value)


def _signal(obj, signature: str):
    name = signature.split("(", 1)[0].strip()
    return _object_getattribute(obj, name)


def _connect(self, signature, slot, *rest):
    """PythonQt's ``obj.connect("signal(args)", callable)``."""
    if not isinstance(signature, str) or rest:
        raise TypeError("this harness supports PythonQt's obj.connect('signal(args)', callable) only")
    _signal(self, signature).connect(slot)
    return True


def _disconnect(self, signature, slot=None):
    signal = _signal(self, signature)
    try:
        signal.disconnect() if slot is None else signal.disconnect(slot)
    except (RuntimeError, TypeError):
        return False
    return True


def _class_name(self) -> str:
    return _object_getattribute(self, "metaObject")().className()


_OVERRIDES = {"connect": _connect, "disconnect": _disconnect, "className": _class_name}


def _install_on(cls) -> None:
    # Every Qt class carries its own C-level attribute slots, so each one is patched.
    setattr(cls, "__getattribute__", _getattribute)
    setattr(cls, "__setattr__", _setattr)


#: The classes whose instances get PythonQt's attribute semantics: widgets, layouts, actions,
#: timers and plain QObjects (Python subclasses of QObject inherit it). Not QFile and the
#: other QIODevices: Shiboken's lookup of their static-and-instance overloads (QFile.exists)
#: crashes under a Python-level __getattribute__, and nothing here reads their properties.
_PYTHONQT_STYLE = (QtWidgets.QWidget, QtWidgets.QLayout, QtGui.QAction, QtCore.QTimer)

_installed = False


def build_qt_module() -> types.ModuleType:
    """The ``qt`` module (and QApplication) of PythonQt, backed by PySide6."""
    global _installed
    qt = types.ModuleType("qt")
    qt.__doc__ = __doc__
    for module in (QtCore, QtGui, QtWidgets, QtUiTools):
        for name in dir(module):
            if not name.startswith("_"):
                setattr(qt, name, getattr(module, name))
    if not _installed:
        for module in (QtCore, QtGui, QtWidgets, QtUiTools):
            for name in dir(module):
                cls = getattr(module, name)
                if isinstance(cls, type) and issubclass(cls, _PYTHONQT_STYLE):
                    _install_on(cls)
        _install_on(QtCore.QObject)
        _installed = True
    if QtWidgets.QApplication.instance() is None:
        qt._application = QtWidgets.QApplication(["SlicerHarness"])
    return qt
