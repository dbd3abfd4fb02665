"""The module's core Logic with the REAL backend (python -m DiffusionSegLib), not the fake.

2D projects built from MRML nodes as a user would in Slicer (images loaded as volumes,
annotations painted / placed, saved through the Logic), then pretrain, fine-tune and
predict with tiny settings, and the predictions loaded back as new nodes. Also a real
pretraining run cancelled mid-way. Tens of seconds on a busy 2-core CPU; skipped without
slicer-core, torch or MONAI.
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mrml_helpers import make_volume, paint_segment

REPO = Path(__file__).resolve().parents[3]
#: Tiny runs: 32 x 32 network input, the tiny U-Net, 2 images per step, on the CPU.
TINY = {"device": "cpu", "preset": "tiny", "image_size": (32, 32), "batch_size": 2}


@pytest.fixture
def logic(mrml, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from DiffusionSegModuleLib.corelogic import CoreLogic

    monkeypatch.delenv("PYTHONPATH", raising=False)
    # One thread: on a loaded CPU torch's default thread pool makes 2 tiny steps take 10+ s.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return CoreLogic(mrml, sys.executable, backend_dir=REPO)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """4 chest phantoms (32 x 32, 11.2 mm pixels, non-zero origin) with label maps and landmarks."""
    from DiffusionSegLib.sample_data.generate import generate_sample_dataset

    return generate_sample_dataset(tmp_path_factory.mktemp("sample"), dims=2, n_cases=4, size=(32, 32))


def finish(logic, timeout=120):
    record = logic.wait(timeout=timeout)
    assert record is not None, "the backend did not finish in time"
    assert record.result.ok, record.result.message + "\n" + "\n".join(record.result.stderr_tail)
    return record


def load_images(logic, mrml, sample, project):
    """The sample images as scene volumes (as loaded in Slicer), added to ``project``."""
    from DiffusionSegModuleLib import nodeio

    volumes = [nodeio.read_volume(mrml, sample.image_path(case), case) for case in sample.cases()]
    cases = [logic.addVolume(project, volume) for volume in volumes]
    assert cases == sample.cases()
    return volumes, cases


def ijk_from_ras(volume, ras):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume.GetRASToIJKMatrix(matrix)
    return np.array(matrix.MultiplyPoint((*ras, 1.0))[:3])


def test_every_command_line_the_logic_builds_parses_with_the_real_cli(slicer_core, tmp_path):
    """The Logic's argument lists against the backend's own argparse parsers (no run)."""
    pytest.importorskip("torch")
    from DiffusionSegLib.cli.main import build_parser
    from DiffusionSegLib.project import Project
    from DiffusionSegModuleLib.corelogic import CoreLogic
    from DiffusionSegModuleLib.process import BackendProcess

    parser = build_parser()
    command = BackendProcess("python").build_command  # adds --progress json, as every run does

    def parse(args):
        return parser.parse_args(command(args)[4:])

    seg = Project.create(tmp_path / "s", "segmentation", 3, classes=["liver", "spleen"], modality="ct",
                         target_spacing=[1.5, 1.5, 3.0])
    lm = Project.create(tmp_path / "l", "landmarks", 2, landmark_names=["sella", "nasion"], modality="xray",
                        target_size=[64, 48])

    a = parse(CoreLogic.pretrainArgs(seg, tmp_path / "m", 7, "cpu"))
    assert (a.command, a.images, a.dims, a.modality, a.iterations, a.device, a.progress) == (
        "pretrain", seg.images_dir, 3, "ct", 7, "cpu", "json")
    assert a.spacing == [1.5, 1.5, 3.0] and a.image_size is None and not a.resume
    a = parse(CoreLogic.pretrainArgs(lm, tmp_path / "m", 7, preset="small", image_size=(32, 32), batch_size=2))
    assert (a.preset, a.image_size, a.batch_size, a.modality) == ("small", [32, 32], 2, "xray")
    assert parse(CoreLogic.pretrainArgs(lm, tmp_path / "m", 7)).image_size == [64, 48]  # the project's size
    a = parse(CoreLogic.pretrainArgs(lm, tmp_path / "m", 9, resume=True, image_size=(32, 32)))
    assert a.resume and a.image_size is None  # a resumed run keeps its own settings

    a = parse(CoreLogic.finetuneArgs(seg, tmp_path / "pre", tmp_path / "t", 5, "cpu", batch_size=3))
    assert (a.task, a.pretrained, a.init, a.labels, a.classes, a.out, a.iterations, a.batch_size) == (
        "segmentation", tmp_path / "pre", "pretrained", seg.labels_dir, ["liver", "spleen"], tmp_path / "t", 5, 3)
    assert a.spacing is None  # the pretrained model brings its own preprocessing
    assert a.mode == "full"
    assert parse(CoreLogic.finetuneArgs(seg, tmp_path / "pre", tmp_path / "t", 5, mode="probe")).mode == "probe"
    a = parse(CoreLogic.finetuneArgs(lm, None, tmp_path / "t", 5, preset="tiny", image_size=(32, 32)))
    assert (a.task, a.init, a.pretrained, a.landmarks, a.landmark_names) == (
        "landmarks", "random", None, lm.labels_dir, ["sella", "nasion"])
    assert (a.preset, a.image_size, a.modality) == ("tiny", [32, 32], "xray")

    a = parse(CoreLogic.predictArgs(tmp_path / "t", tmp_path / "img.nrrd", tmp_path / "o", "cpu"))
    assert (a.command, a.model, a.images, a.out, a.device) == ("predict", tmp_path / "t", tmp_path / "img.nrrd",
                                                                tmp_path / "o", "cpu")
    a = parse(CoreLogic.suggestArgs(seg, tmp_path / "pre", 3, tmp_path / "runs" / "suggest-1", "cpu"))
    assert (a.command, a.images, a.labels, a.count, a.device) == ("suggest", seg.images_dir, seg.labels_dir, 3, "cpu")
    assert str(a.out).rstrip("/").endswith("suggest-1")
    assert parse(CoreLogic.suggestArgs(lm, tmp_path / "lmk", 1, tmp_path / "o")).landmarks == lm.labels_dir
    a = parse(CoreLogic.curveArgs(seg, tmp_path / "pre", tmp_path / "c", "cpu"))
    assert (a.command, a.pretrained, a.images, a.labels, a.out, a.device) == (
        "curve", tmp_path / "pre", seg.images_dir, seg.labels_dir, tmp_path / "c", "cpu")
    assert "liver" in str(a.classes)
    a = parse(CoreLogic.curveArgs(lm, tmp_path / "pre", tmp_path / "c"))
    assert a.landmarks == lm.labels_dir and "sella" in str(a.landmark_names)


def test_segmentation_project_pretrain_finetune_predict(logic, mrml, sample, tmp_path):
    import SimpleITK as sitk
    import vtk

    from DiffusionSegModuleLib import nodeio, projectfiles

    project = logic.createProject(tmp_path / "seg", "segmentation", 2, sample.classes, "xray")
    volumes, cases = load_images(logic, mrml, sample, project)
    for volume, case in list(zip(volumes, cases))[:2]:
        annotation = logic.createAnnotation(project, volume)
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(sample.labels_dir / f"{case}.nrrd")))
        for index, name in enumerate(project.classes):
            assert (labels == index + 1).any()
            paint_segment(mrml, annotation, name, (labels == index + 1)[None], volume)
        assert logic.saveAnnotation(project, annotation, volume)["path"] == project.labels_dir / f"{case}.seg.nrrd"
    assert project.labeled_cases() == cases[:2] and project.unlabeled_cases() == cases[2:]

    timings = {}
    start = time.monotonic()
    pretrained = logic.startPretrain(project, iterations=2, **TINY)
    record = finish(logic)
    timings["pretrain"] = time.monotonic() - start
    assert record.result.state.step == 2 and record.result.state.last_checkpoint == str(pretrained)
    config = projectfiles.read_model_config(pretrained)
    assert config["kind"] == "pretrained" and config["preprocessing"]["image_size"] == [32, 32]
    assert config["network"]["preset"] == "tiny" and config["training"]["batch_size"] == 2

    start = time.monotonic()
    model = logic.startFinetune(project, pretrained, iterations=3, device="cpu", batch_size=2)
    finish(logic)
    timings["finetune"] = time.monotonic() - start
    config = projectfiles.read_model_config(model)
    assert config["kind"] == "segmentation" and config["task"]["classes"] == project.classes
    assert config["training"]["cases"] == cases[:2] and config["training"]["pretrained"] == str(pretrained)
    assert (model / "runs").is_dir()  # the model's own run logs are not mistaken for a model
    assert projectfiles.list_models(project, ["segmentation"]) == [model]
    assert projectfiles.list_models(project, ["pretrained"]) == [pretrained]

    start = time.monotonic()
    run = logic.startPredict(project, model, cases=[cases[2]], device="cpu")
    record = finish(logic)
    timings["predict"] = time.monotonic() - start
    expected = run / "predictions" / f"{cases[2]}.seg.nrrd"
    assert record.result.state.outputs == [(cases[2], str(expected))] and expected.is_file()
    [prediction] = record.loaded_nodes
    assert prediction.IsA("vtkMRMLSegmentationNode") and prediction.GetName() == f"{cases[2]} prediction"
    assert prediction.GetAttribute("DiffusionSeg.Case") == cases[2]
    assert nodeio.segment_names(prediction) == project.classes
    # Shown on the image already in the scene (not a second copy of it), on its exact grid.
    assert logic.volumeOfCase(project, cases[2], load=False) is volumes[2]
    image_to_ras, segment_to_ras = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    volumes[2].GetIJKToRASMatrix(image_to_ras)
    segmentation = prediction.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        labelmap = segmentation.GetNthSegment(i).GetRepresentation("Binary labelmap")
        labelmap.GetImageToWorldMatrix(segment_to_ras)
        assert np.allclose([[segment_to_ras.GetElement(r, c) for c in range(4)] for r in range(4)],
                           [[image_to_ras.GetElement(r, c) for c in range(4)] for r in range(4)])
        assert labelmap.GetExtent() == volumes[2].GetImageData().GetExtent() == (0, 31, 0, 31, 0, 0)
    labels = nodeio.label_array(mrml, prediction, volumes[2], project.classes)
    assert labels.shape == (1, 32, 32) and labels.max() <= len(project.classes)
    print("real backend timings (s):", {k: round(v, 1) for k, v in timings.items()})


def test_landmarks_project_random_init_finetune_predict(logic, mrml, sample, tmp_path):
    from DiffusionSegLib.landmarks import read_landmarks
    from DiffusionSegModuleLib import nodeio, projectfiles

    names = list(sample.landmark_names)
    project = logic.createProject(tmp_path / "lm", "landmarks", 2, names, "xray")
    volumes, cases = load_images(logic, mrml, sample, project)
    for number, (volume, case) in enumerate(list(zip(volumes, cases))[:2]):
        points = logic.createAnnotation(project, volume)
        assert [points.GetNthControlPointLabel(i) for i in range(points.GetNumberOfControlPoints())] == names
        truth = read_landmarks(sample.folder / "landmarks" / f"{case}.mrk.json", names)
        for i, lps in enumerate(truth.points):
            if number == 1 and i == 0:
                continue  # the second case leaves the first landmark unplaced
            points.SetNthControlPointPosition(i, -lps[0], -lps[1], lps[2])  # LPS -> RAS
        saved = logic.saveAnnotation(project, points, volume)
        assert saved["missing"] == ([names[0]] if number == 1 else [])

    # From random initialisation (the path the Slicer self-test takes): the Logic passes the
    # network size and input grid; the segmentation test above covers the pretrained path.
    start = time.monotonic()
    model = logic.startFinetune(project, None, iterations=3, **TINY)
    finish(logic)
    config = projectfiles.read_model_config(model)
    assert config["kind"] == "landmarks" and config["task"]["landmarks"] == names
    assert config["training"]["init"] == "random" and config["network"]["preset"] == "tiny"
    assert config["preprocessing"]["image_size"] == [32, 32] and config["training"]["batch_size"] == 2

    run = logic.startPredict(project, model, device="cpu")  # both unlabeled cases, through one folder
    record = finish(logic)
    print(f"real backend, landmarks finetune + predict: {time.monotonic() - start:.1f} s")
    folder = run / "predictions"
    assert sorted(record.result.state.outputs) == [(c, str(folder / f"{c}.mrk.json")) for c in cases[2:]]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{c}{s}" for c in cases[2:] for s in (".csv", ".mrk.json")] + ["confidence.json"])
    # The first case opens with its prediction; the other opens from the case list (one at a time).
    # Review order: least confident first, from the run's confidence.json.
    assert sorted(record.predictions) == cases[2:] and len(record.loaded_nodes) == 1
    confidence = json.loads((folder / "confidence.json").read_text())
    assert list(record.predictions) == sorted(cases[2:], key=lambda c: confidence[c]["confidence"])
    first_case = record.loaded_nodes[0].GetAttribute("DiffusionSeg.Case")
    other = next(c for c in cases[2:] if c != first_case)
    loaded = {first_case: record.loaded_nodes[0], other: logic.openCase(project, other)[1]}
    for case, volume in zip(cases[2:], volumes[2:]):
        node = loaded[case]
        assert node.IsA("vtkMRMLMarkupsFiducialNode") and node.GetAttribute("DiffusionSeg.Case") == case
        placed = nodeio.defined_points(node)
        assert list(placed) == names
        for ras in placed.values():
            i, j, k = ijk_from_ras(volume, ras)
            assert -0.5 <= i <= 31.5 and -0.5 <= j <= 31.5 and abs(k) < 1e-3


def test_cancel_a_real_pretraining_run(logic, mrml, tmp_path):
    from DiffusionSegModuleLib import projectfiles

    project = logic.createProject(tmp_path / "p", "segmentation", 2, ["disc"])
    rng = np.random.default_rng(0)
    for i in range(2):
        logic.addVolume(project, make_volume(mrml, (rng.random((1, 32, 32)) * 100).astype(np.float32),
                                             (0.5, 0.5, 1.0), (0.0, 0.0, 0.0), np.eye(3), name=f"img {i}"))
    out = logic.startPretrain(project, iterations=100_000, **TINY)
    pid = logic.process._proc.pid
    deadline = time.monotonic() + 90
    while logic.progress.step < 1:  # mid-way: training has started, no checkpoint yet
        assert logic.isRunning() and time.monotonic() < deadline, logic.process._stderr
        logic.poll()
        time.sleep(0.05)
    started = time.monotonic()
    logic.cancel()
    record = logic.wait(timeout=30)
    assert record is not None and time.monotonic() - started < 15  # SIGTERM was enough, no kill after 10 s
    assert record.result.status == "cancelled" and record.result.returncode == 130
    assert record.result.message == "Cancelled."  # no checkpoint to keep
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone
    assert not logic.isRunning() and logic.run is None
    # Nothing half-written: the model folder of a run without a checkpoint is removed.
    assert not out.exists() and projectfiles.list_models(project, ["pretrained"]) == []
    assert not [p for p in Path(project.folder).rglob("*") if "partial" in p.name or p.name.endswith(".tmp")]
    assert json.loads((Path(project.folder) / "project.json").read_text())["classes"] == ["disc"]


def test_real_backend_user_error_reaches_the_user(logic, mrml, tmp_path):
    """A 3D project holding a 2D image: the backend's one-line error becomes the message."""
    project = logic.createProject(tmp_path / "p", "segmentation", 3, ["disc"])
    array = np.zeros((1, 16, 16), np.float32)
    logic.addVolume(project, make_volume(mrml, array, (1, 1, 1), (0, 0, 0), np.eye(3), name="flat"))
    logic.startPretrain(project, iterations=2, device="cpu")
    record = logic.wait(timeout=120)
    assert record.result.status == "failed" and record.result.returncode == 2
    assert record.result.message and not record.result.message.startswith("error:")
    assert "Traceback" not in record.result.message
    assert not logic.isRunning()
