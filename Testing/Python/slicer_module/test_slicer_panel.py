"""The module's panel, Logic, parameter node and self-test on Slicer's own Python layer.

Each test runs once per supported Slicer release (5.8.1 and 5.12.3): Slicer's real
ScriptedLoadableModule.py, parameterNodeWrapper, util.py and i18n.py over slicer-core's
MRML, the real .ui through Qt's QUiLoader, and stand-ins only for Slicer's C++ widgets
(harness/standins.py names each one). Runs use the fake backend (fake_diffusionseg.py)
except the self-test, which trains a tiny real model.
"""

from __future__ import annotations

import ast
import re
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
MODULE_FILE = REPO / "DiffusionSeg" / "DiffusionSeg.py"
UI_FILE = REPO / "DiffusionSeg" / "Resources" / "UI" / "DiffusionSeg.ui"


# -- helpers ------------------------------------------------------------------------


def add_volume(name, seed, shape=(1, 12, 10), spacing=(0.7, 0.8, 1.0)):
    """A scene volume made as Slicer's own util.addVolumeFromArray makes it."""
    import slicer

    array = np.random.default_rng(seed).integers(0, 100, size=shape).astype(np.int16)
    volume = slicer.util.addVolumeFromArray(array, name=name)
    volume.SetSpacing(*spacing)
    return volume


def use_fake_backend(widget, monkeypatch):
    """Point the panel's Logic at the fake backend (a real child process speaking the protocol)."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("FAKE_DIFFUSIONSEG_FAIL", raising=False)
    widget.logic.process.python_executable = sys.executable
    widget.logic.process.backend_dir = str(HERE)
    widget.logic.process.module = "fake_diffusionseg"


def wait_for_run(harness, timeout=60.0):
    """Let the panel's QTimer poll the run until it ends (the event loop runs meanwhile)."""
    widget = harness.widget
    deadline = time.monotonic() + timeout
    while widget.logic.isRunning() or widget.pollTimer.isActive():
        assert time.monotonic() < deadline, "the run did not end"
        harness.process_events(0.05)
    return widget.logic.lastRun


def open_project(harness, folder, task="segmentation", names="liver, spleen", dims="2D"):
    ui = harness.widget.ui
    ui.projectDirPathLineEdit.currentPath = str(folder)
    ui.taskComboBox.currentIndex = ui.taskComboBox.findText(task)
    ui.dimsComboBox.currentIndex = ui.dimsComboBox.findText(dims)
    ui.namesLineEdit.text = names
    ui.openProjectButton.click()
    return harness.widget.logic.currentProject()


def case_table(ui):
    table = ui.caseTable
    return [(table.item(r, 0).text(), table.item(r, 1).text()) for r in range(table.rowCount)]


def background_of_views(slicer):
    scene = slicer.mrmlScene
    return {scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode").GetBackgroundVolumeID()
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))}


# -- the .ui file ---------------------------------------------------------------------


def test_ui_loads_without_warnings_and_has_every_widget_the_module_uses(slicer_harness):
    import slicer

    widget = slicer.util.loadUI(str(UI_FILE))
    assert slicer_harness.qt_messages == []
    ui = slicer.util.childWidgetVariables(widget)
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text(encoding="utf-8")))
    missing = sorted(name for name in used if not hasattr(ui, name))
    assert missing == [], f"DiffusionSeg.py uses widgets the .ui does not have: {missing}"

    # Every widget bound to the parameter node names a real parameter, and each GUI parameter is bound.
    root = ET.parse(UI_FILE).getroot()
    bound = {p.find("string").text for p in root.iter("property") if p.get("name") == "SlicerParameterName"}
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    node_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DiffusionSegParameterNode")
    parameters = {s.target.id for s in node_class.body if isinstance(s, ast.AnnAssign)}
    assert bound == parameters


