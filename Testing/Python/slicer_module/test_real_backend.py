"""The Logic with the real backend (python -m DiffusionSegLib): a 2-step pretrain on two
tiny 2D single-slice volumes written from MRML nodes. Seconds on a CPU; skipped when the
backend's command is not there yet."""

import sys
from pathlib import Path

import numpy as np
import pytest

from mrml_helpers import make_volume, rotation_ras

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(not (REPO / "DiffusionSegLib" / "cli" / "pretrain_cmd.py").is_file(),
                    reason="the backend has no pretrain command yet")
def test_pretrain_with_the_real_backend(mrml, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from DiffusionSegModuleLib import projectfiles
    from DiffusionSegModuleLib.corelogic import CoreLogic

    monkeypatch.delenv("PYTHONPATH", raising=False)
    logic = CoreLogic(mrml, sys.executable, backend_dir=REPO)
    project = logic.createProject(tmp_path / "p", "segmentation", 2, ["disc"])
    rng = np.random.default_rng(0)
    for i in range(2):
        array = (rng.random((1, 40, 36)) * 100).astype(np.float32)
        logic.addVolume(project, make_volume(mrml, array, (0.5, 0.5, 1.0), (3.0, -2.0, 0.0),
                                             rotation_ras(0.3, 0.0), name=f"xray {i}"))
    out = logic.startPretrain(project, iterations=2, device="cpu")
    record = logic.wait(timeout=240)
    assert record.result.ok, record.result.message + "\n" + "\n".join(record.result.stderr_tail)
    assert record.result.state.step == 2 and record.result.state.last_checkpoint == str(out)
    assert projectfiles.is_model(out, ["pretrained"])
    assert projectfiles.list_models(project, ["pretrained"]) == [out]


@pytest.mark.skipif(not (REPO / "DiffusionSegLib" / "cli" / "pretrain_cmd.py").is_file(),
                    reason="the backend has no pretrain command yet")
def test_real_backend_user_error_reaches_the_user(mrml, tmp_path, monkeypatch):
    """A 3D project holding a 2D image: the backend's one-line error becomes the message."""
    from DiffusionSegModuleLib.corelogic import CoreLogic

    monkeypatch.delenv("PYTHONPATH", raising=False)
    logic = CoreLogic(mrml, sys.executable, backend_dir=REPO)
    project = logic.createProject(tmp_path / "p", "segmentation", 3, ["disc"])
    array = np.zeros((1, 16, 16), np.float32)
    logic.addVolume(project, make_volume(mrml, array, (1, 1, 1), (0, 0, 0), np.eye(3), name="flat"))
    logic.startPretrain(project, iterations=2, device="cpu")
    record = logic.wait(timeout=120)
    assert record.result.status == "failed" and record.result.returncode == 2
    assert record.result.message and not record.result.message.startswith("error:")
    assert "Traceback" not in record.result.message
    assert not logic.isRunning()
