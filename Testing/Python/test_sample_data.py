"""Sample data: phantoms are deterministic, anatomically placed, and written with geometry."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from DiffusionSegLib.errors import UserError
from DiffusionSegLib.landmarks import read_landmarks
from DiffusionSegLib.project import Project
from DiffusionSegLib.sample_data import (CHEST_CLASSES, CHEST_LANDMARKS, VOLUME_LANDMARKS, chest_phantom,
                                         generate_sample_dataset, volume_phantom)

CHEST_LABEL_OF = {"right_lung_apex": 1, "left_lung_apex": 2, "right_costophrenic_angle": 1,
                  "left_costophrenic_angle": 2, "heart_apex": 3}


@pytest.mark.parametrize("size", [(64, 64), (24, 32), (16, 16)])
def test_chest_phantom_anatomy(size):
    for seed in range(3):
        image, lab, lm = chest_phantom(np.random.default_rng(seed), size)
        assert image.shape == lab.shape == size and image.dtype == np.float32 and lab.dtype == np.uint8
        assert set(np.unique(lab)) == {0, 1, 2, 3}
        assert list(lm) == CHEST_LANDMARKS
        for name, (r, c) in lm.items():
            assert 0 <= r <= size[0] - 1 and 0 <= c <= size[1] - 1, name
            if name in CHEST_LABEL_OF:
                assert lab[int(round(r)), int(round(c))] == CHEST_LABEL_OF[name], name
        cols = {k: np.nonzero(lab == k)[1].mean() for k in (1, 2, 3)}
        assert cols[1] < cols[3] < cols[2]  # right lung on the image's left, heart between
        assert lm["right_costophrenic_angle"][0] > lm["right_lung_apex"][0] + size[0] / 3
        assert lm["right_lung_apex"][1] < lm["carina"][1] < lm["left_lung_apex"][1]
        assert lab[int(round(lm["carina"][0])), int(round(lm["carina"][1]))] == 0
        lungs = image[(lab == 1) | (lab == 2)].mean()
        assert image[lab == 3].mean() > lungs  # air is dark, the heart shadow is bright


def test_chest_phantom_deterministic_and_varied():
    a = chest_phantom(np.random.default_rng(7), (48, 48))
    b = chest_phantom(np.random.default_rng(7), (48, 48))
    c = chest_phantom(np.random.default_rng(8), (48, 48))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    assert (a[1] != c[1]).mean() > 0.01 and a[2] != c[2]


@pytest.mark.parametrize("size", [(16, 24, 24), (8, 16, 16)])
def test_volume_phantom(size):
    image, lab, lm = volume_phantom(np.random.default_rng(0), size)
    assert image.shape == lab.shape == size and set(np.unique(lab)) == {0, 1, 2}
    assert list(lm) == VOLUME_LANDMARKS
    for name, idx in lm.items():
        label = 1 if name.startswith("right") else 2
        assert lab[tuple(int(round(i)) for i in idx)] == label, name
    assert lm["right_kidney_upper_pole"][0] > lm["right_kidney_lower_pole"][0]  # upper = superior = higher z
    assert np.nonzero(lab == 1)[2].mean() < np.nonzero(lab == 2)[2].mean()  # right kidney at low x (LPS)
    again = volume_phantom(np.random.default_rng(0), size)
    np.testing.assert_array_equal(image, again[0])


def test_generate_2d(tmp_path):
    out = tmp_path / "sample"
    project = generate_sample_dataset(out, dims=2, n_cases=3, size=(32, 40), seed=1)
    assert Project.load(out) == project
    assert project.classes == CHEST_CLASSES and project.modality == "xray" and project.dims == 2
    assert project.landmark_names == CHEST_LANDMARKS and project.labeled_cases() == ["case_000", "case_001", "case_002"]
    img = sitk.ReadImage(str(out / "images" / "case_001.nrrd"))
    lab = sitk.ReadImage(str(out / "labels" / "case_001.nrrd"))
    assert img.GetSize() == (40, 32) and img.GetPixelID() == sitk.sitkUInt16
    assert lab.GetPixelID() == sitk.sitkUInt8
    assert img.GetSpacing() == pytest.approx((358.4 / 40,) * 2)
    assert all(abs(o) > 1 for o in img.GetOrigin())
    for a, b in [(img.GetSpacing(), lab.GetSpacing()), (img.GetOrigin(), lab.GetOrigin())]:
        assert a == pytest.approx(b)
    lm = read_landmarks(out / "landmarks" / "case_001.mrk.json")
    assert lm.names == CHEST_LANDMARKS and np.all(lm.points[:, 2] == 0)
    labels = sitk.GetArrayFromImage(lab)
    expected = _phantom_landmarks(2, (32, 40), 1, 1)
    for name, point in zip(lm.names, lm.points):
        col, row = lab.TransformPhysicalPointToContinuousIndex(point[:2].tolist())
        assert (row, col) == pytest.approx(expected[name], abs=1e-6)  # index -> mm -> index
        if name in CHEST_LABEL_OF:
            assert labels[int(round(row)), int(round(col))] == CHEST_LABEL_OF[name]


def _phantom_landmarks(dims, size, seed, case):
    rng = np.random.default_rng([seed, case])
    return (chest_phantom if dims == 2 else volume_phantom)(rng, size)[2]


def test_generate_3d_anisotropic(tmp_path):
    project = generate_sample_dataset(tmp_path / "vol", dims=3, n_cases=2, size=(8, 16, 20), seed=0)
    assert project.dims == 3 and project.modality == "mri" and len(project.classes) == 2
    img = sitk.ReadImage(str(project.images_dir / "case_000.nrrd"))
    assert img.GetSize() == (20, 16, 8) and img.GetSpacing()[2] == pytest.approx(2 * img.GetSpacing()[0])
    lm = read_landmarks(tmp_path / "vol" / "landmarks" / "case_000.mrk.json")
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(project.labels_dir / "case_000.nrrd")))
    for name, point in zip(lm.names, lm.points):
        x, y, z = img.TransformPhysicalPointToContinuousIndex(point.tolist())
        assert labels[round(z), round(y), round(x)] == (1 if name.startswith("right") else 2)


def test_generate_twice_is_deterministic_and_safe(tmp_path):
    a = tmp_path / "a"
    generate_sample_dataset(a, n_cases=2, size=(16, 16), seed=3)
    files = sorted(p for p in a.rglob("*") if p.is_file())
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    generate_sample_dataset(a, n_cases=2, size=(16, 16), seed=3)  # no-op
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before
    (a / "images" / "case_001.nrrd").unlink()  # an interrupted run is completed identically
    generate_sample_dataset(a, n_cases=2, size=(16, 16), seed=3)
    assert (a / "images" / "case_001.nrrd").read_bytes() == before[a / "images" / "case_001.nrrd"][0]
    b = tmp_path / "b"
    generate_sample_dataset(b, n_cases=2, size=(16, 16), seed=3)
    for p in files:
        if p.suffix != ".json" or p.name.endswith(".mrk.json"):
            assert (b / p.relative_to(a)).read_bytes() == p.read_bytes()
    generate_sample_dataset(a, n_cases=1, size=(16, 16), seed=4)  # other arguments: regenerated
    assert sorted(p.name for p in (a / "images").iterdir()) == ["case_000.nrrd"]
    assert Project.load(a).extra["sample_data"]["seed"] == 4


def test_generate_refuses_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(UserError, match="not a generated sample dataset"):
        generate_sample_dataset(tmp_path, n_cases=1, size=(16, 16))
    Project.create(tmp_path / "p", classes=["a"])
    with pytest.raises(UserError, match="not a generated sample dataset"):
        generate_sample_dataset(tmp_path / "p", n_cases=1, size=(16, 16))
    with pytest.raises(UserError, match="size"):
        generate_sample_dataset(tmp_path / "q", size=(4, 4))