def test_layout_checker_catches_a_cell_taken_twice(slicer_harness):
    """The check above can fail: two widgets in one form cell (the old Fine-tune form) is reported."""
    import qt

    root = ET.parse(UI_FILE).getroot()
    for item in root.iter("item"):
        child = item.find("widget")
        if child is not None and child.get("name") == "taskModelPathLineEdit":
            item.set("row", "2")  # the row of the Fine-tune button
            break
    else:
        raise AssertionError("taskModelPathLineEdit not found")
    broken = ET.tostring(root, encoding="unicode")
    buffer = qt.QBuffer()
    buffer.setData(qt.QByteArray(broken.encode()))
    qt.QUiLoader().load(buffer)
    assert any("already occupied" in m for m in slicer_harness.qt_messages)


# -- module, logic, parameter node -----------------------------------------------------


def test_module_and_logic_construct_as_in_slicer(slicer_harness):
    import slicer

    module = slicer_harness.load_module(with_widget=False)
    assert slicer.modules.diffusionseg.title == "DiffusionSeg"
    assert "DiffusionSeg" in slicer.selfTests
    logic = module.DiffusionSegLogic()  # Slicer's ScriptedLoadableModuleLogic.__init__ runs super().__init__()
    p = logic.getParameterNode()
    # The panel's default steps are the backend's, stated once in the vocabulary.
    from DiffusionSegLib.vocabulary import DEFAULT_FINETUNE_ITERATIONS
    assert p.annotationNode is None and p.task == "segmentation" and p.finetuneIterations == DEFAULT_FINETUNE_ITERATIONS
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    p.annotationNode = segmentation
    assert logic.getParameterNode().annotationNode is segmentation
    p.annotationNode = None


