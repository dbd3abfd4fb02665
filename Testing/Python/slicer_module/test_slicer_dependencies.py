"""Installing the backend's packages from the panel, through Slicer's own util.py and the
PyTorch extension's real PyTorchUtils.py (../shared/slicer-python/SlicerPyTorch).

Nothing is installed: the one place each release runs a process is recorded instead
(``slicer.util._executePythonModule``: light-the-torch and, in 5.8, pip; Slicer 5.12's
``slicer.packaging.pip_install``, which ../shared does not hold, is stood in for here).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from harness import SLICER_PYTHON

PYTORCHUTILS = SLICER_PYTHON / "SlicerPyTorch" / "PyTorchUtils"


@pytest.fixture
def installs(slicer_harness, monkeypatch):
    """The module's Logic in a Slicer where torch and MONAI are missing; returns the recorded commands."""
    import slicer

    if not (PYTORCHUTILS / "PyTorchUtils.py").is_file():
        pytest.skip(f"{PYTORCHUTILS} is absent")
    module = slicer_harness.load_module(with_widget=False)
    commands = []
    monkeypatch.setattr(slicer.util, "_executePythonModule", lambda name, args: commands.append([name, *args]))
    # Slicer 5.12: slicer.util.pip_install delegates to slicer.packaging (not in ../shared).
    packaging = types.ModuleType("slicer.packaging")
    packaging.pip_install = lambda requirements, **kwargs: commands.append(["pip", "install", *requirements])
    monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    monkeypatch.setattr(slicer, "packaging", packaging, raising=False)
    # light-the-torch is what PyTorchUtils runs; its import is all that is needed here.
    for name in ("light_the_torch", "light_the_torch._patch"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.syspath_prepend(str(PYTORCHUTILS))
    monkeypatch.delitem(sys.modules, "PyTorchUtils", raising=False)
    dependencies = module.dependencies
    state = {"torch": None}
    monkeypatch.setattr(dependencies, "torch_version", lambda: state["torch"])
    real_problem = dependencies.torch_problem
    monkeypatch.setattr(dependencies, "torch_problem", lambda version=None: real_problem(state["torch"] or "0"))
    monkeypatch.setattr(dependencies, "missing_requirements",
                        lambda requirements=None: [] if any(c[:2] == ["pip", "install"] for c in commands)
                        else ["monai>=1.4,<1.7"])

    def ltt(name, args):  # light-the-torch "installs" the newest torch in range
        commands.append([name, *args])
        if name == "light_the_torch":
            state["torch"] = "2.7.1"

    monkeypatch.setattr(slicer.util, "_executePythonModule", ltt)
    # The user's answers (Slicer's testing mode would answer every confirmation with "No").
    answers = types.SimpleNamespace(ok=True, asked=[])
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, *a, **k: answers.asked.append(text) or answers.ok)
    monkeypatch.setattr(slicer.util, "confirmYesNoDisplay", lambda text, *a, **k: answers.asked.append(text) or False)
    return types.SimpleNamespace(logic=module.DiffusionSegLogic(), commands=commands, state=state, answers=answers)


def test_first_run_installs_torch_in_range_then_the_rest_pinned(installs, monkeypatch):
    import torch  # noqa: F401  (PyTorchUtils imports torch after installing; the venv's stands for the new one)

    assert installs.logic.ensureDependencies(askConfirmation=True)
    ltt = next(c for c in installs.commands if c[0] == "light_the_torch")
    assert ltt[1:3] == ["install", "torch>=2.2"], ltt  # the backend's range, from pyproject via dependencies.py
    pip = next(c for c in installs.commands if c[:2] == ["pip", "install"])
    requirements_file = Path(pip[pip.index("-r") + 1])
    assert requirements_file.name == "requirements-slicer.txt" and requirements_file.is_file()
    constraints = pip[pip.index("-c") + 1]
    assert constraints.endswith("constraints.txt")  # numpy, SimpleITK, vtk, torch pinned (file is temporary)


def test_an_old_torch_is_reported_and_updated_through_pytorchutils(installs):
    installs.state["torch"] = "1.13.1"
    import torch  # noqa: F401

    assert installs.logic.ensureDependencies(askConfirmation=True)
    assert "1.13.1" in installs.answers.asked[0]  # the message names the installed version
    ltt = next(c for c in installs.commands if c[0] == "light_the_torch")
    assert "torch>=2.2" in ltt


def test_nothing_is_installed_without_confirmation(installs):
    installs.state["torch"] = "2.7.1"  # torch is fine; MONAI is missing
    installs.answers.ok = False
    assert not installs.logic.ensureDependencies(askConfirmation=True)
    assert installs.commands == [] and "monai" in installs.answers.asked[0]


def test_without_the_pytorch_extension_the_message_says_what_to_install(installs, monkeypatch):
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)
    with pytest.raises(RuntimeError, match="PyTorch extension"):
        installs.logic.ensureDependencies(askConfirmation=False)
