"""``Slicer --no-main-window --python-script Scripts/DiffusionSegBatch.py -- ...`` end to end.

The script runs in a child process on the harness's Slicer (harness/slicer_launcher.py),
inside the module's real DiffusionSegLogic, and trains a tiny real model: create a
project, add images, pretrain, fine-tune on two labeled cases, predict the third, and
ask which case to annotate next.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import VERSIONS, available

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SCRIPT = REPO / "DiffusionSeg" / "Scripts" / "DiffusionSegBatch.py"


def run_in_slicer(version, *args, timeout=600):
    command = [sys.executable, "-m", "harness.slicer_launcher", "--slicer", version, "--python-script", str(SCRIPT),
               "--", *map(str, args)]
    return subprocess.run(command, cwd=HERE, capture_output=True, text=True, timeout=timeout)


def write_discs(folder: Path, count: int):
    """2D images (32 x 32, 0.5 mm) with a bright disc each, and the disc as a label map."""
    sitk = pytest.importorskip("SimpleITK")
    folder.mkdir()
    rng = np.random.default_rng(0)
    masks = {}
    for i in range(count):
        yy, xx = np.mgrid[0:32, 0:32]
        disc = ((yy - 14 - i) ** 2 + (xx - 16 + i) ** 2 < 49).astype(np.uint8)
        image = sitk.GetImageFromArray((rng.normal(0, 10, (32, 32)) + 100 * disc).astype(np.float32))
        image.SetSpacing((0.5, 0.5))
        sitk.WriteImage(image, str(folder / f"disc{i}.nrrd"))
        masks[f"disc{i}"] = disc
    return masks


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_batch_script_in_slicer_end_to_end(version, tmp_path):
    reason = available()
    if reason:
        pytest.skip(reason)
    sitk = pytest.importorskip("SimpleITK")
    masks = write_discs(tmp_path / "incoming", 3)
    project = tmp_path / "project"
    created = run_in_slicer(version, "--project", project, "--create", "--task", "segmentation", "--dims", 2,
                            "--names", "disc", "--add-images", tmp_path / "incoming")
    assert created.returncode == 0, created.stderr
    assert "added 3 images" in created.stdout
    for case in ("disc0", "disc1"):  # two annotated cases, as label maps on the images' grid
        label = sitk.GetImageFromArray(masks[case])
        label.CopyInformation(sitk.ReadImage(str(project / "images" / f"{case}.nrrd")))
        sitk.WriteImage(label, str(project / "labels" / f"{case}.nrrd"))

    tiny = ["--preset", "tiny", "--image-size", 32, 32, "--batch-size", 2, "--device", "cpu"]
    result = run_in_slicer(version, "--project", project, "--pretrain", "--pretrain-iterations", 3, "--finetune",
                           "--finetune-iterations", 3, "--predict", "unlabeled", "--suggest", 1, *tiny)
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("pretrain: done", "finetune: done", "predict: done", "suggest: done", "1. disc2: "):
        assert step in result.stdout, result.stdout
    [prediction] = project.glob("runs/predict-*/predictions/disc2.seg.nrrd")
    image = sitk.ReadImage(str(project / "images" / "disc2.nrrd"))
    predicted = sitk.ReadImage(str(prediction))
    assert predicted.GetSize()[:2] == image.GetSize()[:2]
    assert np.allclose(predicted.GetSpacing()[:2], image.GetSpacing()[:2])

    # A failing step: exit code 2 and its message, through slicer.util.exit.
    failed = run_in_slicer(version, "--project", tmp_path / "missing", "--pretrain")
    assert failed.returncode == 2 and "project.json" in failed.stderr