def test_panel_segmentation_workflow(slicer_panel, tmp_path, monkeypatch):
    """Create a project, annotate, save to the right case, run and cancel, predict, review, correct."""
    import slicer

    widget, ui = slicer_panel.widget, slicer_panel.widget.ui
    use_fake_backend(widget, monkeypatch)
    project = open_project(slicer_panel, tmp_path / "proj")
    assert project is not None and project.classes == ["liver", "spleen"]
    assert not ui.taskComboBox.enabled  # a project's task is fixed once created
    assert ui.segmentEditorWidget.visible is False or ui.segmentEditorWidget.isVisibleTo(widget.parent)
    assert not ui.landmarksTable.isVisibleTo(widget.parent)

    volumes = [add_volume(f"chest {i}", i) for i in range(4)]
    for volume in volumes:
        ui.inputVolumeSelector.setCurrentNode(volume)
        ui.addVolumeButton.click()
    assert [status for _case, status in case_table(ui)] == ["unlabeled"] * 4
    cases = [case for case, _status in case_table(ui)]

    # Annotate the first case in the embedded Segment Editor.
    ui.inputVolumeSelector.setCurrentNode(volumes[0])
    ui.annotateButton.click()
    annotation = widget._parameterNode.annotationNode
    assert annotation is not None and annotation.GetAttribute("DiffusionSeg.Case") == cases[0]
    assert ui.segmentEditorWidget.segmentationNode() is annotation
    assert ui.segmentEditorWidget.sourceVolumeNode() is volumes[0]
    mask = np.zeros((1, 12, 10), np.uint8)
    mask[0, 3:8, 2:6] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, annotation, "liver", volumes[0])

    # Open another case, then save the first case's annotation: it is written as the first case's label.
    ui.caseTable.cellClicked.emit(1, 0)
    assert widget._parameterNode.inputVolume is volumes[1]
    assert background_of_views(slicer) == {volumes[1].GetID()}
    widget._parameterNode.annotationNode = annotation
    ui.saveAnnotationButton.click()
    assert project.label_path(cases[0]) is not None and project.label_path(cases[1]) is None
    assert dict(case_table(ui))[cases[0]] == "labeled"

    # Start pretraining, then cancel it with the same button.
    ui.pretrainIterationsSpinBox.value = 1000
    ui.pretrainButton.click()
    assert widget.logic.isRunning() and ui.pretrainButton.text == "Cancel" and not ui.finetuneButton.enabled
    slicer_panel.process_events(1.0)
    ui.pretrainButton.click()
    record = wait_for_run(slicer_panel)
    assert record.result.status == "cancelled"
    assert ui.pretrainButton.text == "Pretrain on all project images" and ui.pretrainButton.enabled
    assert ui.logTextEdit.toPlainText().strip()  # the backend's lines were shown

    # A short pretraining and fine-tuning: the new models are offered for the next step.
    ui.pretrainIterationsSpinBox.value = 3
    ui.pretrainButton.click()
    record = wait_for_run(slicer_panel)
    assert record.result.status == "done", record.result.message
    assert widget._parameterNode.pretrainedModel == record.out
    assert not ui.lossCurveLabel.pixmap.isNull()  # the run's loss.png, shown in the panel

    # Which cases to annotate next (cold start from the pretrained model): the top two lead the
    # unlabeled cases, each with its reason, and the first opens ready to annotate.
    ui.suggestCountSpinBox.value = 2
    ui.suggestButton.click()
    record = wait_for_run(slicer_panel)
    assert record.result.status == "done", record.result.message
    assert "--model" in widget.logic.process.command and str(widget._parameterNode.pretrainedModel) in \
        widget.logic.process.command
    assert [s["case"] for s in record.suggestions] == [cases[3], cases[2]]
    table = case_table(ui)
    assert [c for c, _s in table[:2]] == [cases[3], cases[2]]
    assert table[0][1].startswith("suggested #1: represents")
    assert widget._parameterNode.inputVolume is volumes[3]
    assert widget._parameterNode.annotationNode.GetAttribute("DiffusionSeg.Case") == cases[3]
    assert cases[3] in ui.statusLabel.text
    ui.finetuneIterationsSpinBox.value = 2
    # Self-training is on by default in a 2D segmentation project with unlabeled cases (where it won on
    # validation), set each time the project is opened: it had no images at its first opening.
    assert ui.selfTrainCheckBox.checked is widget._parameterNode.selfTrain is False
    ui.openProjectButton.click()
    assert ui.selfTrainCheckBox.checked and widget._parameterNode.selfTrain is True
    ui.selfTrainCheckBox.checked = False   # bound to the parameter node both ways
    assert widget._parameterNode.selfTrain is False
    ui.selfTrainCheckBox.checked = True   # Fine-tune runs `diffusionseg selftrain`
    ui.finetuneButton.click()
    command = widget.logic.process.command
    assert "selftrain" in command and "finetune" not in command
    assert command[command.index("--images") + 1] == str(project.images_dir)  # labeled and unlabeled cases
    record = wait_for_run(slicer_panel)
    assert record.result.status == "done", record.result.message
    assert widget._parameterNode.taskModel == record.out

    # Predict all unlabeled: the least confident case opens with its prediction; the others wait
    # in the case list, least confident first (the fake backend is less sure of later cases).
    ui.predictUnlabeledButton.click()
    record = wait_for_run(slicer_panel)
    assert record.result.status == "done", record.result.message
    assert list(record.predictions) == [cases[3], cases[2], cases[1]]
    assert len(record.loaded_nodes) == 1
    first = record.loaded_nodes[0]
    assert widget._parameterNode.annotationNode is first
    assert widget._parameterNode.inputVolume is volumes[3]
    assert background_of_views(slicer) == {volumes[3].GetID()}
    assert case_table(ui) == [(cases[3], "predicted: review (confidence 0.70)"),
                              (cases[2], "predicted: review (confidence 0.80)"),
                              (cases[1], "predicted: review (confidence 0.90)"), (cases[0], "labeled")]
    segmentations = [slicer.mrmlScene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
                     for i in range(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]
    assert [n.GetAttribute("DiffusionSeg.Role") for n in segmentations].count("prediction") == 1  # one case at a time

    # Review the next case: its prediction loads, the previous one is hidden.
    ui.caseTable.cellClicked.emit(1, 0)
    second = widget._parameterNode.annotationNode
    assert second is not first and second.GetAttribute("DiffusionSeg.Case") == cases[2]
    assert second.GetDisplayNode().GetVisibility() and not first.GetDisplayNode().GetVisibility()
    assert background_of_views(slicer) == {volumes[2].GetID()}

    # Correct it and save: the prediction becomes the case's label.
    ui.saveAnnotationButton.click()
    assert dict(case_table(ui))[cases[2]] == "labeled"
    ui.show3DButton.click()
    assert second.GetDisplayNode().GetVisibility3D()
    assert second.GetSegmentation().ContainsRepresentation("Closed surface")

    # Two labeled cases: is one more annotation worth it? The plot and its sentence appear.
    ui.curveButton.click()
    record = wait_for_run(slicer_panel)
    assert record.result.status == "done", record.result.message
    assert ui.curveSentenceLabel.text.startswith("One more annotation: +1.2 Dice points")
    assert not ui.curveImageLabel.pixmap.isNull()
    assert ui.statusLabel.text == ui.curveSentenceLabel.text


def test_curve_needs_two_labeled_cases(slicer_panel, tmp_path, monkeypatch):
    widget, ui = slicer_panel.widget, slicer_panel.widget.ui
    use_fake_backend(widget, monkeypatch)
    open_project(slicer_panel, tmp_path / "proj")
    widget._parameterNode.pretrainedModel = tmp_path  # any folder: the label count is checked first
    ui.curveButton.click()
    assert not widget.logic.isRunning()
    # Slicer's testing mode re-raises what tryWithErrorDisplay would show the user in a dialog.
    [error] = slicer_panel.slot_errors
    assert "at least 2 labeled cases" in str(error)
    slicer_panel.slot_errors.clear()


def test_panel_trains_the_plain_unet_from_scratch(slicer_panel, tmp_path, monkeypatch):
    """Network "plain": Fine-tune trains MONAI's BasicUNet (preset plain) from random weights, without
    asking for or passing the pretrained model; "pretrained" (the project's default) passes it."""
    import shutil

    widget, ui = slicer_panel.widget, slicer_panel.widget.ui
    use_fake_backend(widget, monkeypatch)
    project = open_project(slicer_panel, tmp_path / "proj")
    assert [ui.finetuneNetworkComboBox.itemText(i) for i in range(ui.finetuneNetworkComboBox.count)] == \
        ["pretrained", "plain"]
    assert widget._parameterNode.finetuneNetwork == "pretrained" == ui.finetuneNetworkComboBox.currentText
    volume = add_volume("img0", 0)
    case = widget.logic.addVolume(project, volume)
    image = next(project.images_dir.iterdir())
    shutil.copyfile(image, project.labels_dir / f"{case}.seg.nrrd")   # any label file counts as labeled
    widget._parameterNode.pretrainedModel = tmp_path   # a folder that is no model: plain must not read it
    ui.finetuneNetworkComboBox.currentIndex = ui.finetuneNetworkComboBox.findText("plain")
    assert widget._parameterNode.finetuneNetwork == "plain"
    ui.finetuneIterationsSpinBox.value = 2
    ui.finetuneButton.click()
    assert not slicer_panel.slot_errors, slicer_panel.slot_errors
    command = widget.logic.process.command
    assert "--pretrained" not in command and command[command.index("--init") + 1] == "random"
    assert command[command.index("--preset") + 1] == "plain"
    record = wait_for_run(slicer_panel)
    assert record.result.status == "done", record.result.message


def test_panel_landmarks_stop_at_the_project_landmarks(slicer_panel, tmp_path, monkeypatch):
    import slicer

    widget, ui = slicer_panel.widget, slicer_panel.widget.ui
    use_fake_backend(widget, monkeypatch)
    project = open_project(slicer_panel, tmp_path / "lm", task="landmarks", names="sella, nasion, menton")
    assert project.landmark_names == ["sella", "nasion", "menton"]
    assert ui.landmarksTable.isVisibleTo(widget.parent) and not ui.segmentEditorWidget.isVisibleTo(widget.parent)
    volume = add_volume("ceph", 0)
    ui.inputVolumeSelector.setCurrentNode(volume)
    ui.annotateButton.click()
    points = widget._parameterNode.annotationNode
    table = ui.landmarksTable

    def statuses():
        return [(table.item(r, 0).text(), table.item(r, 1).text()) for r in range(table.rowCount)]

    assert statuses() == [("sella", "next"), ("nasion", "not placed"), ("menton", "not placed")]
    ui.placeLandmarksButton.click()
    interaction = slicer.app.applicationLogic().GetInteractionNode()
    assert interaction.GetCurrentInteractionMode() == interaction.Place
    for i in range(3):  # what three clicks in a view do: each defines the next unplaced point
        points.SetNthControlPointPosition(i, 1.0 + i, 2.0, 0.0)
    assert [s for _n, s in statuses()] == ["placed"] * 3
    assert interaction.GetCurrentInteractionMode() == interaction.ViewTransform  # placing stopped
    assert points.AddControlPoint(1, 1, 0) == -1  # a fourth, unnamed point cannot be added
    assert points.GetNumberOfControlPoints() == 3

    table.selectRow(1)
    ui.replaceLandmarkButton.click()
    assert [s for _n, s in statuses()] == ["placed", "next", "placed"]
    points.SetNthControlPointPosition(1, 5.0, 5.0, 0.0)
    ui.saveAnnotationButton.click()
    saved = project.label_path(project.cases()[0])
    assert saved is not None and saved.name.endswith(".mrk.json")


# -- the module's own self-test (real backend, tiny model) -----------------------------


@pytest.mark.slow
def test_module_self_test_runs_to_the_end(slicer_harness):
    """DiffusionSegTest, as Slicer's SelfTests / ctest run it: tiny pretrain, fine-tune, predict, checks."""
    import slicer

    slicer_harness.load_module(with_widget=False)
    slicer.selfTests["DiffusionSeg"](msec=0)


def test_panel_opens_in_a_fresh_slicer_without_the_backend_packages(tmp_path):
    """A new user's first step: Slicer has none of torch, MONAI, einops, safetensors, slicerio,
    tqdm, pynrrd, matplotlib yet. The panel must still open (they install from it), on both releases."""
    import subprocess

    from harness import available

    reason = available()
    if reason:
        pytest.skip(reason)
    blocked = ["torch", "monai", "einops", "safetensors", "slicerio", "tqdm", "nrrd", "matplotlib"]
    script = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None  # import fails as if not installed\n"
        "from harness import VERSIONS, SlicerHarness\n"
        "for version in VERSIONS:\n"
        "    h = SlicerHarness(version).install()\n"
        "    h.load_module(with_widget=True)\n"
        "    assert h.qt_messages == [], h.qt_messages\n"
        "    h.widget.ui.projectDirPathLineEdit.currentPath = sys.argv[1] + '/' + version\n"
        "    h.widget.ui.namesLineEdit.text = 'liver'\n"
        "    h.widget.ui.openProjectButton.click()\n"
        "    assert h.widget.logic.currentProject() is not None\n"
        "    h.uninstall()\n"
        "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=HERE, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout + result.stderr


def test_closing_slicer_cancels_the_running_backend(slicer_panel, tmp_path, monkeypatch):
    """Slicer unloads its modules when it closes: the panel's cleanup() stops the run, which
    ends as cancelled (its last checkpoint kept) instead of running on without Slicer."""
    import slicer

    widget, ui = slicer_panel.widget, slicer_panel.widget.ui
    use_fake_backend(widget, monkeypatch)
    open_project(slicer_panel, tmp_path / "proj")
    ui.inputVolumeSelector.setCurrentNode(add_volume("chest", 0))
    ui.addVolumeButton.click()
    ui.pretrainIterationsSpinBox.value = 100_000
    ui.pretrainButton.click()
    assert widget.logic.isRunning()
    slicer_panel.process_events(0.5)
    slicer.app.moduleManager().moduleAboutToBeUnloaded.emit("DiffusionSeg")  # what Slicer emits at exit
    assert not widget.pollTimer.isActive()
    record = widget.logic.wait(timeout=60)
    assert record is not None and record.result.status == "cancelled"
    slicer_panel.widget = None  # already cleaned up
