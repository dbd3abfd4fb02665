"""The project folder: create, load, validate, save, labeled and unlabeled cases."""

from __future__ import annotations

import json

import pytest

from DiffusionSegLib.errors import UserError
from DiffusionSegLib.project import Project, case_name


def _seg(tmp_path, **kw):
    args = dict(task="segmentation", dims=2, classes=["right_lung", "left_lung", "heart"], modality="xray")
    args.update(kw)
    return Project.create(tmp_path / "proj", **args)


def test_create_load_round_trip(tmp_path):
    p = _seg(tmp_path, target_spacing=[1.4, 1.4], target_size=[256, 256], extra={"note": "kept"})
    for d in (p.images_dir, p.labels_dir, p.models_dir, p.runs_dir):
        assert d.is_dir()
    doc = json.loads(p.project_file.read_text())
    assert doc["format"] == "diffusionseg-project" and doc["version"] == 1 and doc["note"] == "kept"
    q = Project.load(p.folder)
    assert q == p
    assert len(q.class_colors) == 3 and all(len(c) == 3 for c in q.class_colors)
    q.landmark_names = ["apex"]
    q.save()
    assert Project.load(p.folder).landmark_names == ["apex"]
    assert [f.name for f in p.folder.iterdir() if f.name.startswith(".")] == []  # no temp files left


def test_create_refuses_existing_project(tmp_path):
    p = _seg(tmp_path)
    with pytest.raises(UserError, match="already exists"):
        _seg(tmp_path)
    _seg(tmp_path, classes=["a"], overwrite=True)
    assert Project.load(p.folder).classes == ["a"]


@pytest.mark.parametrize("kw,match", [
    (dict(task="classification"), "task"),
    (dict(dims=4), "dims"),
    (dict(modality="pet"), "modality"),
    (dict(classes=[]), "at least one class"),
    (dict(classes=["a", "a"]), "duplicated"),
    (dict(class_colors=[(1, 0, 0)]), "class_colors"),
    (dict(class_colors=[(2, 0, 0)] * 3), "class_colors"),
    (dict(target_spacing=[1.0]), "target_spacing"),
    (dict(target_size=[10.5, 3]), "target_size"),
    (dict(task="landmarks", landmark_names=[]), "landmark"),
])
def test_create_validates(tmp_path, kw, match):
    with pytest.raises(UserError, match=match):
        _seg(tmp_path, **kw)


@pytest.mark.parametrize("text,match", [
    (None, "no project.json"),
    ("{oops", "cannot read"),
    ('{"format": "other", "version": 1}', "not a DiffusionSeg project"),
    ('{"format": "diffusionseg-project", "version": 99, "task": "segmentation", "classes": ["a"]}', "version"),
    ('{"format": "diffusionseg-project", "version": 1, "task": "segmentation", "classes": "a"}', "classes"),
    ('{"format": "diffusionseg-project", "version": 1, "task": "segmentation", "dims": "2", "classes": ["a"],'
     ' "class_colors": [[1, 0, 0]]}', "dims"),
])
def test_load_malformed(tmp_path, text, match):
    if text is not None:
        (tmp_path / "project.json").write_text(text)
    with pytest.raises(UserError, match=match) as err:
        Project.load(tmp_path)
    assert err.value.path == str(tmp_path / "project.json")


def test_load_minimal_file_gets_default_colors(tmp_path):
    (tmp_path / "project.json").write_text(
        '{"format": "diffusionseg-project", "version": 1, "task": "landmarks", "landmark_names": ["a"]}')
    p = Project.load(tmp_path)
    assert p.task == "landmarks" and p.dims == 2 and p.classes == [] and p.class_colors == []


def test_case_name():
    assert case_name("images/case_003.nii.gz") == "case_003"
    assert case_name("a.seg.nrrd") == "a"
    assert case_name("b.mrk.json") == "b"
    assert case_name("x.y.png") == "x.y"


def test_labeled_and_unlabeled_cases(tmp_path):
    p = _seg(tmp_path)
    for name in ["a.nrrd", "b.nii.gz", "c.png", "d.nrrd", "e.mha", ".hidden.nrrd", "notes.txt"]:
        (p.images_dir / name).write_bytes(b"")
    for name in ["a.seg.nrrd", "b.nii.gz", "c.png", "e.mrk.json", "orphan.nrrd"]:
        (p.labels_dir / name).write_bytes(b"")
    assert p.cases() == ["a", "b", "c", "d", "e"]
    assert p.labeled_cases() == ["a", "b", "c"]
    assert p.unlabeled_cases() == ["d", "e"]
    assert p.label_path("a").name == "a.seg.nrrd" and p.image_path("b").name == "b.nii.gz"
    lm = Project.create(tmp_path / "lm", task="landmarks", landmark_names=["apex"])
    (lm.images_dir / "a.nrrd").write_bytes(b"")
    (lm.images_dir / "e.nrrd").write_bytes(b"")
    (lm.labels_dir / "a.nrrd").write_bytes(b"")  # a label map does not label a landmarks case
    (lm.labels_dir / "e.mrk.json").write_text("{}")
    assert lm.labeled_cases() == ["e"] and lm.unlabeled_cases() == ["a"]
