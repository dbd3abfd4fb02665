"""pytest fixtures that run the module on Slicer's own Python layer (harness/), one Slicer
release at a time, and skip cleanly when ../shared/slicer-python, PySide6 or slicer-core is absent."""

from __future__ import annotations

import pytest

from harness import VERSIONS, SlicerHarness, available


@pytest.fixture(params=VERSIONS)
def slicer_harness(request):
    """Slicer ``request.param``'s Python layer installed (no module loaded yet)."""
    reason = available()
    if reason:
        pytest.skip(reason)
    harness = SlicerHarness(request.param).install()
    yield harness
    harness.uninstall()


@pytest.fixture
def slicer_panel(slicer_harness):
    """The DiffusionSeg panel as Slicer builds it: module, widget on a module panel, setup(), enter().

    Fails the test on any Qt warning printed while loading (layout errors, missing
    signals or slots, unreadable properties) and on any exception raised in a Qt slot.
    """
    slicer_harness.load_module(with_widget=True)
    assert slicer_harness.qt_messages == [], slicer_harness.qt_messages
    yield slicer_harness
    # A handler that raised is a failure even when the test's own checks passed; a test that
    # expects one takes it out of the list.
    assert slicer_harness.slot_errors == [], slicer_harness.slot_errors
