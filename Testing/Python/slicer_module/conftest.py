"""Shared fixtures for the Slicer module's tests (pytest, no Slicer application).

The Qt-free parts of the module (DiffusionSeg/DiffusionSegModuleLib) are imported
directly; the MRML tests use the ``slicer-core`` wheel and skip with a reason when it
is not installed.
"""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
MODULE_DIR = REPO / "DiffusionSeg"

for path in (MODULE_DIR, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def _import_slicer_core():
    try:
        import slicer  # noqa: F401  (slicer-core: MRML without Qt)

        if not hasattr(slicer, "vtkMRMLScene"):
            return None, "the 'slicer' package found has no MRML (vtkMRMLScene); install slicer-core"
        return slicer, ""
    except ImportError as exc:
        return None, f"slicer-core is not installed ({exc}); pip install slicer-core to run the MRML tests"


@pytest.fixture(scope="session")
def slicer_core():
    """The ``slicer`` package from slicer-core, or skip."""
    module, reason = _import_slicer_core()
    if module is None:
        pytest.skip(reason)
    return module


@pytest.fixture
def mrml(slicer_core):
    """A fresh MRML scene with the segmentations and markups logics registered."""
    from DiffusionSegModuleLib.nodeio import MRMLContext

    context = MRMLContext.create()
    yield context
    context.scene.Clear(1)


from harness_fixtures import slicer_harness, slicer_panel  # noqa: E402,F401  (fixtures for the harness tests)
