"""One vocabulary (DiffusionSegLib/vocabulary.py): every reader names cases and picks label
files by the same rule, and every choice list is the vocabulary's."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from DiffusionSegLib import vocabulary as v
from DiffusionSegLib.errors import UserError
from DiffusionSegLib.evaluation.segmentation import _label_files
from DiffusionSegLib.finetune.cases import SEGMENTATION_SUFFIXES, labeled_cases
from DiffusionSegLib.imageio import list_images
from DiffusionSegLib.project import Project

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "DiffusionSeg"


def _touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _dicom(path: Path) -> Path:
    """A file with the DICOM preamble (enough for naming and listing; not a readable image)."""
    return _touch(path, bytes(128) + b"DICM")


def _core_logic():
    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))
    from DiffusionSegModuleLib.corelogic import CoreLogic

    return CoreLogic(None, sys.executable, backend_dir=REPO)  # projectStatus and caseRows read only the folder


@pytest.mark.parametrize("suffix", v.SEGMENTATION_LABEL_SUFFIXES)
def test_a_label_is_counted_alike_by_project_finetune_evaluation_and_module(tmp_path, suffix):
    """labels/a.tif was trained on by finetune but counted unlabeled by the project (and the module)."""
    project = Project.create(tmp_path / "p", task="segmentation", dims=2, classes=["lung"])
    for case in ("a", "b"):
        _touch(project.images_dir / f"{case}.png")
    _touch(project.labels_dir / f"a{suffix}")

    assert project.labeled_cases() == ["a"] and project.unlabeled_cases() == ["b"]
    assert project.label_path("a") == project.labels_dir / f"a{suffix}"
    trained = labeled_cases(project.images_dir, project.labels_dir, SEGMENTATION_SUFFIXES)
    assert [c.name for c in trained] == ["a"]
    assert list(_label_files(project.labels_dir)) == ["a"]
    logic = _core_logic()
    status = logic.projectStatus(project)
    assert (status["images"], status["labeled"], status["unlabeled"]) == (2, 1, 1)
    assert {row.case: row.status for row in logic.caseRows(project)} == {"a": "labeled", "b": "unlabeled"}
    assert logic.nextUnlabeledCase(project) == "b"  # and 'predict unlabeled' predicts b only


def test_label_preference_is_one_order(tmp_path):
    labels = tmp_path / "labels"
    for name in ("a.png", "a.seg.nrrd", "a.nii.gz", "b.tif", "b.mha", "c.csv", "c.mrk.json"):
        _touch(labels / name)
    assert v.case_files(labels, v.SEGMENTATION_LABEL_SUFFIXES) == {"a": labels / "a.seg.nrrd", "b": labels / "b.mha"}
    assert v.case_files(labels, v.LANDMARK_LABEL_SUFFIXES) == {"c": labels / "c.mrk.json"}


def test_case_naming_rule():
    assert v.case_name("Knee.NII.GZ") == "Knee"
    assert v.case_name("a.seg.nrrd") == "a" and v.case_name("a.seg.nii.gz") == "a" and v.case_name("a.mrk.json") == "a"
    assert v.case_name("knee.v2.nrrd") == "knee.v2"
    assert v.case_name("scan.dcm") == "scan"
    # No known suffix: the whole name (DICOM files named by UID or number).
    assert v.case_name("1.2.840.113619.2.55") == "1.2.840.113619.2.55" and v.case_name("IM0001") == "IM0001"
    assert v.case_name(".nii.gz") == ".nii.gz"


def test_dicom_naming_rule(tmp_path):
    """Suffix-less DICOM files keep their full names (two UIDs are two cases, not one
    cut at the last dot); a folder of DICOM slices is one case named after the folder;
    project, imageio and finetune list the same cases."""
    project = Project.create(tmp_path / "p", task="segmentation", dims=3, classes=["liver"])
    images = project.images_dir
    _dicom(images / "1.2.840.113619.2.55")
    _dicom(images / "1.2.840.113619.2.56")
    _dicom(images / "ct7" / "slice001")
    _dicom(images / "ct7" / "slice002")
    _touch(images / "notes.txt")
    expected = ["1.2.840.113619.2.55", "1.2.840.113619.2.56", "ct7"]
    assert project.cases() == expected
    assert project.image_path("ct7") == images / "ct7"
    assert project.image_path("1.2.840.113619.2.55") == images / "1.2.840.113619.2.55"
    assert sorted(v.case_name(p) for p in list_images(images)) == expected
    _touch(project.labels_dir / "ct7.seg.nrrd")
    assert project.labeled_cases() == ["ct7"]
    assert [c.name for c in labeled_cases(images, project.labels_dir, SEGMENTATION_SUFFIXES)] == ["ct7"]


@pytest.mark.parametrize("first, second", [
    ("a.png", "a.nrrd"),
    ("IM0001", "IM0001.dcm"),
    ("ct7.nii.gz", "ct7/slice001"),
])
def test_two_images_of_one_case_are_an_error_naming_both(tmp_path, first, second):
    project = Project.create(tmp_path / "p", task="segmentation", dims=3, classes=["liver"])
    for name in (first, second):
        path = project.images_dir / name
        _dicom(path) if "." not in name or name.endswith(".dcm") or "/" in name else _touch(path)
    for call in (project.cases, lambda: list_images(project.images_dir)):
        with pytest.raises(UserError) as err:
            call()
        text = str(err.value)
        assert "one case" in text and first.split("/")[0] in text and second.split("/")[0] in text


def test_two_labels_of_one_case_and_suffix_are_an_error(tmp_path):
    labels = tmp_path / "labels"
    _touch(labels / "a.NRRD")
    _touch(labels / "a.nrrd")
    if len(list(labels.iterdir())) < 2:
        pytest.skip("a case-insensitive file system keeps one file")
    with pytest.raises(UserError, match="a.NRRD and .*a.nrrd|a.nrrd and .*a.NRRD"):
        v.case_files(labels, v.SEGMENTATION_LABEL_SUFFIXES)


def test_choice_enums_are_strings():
    assert v.Task.SEGMENTATION == "segmentation" and v.TASKS == ("segmentation", "landmarks")
    assert v.values(v.FinetuneMode) == ("full", "probe", "mlp") and v.PROBE_MODES == ("probe", "mlp")
    assert v.label_suffixes("landmarks") == v.LANDMARK_LABEL_SUFFIXES


#: argparse dest -> the vocabulary's list. Choice lists of one command only (presets, schedules,
#: samplers, strategies, metrics, dims, init) are stated by that command's package and listed here
#: as such, so a new choice list must be classified before this test passes.
VOCABULARY_CHOICES = {
    "task": v.TASKS, "mode": v.FINETUNE_MODES, "modality": ("auto",) + v.MODALITIES, "objective": v.OBJECTIVES,
    "precision": v.PRECISIONS, "progress": v.PROGRESS_MODES, "measure": v.CONFIDENCE_MEASURES,
    "augmentation": v.AUGMENTATIONS,
}
COMMAND_CHOICES = {"dims", "preset", "schedule", "method", "strategy", "init", "metric", "command", "bpr_command"}
VOCABULARY_DEFAULTS = {"mode": v.FinetuneMode.FULL, "objective": v.Objective.DDPM, "precision": v.Precision.AUTO,
                       "progress": v.Progress.BAR, "augmentation": v.Augmentation(v.DEFAULT_AUGMENTATION)}


def _choice_actions(parser: argparse.ArgumentParser, where: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _choice_actions(sub, f"{where} {name}")
        elif action.choices is not None:
            yield where, action


def test_every_cli_choice_list_is_the_vocabulary_s():
    from DiffusionSegLib.cli.main import build_parser

    seen = set()
    for where, action in _choice_actions(build_parser(), "diffusionseg"):
        seen.add(action.dest)
        if action.dest in COMMAND_CHOICES:
            continue
        assert action.dest in VOCABULARY_CHOICES, f"{where} {action.option_strings}: a choice list the vocabulary lacks"
        assert tuple(action.choices) == VOCABULARY_CHOICES[action.dest], f"{where} {action.option_strings}"
        if action.dest in VOCABULARY_DEFAULTS:
            assert action.default == VOCABULARY_DEFAULTS[action.dest].value, f"{where} {action.option_strings}"
    assert {"task", "mode", "modality", "objective", "precision", "progress", "measure", "augmentation"} <= seen


def test_batch_script_choice_lists_are_the_vocabulary_s(monkeypatch):
    monkeypatch.delenv("DIFFUSIONSEG_BACKEND_DIR", raising=False)
    monkeypatch.syspath_prepend(str(MODULE_DIR / "Scripts"))
    import DiffusionSegBatch

    choices = {a.dest: tuple(a.choices) for a in DiffusionSegBatch.build_parser()._actions if a.choices}
    assert choices["task"] == v.TASKS and choices["modality"] == v.MODALITIES and choices["mode"] == v.FINETUNE_MODES


def test_the_vocabulary_is_plain_python():
    source = (REPO / "DiffusionSegLib" / "vocabulary.py").read_text("utf-8")
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert all(m not in line for line in imports for m in ("torch", "numpy", "SimpleITK", "monai")), imports
