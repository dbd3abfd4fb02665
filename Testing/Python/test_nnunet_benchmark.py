"""The nnU-Net baseline's own parts (benchmarks/nnunet_jsrt.py); nnU-Net itself runs from its own venv, not in CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import nnunet_jsrt  # noqa: E402


def test_downsampling_takes_block_means_and_majority_classes(tmp_path):
    image = np.arange(256 * 256, dtype=np.float64).reshape(256, 256) % 251
    label = np.zeros((256, 256), np.uint8)
    label[:4, :4] = [[1, 1, 1, 2]] * 3 + [[2, 2, 2, 3]]   # block (0, 0): 9 of class 1, 6 of 2, 1 of 3
    label[4:8, 4:8] = 3
    for name, array in (("image.png", image.astype(np.uint8)), ("label.png", label)):
        sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / name))
    small = nnunet_jsrt.downsample(tmp_path / "image.png", 64, label=False)
    assert small.shape == (64, 64) and small.dtype == np.uint8
    assert small[0, 0] == round(image[:4, :4].astype(np.uint8).mean())
    classes = nnunet_jsrt.downsample(tmp_path / "label.png", 64, label=True)
    assert classes[0, 0] == 1 and classes[1, 1] == 3 and classes[2, 2] == 0 and set(np.unique(classes)) == {0, 1, 3}
    assert (nnunet_jsrt.downsample(tmp_path / "label.png", 256, label=True) == label).all()


def test_runner_holds_nnunets_threads_to_omp_num_threads(tmp_path):
    """nnU-Net sets torch's threads to every core on a CPU; the runner keeps OMP_NUM_THREADS."""
    (tmp_path / "greedy.py").write_text("import torch\n\ndef main():\n    torch.set_num_threads(0)\n"
                                        "    torch.set_num_threads(8)\n    print(torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", nnunet_jsrt.RUNNER, "greedy:main"], cwd=tmp_path, text=True,
                         capture_output=True, env={"OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path)}, check=True)
    assert out.stdout.strip() == "1"


def test_trainer_names_are_nnunets_or_the_runners():
    assert nnunet_jsrt.trainer_name(1, "nnU-Net") == "nnUNetTrainer_1epoch"
    assert nnunet_jsrt.trainer_name(10, "nnU-Net") == "nnUNetTrainer_10epochs"
    for epochs in nnunet_jsrt.EPOCH_VARIANTS:   # the runner registers exactly these
        assert nnunet_jsrt.trainer_name(epochs, "nnU-Net, no mirroring") == f"nnUNetTrainer_{epochs}epochs_NoMirroring"
    assert f"for epochs in {nnunet_jsrt.EPOCH_VARIANTS}" in nnunet_jsrt.RUNNER
