"""Qt's real .ui loader (QUiLoader), creating the stand-ins for Slicer's and CTK's widgets,
and a Qt message handler that records every warning the loader or Qt prints.

Two things of a Slicer .ui file cannot pass through Qt's meta-object system to a widget
written in Python, so the loader translates them before Qt reads the file, and checks them:

- ``<set>ctkPathLineEdit::Dirs</set>``: the C++ enum of a stand-in property becomes its number;
- connections whose signature carries an MRML pointer (``mrmlSceneChanged(vtkMRMLScene*)``
  to ``setMRMLScene(vtkMRMLScene*)``) are removed from the XML and made in Python after
  loading, between the same two named widgets, and only if both ends exist.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from PySide6 import QtCore, QtUiTools

from . import standins

_sink: list | None = None


def _handler(kind, context, message):
    if _sink is not None and kind != QtCore.QtMsgType.QtDebugMsg:
        _sink.append(message)


def capture_messages(sink: list | None) -> None:
    """Send Qt's warnings to ``sink`` (None: stop)."""
    global _sink
    _sink = sink
    QtCore.qInstallMessageHandler(_handler if sink is not None else None)


def _warn(message: str) -> None:
    if _sink is not None:
        _sink.append(message)


def _set_value(text: str) -> int | None:
    """``ctkPathLineEdit::Dirs|ctkPathLineEdit::Files`` as the stand-in's number (None: not ours)."""
    total = 0
    for part in text.split("|"):
        scope, _, key = part.strip().rpartition("::")
        cls = standins.CTK_WIDGETS.get(scope) or standins.SLICER_WIDGETS.get(scope)
        enum = getattr(cls, "Filter", None) if cls else None
        if enum is None or key not in enum.__members__:
            return None
        total |= int(enum[key])
    return total


def translate(xml: bytes) -> tuple[bytes, list[tuple[str, str, str, str]]]:
    """The .ui XML for Qt's loader, and the MRML connections to make in Python."""
    root = ET.fromstring(xml)
    for prop in root.iter("property"):
        value = prop.find("set")
        if value is not None and value.text and _set_value(value.text) is not None:
            prop.remove(value)
            ET.SubElement(prop, "number").text = str(_set_value(value.text))
    pending = []
    connections = root.find("connections")
    if connections is not None:
        for connection in list(connections):
            fields = {child.tag: (child.text or "") for child in connection}
            if "vtkMRML" in fields.get("signal", "") + fields.get("slot", ""):
                connections.remove(connection)
                pending.append((fields["sender"], fields["signal"], fields["receiver"], fields["slot"]))
    return ET.tostring(root), pending


class HarnessUiLoader(QtUiTools.QUiLoader):
    """QUiLoader that builds Slicer's and CTK's custom widgets as their stand-ins (real
    Slicer registers the real classes as Designer plugins, which is what this replaces)."""

    CUSTOM = {**standins.CTK_WIDGETS, **standins.SLICER_WIDGETS}

    def createWidget(self, className, parent=None, name=""):
        cls = self.CUSTOM.get(className)
        if cls is None:
            return super().createWidget(className, parent, name)
        widget = cls(parent)
        widget.setObjectName(name)
        return widget

    def load(self, device, parentWidget=None):
        if isinstance(device, QtCore.QIODevice):
            if not device.isOpen():
                device.open(QtCore.QIODevice.OpenModeFlag.ReadOnly)
            xml = bytes(device.readAll())
        else:
            xml = QtCore.QFile(device)
            xml.open(QtCore.QIODevice.OpenModeFlag.ReadOnly)
            xml = bytes(xml.readAll())
        translated, pending = translate(xml)
        buffer = QtCore.QBuffer()
        buffer.setData(QtCore.QByteArray(translated))
        buffer.open(QtCore.QIODevice.OpenModeFlag.ReadOnly)
        widget = super().load(buffer, parentWidget)
        if widget is not None:
            for sender, signal, receiver, slot in pending:
                self._connect(widget, sender, signal, receiver, slot)
        return widget

    @staticmethod
    def _connect(top, sender, signal, receiver, slot) -> None:
        def find(name):
            return top if top.objectName() == name else top.findChild(QtCore.QObject, name)

        source, target = find(sender), find(receiver)
        signal_name, slot_name = signal.split("(")[0], slot.split("(")[0]
        if source is None or target is None:
            _warn(f"QObject::connect: no widget named {sender if source is None else receiver} ({signal} -> {slot})")
            return
        if not hasattr(source, signal_name) or not hasattr(target, slot_name):
            _warn(f"QObject::connect: No such signal or slot {type(source).__name__}::{signal} -> "
                  f"{type(target).__name__}::{slot}")
            return
        getattr(source, signal_name).connect(getattr(target, slot_name))
