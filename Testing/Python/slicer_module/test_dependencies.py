"""DiffusionSegModuleLib.dependencies against fake package metadata, and the Logic's install flow.

The Logic's ``ensureDependencies`` and ``_pipInstall`` are taken from DiffusionSeg.py's
source and run against stand-ins for Slicer's util functions and the PyTorch extension's
PyTorchUtilsLogic (its real signature: ``installTorch(askConfirmation=False,
forceComputationBackend=None, torchVersionRequirement=None, ...)``, returning the torch
module or None when the user declines).
"""

from __future__ import annotations

import ast
import sys
import types
from importlib import metadata
from pathlib import Path

import pytest

from DiffusionSegModuleLib import dependencies

REPO = Path(__file__).resolve().parents[3]


class FakeMetadata:
    """``importlib.metadata.version`` over a dict of installed distributions."""

    PackageNotFoundError = metadata.PackageNotFoundError

    def __init__(self, installed: dict[str, str]):
        self.installed = dict(installed)

    def version(self, name: str) -> str:
        if name not in self.installed:
            raise metadata.PackageNotFoundError(name)
        return self.installed[name]


@pytest.fixture
def installed(monkeypatch):
    fake = FakeMetadata({"numpy": "1.26.4", "torch": "2.7.1+cu126", "monai": "1.5.0", "einops": "0.8.0",
                         "safetensors": "0.4.5", "slicerio": "1.1.2", "pynrrd": "1.1.3", "tqdm": "4.67.1"})
    monkeypatch.setattr(dependencies, "metadata", fake)
    return fake.installed


def test_torch_requirement_is_a_range_for_pytorchutils():
    assert dependencies.TORCH_REQUIREMENT.startswith("torch>=")
    assert dependencies.torch_version_requirement() == dependencies.TORCH_REQUIREMENT[len("torch"):]
    assert dependencies.torch_version_requirement().startswith(">=")


@pytest.mark.parametrize("version", ["2.2.0", "2.7.1+cu126", "2.8.0+cpu", "3.0.0"])
def test_a_torch_in_range_has_no_problem(version):
    assert dependencies.torch_problem(version) is None


@pytest.mark.parametrize("version", ["2.1.2", "1.13.1+cu117", "2.2.0rc1"])
def test_an_old_torch_is_named_with_the_fix(version):
    message = dependencies.torch_problem(version)
    assert f"torch {version} is installed" in message
    assert dependencies.TORCH_REQUIREMENT in message
    assert f'installTorch(torchVersionRequirement="{dependencies.torch_version_requirement()}")' in message
    assert "PyTorch Utils" in message and "restart Slicer" in message


def test_the_installed_torch_is_read_from_metadata(installed):
    assert dependencies.torch_version() == "2.7.1+cu126" and dependencies.torch_problem() is None
    installed["torch"] = "2.0.1"
    assert "torch 2.0.1 is installed" in dependencies.torch_problem()
    del installed["torch"]
    assert dependencies.torch_version() is None
    assert "not installed" in dependencies.torch_problem()


def test_missing_requirements_with_fake_metadata(installed):
    requirements = dependencies.read_requirements()
    assert dependencies.missing_requirements(requirements) == []
    installed["monai"] = "1.3.2"  # DiffusionModelUNet and monai.networks.schedulers need 1.4
    del installed["tqdm"]
    missing = dependencies.missing_requirements(requirements)
    assert [dependencies.requirement_name(r) for r in missing] == ["monai", "tqdm"]


def test_constraints_pin_only_what_is_installed(installed):
    assert dependencies.constraints() == ["numpy==1.26.4", "torch==2.7.1+cu126"]  # Slicer's SimpleITK, vtk: built in
    installed["SimpleITK"] = "2.4.0"
    assert "SimpleITK==2.4.0" in dependencies.constraints()


def test_without_packaging_pips_copy_decides(monkeypatch):
    pytest.importorskip("pip._vendor.packaging.requirements")
    monkeypatch.setitem(sys.modules, "packaging", None)
    monkeypatch.setitem(sys.modules, "packaging.requirements", None)
    assert dependencies._satisfies("torch>=2.2", "2.1.0") is False
    assert dependencies._satisfies("torch>=2.2", "2.3.0+cpu") is True


# -- the Logic's ensureDependencies / _pipInstall ------------------------------------------


class FakeSlicerUtil:
    def __init__(self, confirm=True):
        self.confirm, self.asked, self.pip_calls, self.restarted = confirm, [], [], False

    def confirmOkCancelDisplay(self, text):
        self.asked.append(text)
        return self.confirm

    confirmYesNoDisplay = confirmOkCancelDisplay

    def pip_install(self, args):
        constraints = Path(args[args.index("-c") + 1]).read_text()
        self.pip_calls.append((args, constraints))

    def restart(self):
        self.restarted = True


