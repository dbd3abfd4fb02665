"""Write Testing/Data/model_configs/<kind>.json: the config.json of a tiny model folder of each kind.

Each folder is trained for a step or two by the current code, and only its config.json is kept
(no weights), so that test_modelconfig.py can check that folders written by this version still
load and re-save identically after the format module changes. Run from the repository root:

    .venv/bin/python Testing/Python/make_model_configs.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from DiffusionSegLib.bpr.train import BprOptions, train_bpr
from DiffusionSegLib.finetune.run import FinetuneOptions, finetune
from DiffusionSegLib.sample_data import generate_sample_dataset
from DiffusionSegLib.sample_data.body_phantom import body_ct_volume
from DiffusionSegLib.synthesize.selftrain import SelftrainOptions, selftrain
from DiffusionSegLib.pretrain.run import PretrainOptions, pretrain

OUT = Path(__file__).resolve().parents[1] / "Data" / "model_configs"
FAST = dict(device="cpu", progress="none")


def make(root: Path) -> dict[str, Path]:
    data = root / "data"
    generate_sample_dataset(data, dims=2, n_cases=4, size=(32, 32), seed=1)
    labels = root / "labels"
    labels.mkdir()
    for case in ("case_000", "case_001"):
        shutil.copy2(data / "labels" / f"{case}.nrrd", labels)
    models = {}
    for objective in ("ddpm", "masked"):
        out = models[f"pretrained_{objective}"] = root / f"pre_{objective}"
        pretrain(PretrainOptions(images=data / "images", out=out, preset="tiny", image_size=[32, 32], iterations=2,
                                 batch_size=2, checkpoint_every=2, objective=objective, **FAST))
    pre = models["pretrained_ddpm"]
    seg = dict(classes=["right_lung", "left_lung", "heart"])
    common = dict(images=data / "images", pretrained=pre, iterations=2, batch_size=2, checkpoint_every=2, **FAST)
    models["segmentation_full"] = root / "seg"
    finetune(FinetuneOptions(task="segmentation", annotations=data / "labels", out=root / "seg", **seg, **common))
    models["landmarks_full"] = root / "lmk"
    finetune(FinetuneOptions(task="landmarks", annotations=data / "landmarks", out=root / "lmk", **common))
    models["segmentation_random"] = root / "seg_random"
    finetune(FinetuneOptions(task="segmentation", annotations=data / "labels", out=root / "seg_random", **seg,
                             **{**common, "pretrained": None, "preset": "tiny", "image_size": [32, 32]}))
    for mode in ("probe", "mlp"):
        models[f"segmentation_{mode}"] = root / f"seg_{mode}"
        finetune(FinetuneOptions(task="segmentation", annotations=data / "labels", out=root / f"seg_{mode}", **seg,
                                 mode=mode, probe_timesteps=[10, 30], **common))
    models["selftrain"] = root / "selftrain"
    selftrain(SelftrainOptions(finetune=FinetuneOptions(task="segmentation", annotations=labels,
                                                        out=root / "selftrain", **seg, **common), min_confidence=0.0))
    volumes = root / "volumes"
    volumes.mkdir()
    for i in range(2):
        image = body_ct_volume(np.random.default_rng(i), (100.0 * i, 100.0 * i + 400), size_xy=(24, 24),
                               spacing_mm=(12.0, 12.0, 12.0))
        sitk.WriteImage(image, str(volumes / f"v{i}.nrrd"))
    models["bpr"] = root / "bpr"
    train_bpr(BprOptions(images=volumes, out=root / "bpr", iterations=2, batch_size=2, slices=4, slice_size=[16, 16],
                         channels=[4, 8], **FAST))
    return models


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp).resolve()
        for name, folder in make(root).items():
            text = (folder / "config.json").read_text().replace(str(root), "/tmp/models")
            json.loads(text)
            (OUT / f"{name}.json").write_text(text)
            print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
