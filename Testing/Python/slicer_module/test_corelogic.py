"""The module's Logic (Qt-free core) end to end, with real MRML and a fake backend process."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from mrml_helpers import ijk_to_ras, make_volume, paint_segment, rotation_ras

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


@pytest.fixture
def logic(mrml, monkeypatch):
    from DiffusionSegModuleLib.corelogic import CoreLogic

    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the fake backend's predict uses DiffusionSegLib.landmarks
    monkeypatch.delenv("FAKE_DIFFUSIONSEG_FAIL", raising=False)
    return CoreLogic(mrml, sys.executable, backend_dir=HERE, backend_module="fake_diffusionseg")


def volume3d(mrml, name, seed):
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 100, size=(4, 6, 5)).astype(np.int16)
    return make_volume(mrml, array, (0.8, 0.6, 2.5), (12.0, -3.0, 40.0), rotation_ras(0.4, 0.1), name=name)


def test_segmentation_workflow(logic, mrml, tmp_path):
    from DiffusionSegModuleLib import nodeio

    project = logic.createProject(tmp_path / "proj", "segmentation", 3, ["liver", " spleen ", ""], "ct")
    assert project.classes == ["liver", "spleen"]
    first, second = volume3d(mrml, "Patient A", 1), volume3d(mrml, "Patient A", 2)
    second.SetName("Patient A")  # the same name as the first image's node

    # 3. Annotate: a segmentation with the project's segments; Save writes labels/<case>.seg.nrrd.
    annotation = logic.createAnnotation(project, first)
    assert nodeio.segment_names(annotation) == ["liver", "spleen"]
    assert logic.caseOfNode(project, first) == "Patient_A"
    mask = np.zeros((4, 6, 5), bool)
    mask[1:3, 2:4, 1:4] = True
    paint_segment(mrml, annotation, "liver", mask, first)
    saved = logic.saveAnnotation(project, annotation, first)
    assert saved["path"] == project.labels_dir / "Patient_A.seg.nrrd"
    assert logic.addVolume(project, second) == "Patient_A_2"  # same node name, new case
    assert logic.projectStatus(project)["labeled"] == 1 and logic.projectStatus(project)["unlabeled"] == 1

    # 2. Pretrain, 4. fine-tune (both through the background process).
    model_dir = logic.startPretrain(project, iterations=3)
    assert logic.isRunning()
    with pytest.raises(RuntimeError, match="already in progress"):
        logic.startPretrain(project, iterations=3)
    record = logic.wait(timeout=60)
    assert record.result.ok and record.kind == "pretrain" and not logic.isRunning()
    assert (model_dir / "config.json").is_file()
    command = logic.process.command
    assert command[command.index("--images") + 1] == str(project.images_dir)
    assert command[command.index("--dims") + 1] == "3" and command[command.index("--modality") + 1] == "ct"

    task_dir = logic.startFinetune(project, model_dir, iterations=4)
    record = logic.wait(timeout=60)
    assert record.result.ok and task_dir.parent == project.models_dir
    command = logic.process.command
    for flag, value in (("--task", "segmentation"), ("--pretrained", str(model_dir)),
                        ("--labels", str(project.labels_dir)), ("--classes", "liver,spleen"),
                        ("--out", str(task_dir)), ("--iterations", "4"), ("--progress", "json")):
        assert command[command.index(flag) + 1] == value

    # 5. Predict every unlabeled image: a new node on the image's grid, the user's nodes untouched.
    nodes_before = mrml.scene.GetNumberOfNodes()
    logic.startPredict(project, task_dir)
    record = logic.wait(timeout=60)
    assert record.result.ok, record.result.message
    assert len(record.loaded_nodes) == 1
    prediction = record.loaded_nodes[0]
    assert prediction.GetName() == "Patient_A_2 prediction"
    assert prediction.GetAttribute("DiffusionSeg.Role") == "prediction"
    assert mrml.scene.GetNumberOfNodes() > nodes_before
    assert nodeio.segment_names(annotation) == ["liver", "spleen"]  # unchanged
    expected = (nodeio.array_from_volume(second) > nodeio.array_from_volume(second).mean()).astype(np.uint8)
    assert np.array_equal(nodeio.label_array(mrml, prediction, second, project.classes), expected)
    assert prediction.GetSegmentation().ContainsRepresentation("Closed surface")

    # The user corrects it and saves it as a new labeled case.
    saved = logic.saveAnnotation(project, prediction)
    assert saved["case"] == "Patient_A_2" and project.labeled_cases() == ["Patient_A", "Patient_A_2"]
    with pytest.raises(ValueError, match="every case is labeled"):
        logic.startPredict(project, task_dir)


def test_landmarks_workflow_2d(logic, mrml, tmp_path):
    from DiffusionSegModuleLib import nodeio

    project = logic.createProject(tmp_path / "ceph", "landmarks", 2, ["sella", "nasion"], "xray")
    image = make_volume(mrml, np.arange(48, dtype=np.uint8).reshape(1, 6, 8), (0.1, 0.1, 1.0),
                        (5.0, 6.0, 0.0), rotation_ras(0.2, 0.0), name="ceph 01")
    points = logic.createAnnotation(project, image)
    assert [points.GetNthControlPointLabel(i) for i in range(2)] == ["sella", "nasion"]
    points.SetNthControlPointPosition(0, 5.2, 6.3, 0.0)
    saved = logic.saveAnnotation(project, points, image)
    assert saved["missing"] == ["nasion"] and saved["path"].name == "ceph_01.mrk.json"

    # Annotating a labeled case again opens its saved points instead of an empty list.
    again = logic.createAnnotation(project, image)
    assert again.GetID() != points.GetID()
    assert np.allclose(nodeio.defined_points(again)["sella"], (5.2, 6.3, 0.0))

    logic.startFinetune(project, None, iterations=2)  # random initialisation
    record = logic.wait(timeout=60)
    assert record.result.ok
    command = logic.process.command
    assert "--init" in command and "--pretrained" not in command
    assert command[command.index("--landmarks") + 1] == str(project.labels_dir)

    logic.startPredict(project, record.out, cases=["ceph_01"])
    record = logic.wait(timeout=60)
    assert record.result.ok, record.result.message
    [prediction] = record.loaded_nodes  # the .csv output is not loaded
    assert prediction.IsA("vtkMRMLMarkupsFiducialNode")
    centre = ijk_to_ras(image) @ np.array([3.5, 2.5, 0.0, 1.0])
    assert np.allclose(nodeio.defined_points(prediction)["sella"], centre[:3])


def test_cancelled_finetune_keeps_the_last_checkpoint(logic, mrml, tmp_path, monkeypatch):
    project = logic.createProject(tmp_path / "proj", "segmentation", 3, ["a"])
    volume = volume3d(mrml, "v", 3)
    annotation = logic.createAnnotation(project, volume)
    paint_segment(mrml, annotation, "a", np.ones((4, 6, 5), bool), volume)
    logic.saveAnnotation(project, annotation, volume)

    original = logic.finetuneArgs
    monkeypatch.setattr(logic, "finetuneArgs", lambda *a, **k: original(*a, **k) + ["--delay", "0.02"])
    out = logic.startFinetune(project, None, iterations=1000)
    while logic.isRunning() and not logic.progress.last_checkpoint:
        logic.poll()
    logic.cancel()
    record = logic.wait(timeout=30)
    assert record.result.status == "cancelled" and "last checkpoint is kept" in record.result.message
    assert (out / "config.json").is_file()
    assert not logic.isRunning() and logic.run is None


def test_failed_run_reports_the_backend_error_and_resets(logic, mrml, tmp_path, monkeypatch):
    project = logic.createProject(tmp_path / "proj", "segmentation", 3, ["a"])
    logic.addVolume(project, volume3d(mrml, "v", 4))
    monkeypatch.setenv("FAKE_DIFFUSIONSEG_FAIL", "user")
    logic.startPretrain(project, iterations=5)
    record = logic.wait(timeout=30)
    assert record.result.status == "failed"
    assert record.result.message.endswith("Fix: paint it or delete the file.")
    assert not logic.isRunning() and logic.poll() == []
    monkeypatch.setenv("FAKE_DIFFUSIONSEG_FAIL", "")
    logic.startPretrain(project, iterations=1)
    assert logic.wait(timeout=30).result.ok


def test_inputs_are_checked_before_starting(logic, mrml, tmp_path):
    project = logic.createProject(tmp_path / "proj", "segmentation", 3, ["a"])
    with pytest.raises(ValueError, match="no images yet"):
        logic.startPretrain(project, 10)
    logic.addVolume(project, volume3d(mrml, "v", 5))
    with pytest.raises(ValueError, match="No case is labeled"):
        logic.startFinetune(project, None, 10)
    (tmp_path / "notamodel").mkdir()
    with pytest.raises(ValueError, match="not a fine-tuned segmentation model"):
        logic.startPredict(project, tmp_path / "notamodel")
    # Self-training needs unlabeled cases to learn from, and the full mode.
    (project.labels_dir / "v.seg.nrrd").write_bytes(b"any label file counts")
    assert project.labeled_cases() == ["v"] and not project.unlabeled_cases()
    with pytest.raises(ValueError, match="every case is labeled"):
        logic.startFinetune(project, None, 10, selftrain=True)
    logic.addVolume(project, volume3d(mrml, "w", 6))
    with pytest.raises(ValueError, match="choose the full mode"):
        logic.startFinetune(project, None, 10, mode="probe", selftrain=True)
    assert not logic.isRunning()


def test_add_images_from_folder(logic, tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    source = tmp_path / "incoming"
    source.mkdir()
    for name in ("a.nii.gz", "b.nrrd", "b.seg.nrrd", "notes.txt"):
        if name.endswith((".nii.gz", ".nrrd")):
            sitk.WriteImage(sitk.Image(4, 4, sitk.sitkUInt8), str(source / name))
        else:
            (source / name).write_text("x")
    project = logic.createProject(tmp_path / "proj", "segmentation", 2, ["a"])
    assert logic.addImagesFromFolder(project, source) == ["a", "b"]
    assert logic.addImagesFromFolder(project, source) == ["a_2", "b_2"]  # never overwrites
    assert project.cases() == ["a", "a_2", "b", "b_2"]
    assert json.loads(project.project_file.read_text())["task"] == "segmentation"


def test_selftrain_is_the_default_where_it_won_and_can_run(logic, tmp_path):
    """Fine-tune self-trains by default in a 2D segmentation project with unlabeled cases and the full mode
    (where it won on validation); not in 3D, not for landmarks, not without unlabeled cases or in a probe."""
    sitk = pytest.importorskip("SimpleITK")
    source = tmp_path / "incoming"
    source.mkdir()
    for name in ("a.nrrd", "b.nrrd"):
        sitk.WriteImage(sitk.Image(4, 4, sitk.sitkUInt8), str(source / name))
    projects = {(task, dims): logic.createProject(tmp_path / f"{task}{dims}", task, dims, ["a"])
                for task in ("segmentation", "landmarks") for dims in (2, 3)}
    for project in projects.values():
        assert not logic.selftrainByDefault(project), "no case at all: nothing to learn from"
        logic.addImagesFromFolder(project, source)
    assert {key: logic.selftrainByDefault(p) for key, p in projects.items()} == {
        ("segmentation", 2): True, ("segmentation", 3): False, ("landmarks", 2): False, ("landmarks", 3): False}
    seg2d = projects[("segmentation", 2)]
    assert not logic.selftrainByDefault(seg2d, mode="probe")
    # What Fine-tune trains by default (vocabulary.default_finetune_network); self-training by default
    # was validated on the pretrained diffusion U-Net only, so never with the plain BasicUNet.
    assert {key: logic.networkByDefault(p) for key, p in projects.items()} == {
        ("segmentation", 2): "pretrained", ("segmentation", 3): "pretrained", ("landmarks", 2): "pretrained",
        ("landmarks", 3): "pretrained"}
    assert logic.selftrainByDefault(seg2d, network="pretrained") and not logic.selftrainByDefault(seg2d, network="plain")
    for case in ("a", "b"):
        (seg2d.labels_dir / f"{case}.seg.nrrd").write_bytes(b"any label file counts")
    assert not seg2d.unlabeled_cases() and not logic.selftrainByDefault(seg2d)