class FakeTorchLogic:
    """PyTorchUtils.PyTorchUtilsLogic: installTorch(askConfirmation, forceComputationBackend, torchVersionRequirement)."""

    def __init__(self, installed, new_version="2.8.0+cpu", declined=False):
        self.installed, self.new_version, self.declined, self.calls = installed, new_version, declined, []

    def torchInstalled(self):
        raise AssertionError("torchInstalled() imports torch; an update must not have it loaded")

    def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                     torchvisionVersionRequirement=None):
        self.calls.append({"askConfirmation": askConfirmation, "torchVersionRequirement": torchVersionRequirement})
        if self.declined:
            return None
        self.installed["torch"] = self.new_version
        return types.SimpleNamespace(__version__=self.new_version)


def _logic_methods():
    """DiffusionSegLogic.ensureDependencies and _pipInstall from DiffusionSeg.py, on a plain class."""
    source = (REPO / "DiffusionSeg" / "DiffusionSeg.py").read_text(encoding="utf-8")
    logic = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "DiffusionSegLogic")
    methods = [n for n in logic.body if isinstance(n, ast.FunctionDef) and n.name in ("ensureDependencies",
                                                                                        "_pipInstall")]
    assert len(methods) == 2
    logic.name, logic.bases, logic.keywords, logic.decorator_list, logic.body = "Logic", [], [], [], methods
    return ast.Module(body=[logic], type_ignores=[])


@pytest.fixture
def logic(installed, monkeypatch):
    util = FakeSlicerUtil()
    namespace = {"dependencies": dependencies, "slicer": types.SimpleNamespace(util=util), "sys": sys,
                 "Path": Path, "_": lambda text: text}
    exec(compile(_logic_methods(), "DiffusionSeg.py", "exec"), namespace)
    torch_logic = FakeTorchLogic(installed)
    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=lambda: torch_logic))
    return types.SimpleNamespace(logic=namespace["Logic"](), util=util, torch=torch_logic, installed=installed)


def test_nothing_to_do(logic):
    assert logic.logic.ensureDependencies() is True
    assert logic.util.asked == [] and logic.util.pip_calls == [] and logic.torch.calls == []


def test_no_torch_installs_it_through_pytorchutils_with_the_range(logic):
    del logic.installed["torch"]
    assert logic.logic.ensureDependencies(askConfirmation=True) is True
    assert logic.torch.calls == [{"askConfirmation": True,
                                  "torchVersionRequirement": dependencies.torch_version_requirement()}]
    assert logic.util.pip_calls == []


def test_declining_the_torch_install(logic):
    del logic.installed["torch"]
    logic.torch.declined = True
    assert logic.logic.ensureDependencies() is False


def test_an_old_torch_is_reported_and_updated_after_confirmation(logic, monkeypatch):
    logic.installed["torch"] = "2.1.0"
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))  # this session imported the old one
    assert logic.logic.ensureDependencies(askConfirmation=True) is True
    assert "torch 2.1.0 is installed" in logic.util.asked[0]
    assert logic.torch.calls == [{"askConfirmation": False,
                                  "torchVersionRequirement": dependencies.torch_version_requirement()}]
    assert "torch" in logic.util.asked[-1] and logic.util.restarted  # a restart loads the new torch


def test_declining_the_torch_update(logic):
    logic.installed["torch"] = "2.1.0"
    logic.util.confirm = False
    assert logic.logic.ensureDependencies(askConfirmation=True) is False
    assert logic.torch.calls == []


def test_an_update_that_still_misses_the_range_fails_clearly(logic):
    logic.installed["torch"] = "2.1.0"
    logic.torch.new_version = "2.1.2"  # e.g. no newer build for this GPU driver
    with pytest.raises(RuntimeError, match="torch 2.1.2 is installed"):
        logic.logic.ensureDependencies(askConfirmation=False)


def test_without_the_pytorch_extension(logic, monkeypatch):
    del logic.installed["torch"]
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)
    with pytest.raises(RuntimeError, match="PyTorch extension"):
        logic.logic.ensureDependencies()


def test_missing_packages_are_pip_installed_with_slicers_packages_pinned(logic):
    del logic.installed["monai"]
    assert logic.logic.ensureDependencies(askConfirmation=True) is True
    assert "monai" in logic.util.asked[0]
    [(args, constraints)] = logic.util.pip_calls
    assert args[:2] == ["-r", str(dependencies.requirements_file())]
    assert constraints.split() == ["numpy==1.26.4", "torch==2.7.1+cu126"]
    assert logic.torch.calls == []
