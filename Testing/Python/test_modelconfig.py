"""The model-folder format (DiffusionSegLib.modelconfig): folders written by earlier versions load,
re-save identically, and a missing, unknown or mistyped key is one clear error naming config.json.

Testing/Data/model_configs/<kind>.json are the config.json files of tiny model folders of each
kind, written by make_model_configs.py with the code of the time (weights not kept).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from DiffusionSegLib import modelconfig
from DiffusionSegLib.errors import UserError

DATA = Path(__file__).resolve().parents[1] / "Data" / "model_configs"
KINDS = sorted(p.stem for p in DATA.glob("*.json"))
ROOT = Path(__file__).resolve().parents[2]


def folder(tmp_path: Path, name: str, edit=None) -> Path:
    model = tmp_path / name
    model.mkdir()
    data = json.loads((DATA / f"{name}.json").read_text())
    if edit is not None:
        edit(data)
    (model / "config.json").write_text(json.dumps(data, indent=2) + "\n")
    return model


def test_every_kind_is_kept():
    assert {"pretrained_ddpm", "pretrained_masked", "segmentation_full", "landmarks_full", "segmentation_probe",
            "segmentation_mlp", "segmentation_random", "selftrain", "bpr"} <= set(KINDS)


@pytest.mark.parametrize("name", KINDS)
def test_old_folders_load_and_resave_identically(name, tmp_path):
    model = tmp_path / name
    model.mkdir()
    shutil.copy(DATA / f"{name}.json", model / "config.json")
    config = modelconfig.load(model)
    assert config.kind == name.split("_")[0].replace("selftrain", "segmentation")
    assert modelconfig.to_dict(config) == json.loads((DATA / f"{name}.json").read_text())
    modelconfig.save(config, tmp_path / "copy")
    assert (tmp_path / "copy" / "config.json").read_text() == (DATA / f"{name}.json").read_text()


def test_typed_sections():
    seg = modelconfig.from_dict(json.loads((DATA / "segmentation_probe.json").read_text()))
    assert seg.head == "probe" and seg.probe.timesteps == [10, 30] and seg.probe.diffusion.num_train_timesteps == 1000
    assert seg.task.classes == ["right_lung", "left_lung", "heart"] and seg.preprocessing.normalisation.low == 0.5
    lmk = modelconfig.from_dict(json.loads((DATA / "landmarks_full.json").read_text()))
    assert lmk.head == "full" and lmk.task.landmarks[0] == "right_lung_apex" and lmk.training.step == 2
    bpr = modelconfig.from_dict(json.loads((DATA / "bpr.json").read_text()))
    assert bpr.network.slice_size == [16, 16] and bpr.preprocessing.orientation == "LPS" and bpr.dims is None


def test_a_section_built_in_code_writes_the_same_keys():
    data = json.loads((DATA / "pretrained_ddpm.json").read_text())
    loaded = modelconfig.from_dict(data)
    built = modelconfig.ModelConfig(
        kind="pretrained", objective="ddpm", dims=2,
        network=modelconfig.Network(**data["network"]),
        diffusion=modelconfig.Diffusion(**data["diffusion"]),
        preprocessing=modelconfig.Preprocessing(**{**data["preprocessing"], "normalisation": modelconfig.Normalisation(
            **data["preprocessing"]["normalisation"])}),
        training=modelconfig.Training(**data["training"]), created_by=data["created_by"])
    assert built.to_dict() == loaded.to_dict() == data


def _drop(path):
    def edit(data):
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        del data[last]
    return edit


def _set(path, value):
    def edit(data):
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value
    return edit


@pytest.mark.parametrize("name,edit,words", [
    ("segmentation_full", _drop("task"), "lacks the key(s) 'task'"),
    ("segmentation_full", _drop("network.channels"), "'network' lacks the key(s) 'channels'"),
    ("segmentation_full", _set("netwrok", {}), "unknown key(s) 'netwrok'"),
    ("pretrained_ddpm", _set("preprocessing.spacng", [1, 1]), "'preprocessing' has the unknown key(s) 'spacng'"),
    ("pretrained_ddpm", _set("network.channels", "16,32"), "'network.channels' should be a list"),
    ("landmarks_full", _set("task.sigma_mm", "3"), "'task.sigma_mm' should be float"),
    ("landmarks_full", _set("task.classes", ["a"]), "'task' has the unknown key(s) 'classes'"),
    ("segmentation_full", _set("dims", True), "'dims' should be int"),
    ("segmentation_full", _set("mode", "linear"), "'mode' should be one of full, probe, mlp"),
    ("segmentation_probe", _drop("probe"), "needs its 'probe' section"),
    ("segmentation_full", _set("kind", "classifier"), "'classifier' is not a model kind"),
    ("bpr", _drop("score_range"), "lacks the key(s) 'score_range'"),
    ("segmentation_full", _set("version", 99), "newer than this DiffusionSeg"),
    ("segmentation_full", _set("version", "1"), "not a whole number"),
    ("segmentation_full", _set("format", "other"), "not a DiffusionSeg model configuration"),
])
def test_a_bad_config_is_one_error_naming_the_file(name, edit, words, tmp_path):
    model = folder(tmp_path, name, edit)
    with pytest.raises(UserError) as err:
        modelconfig.load(model)
    assert words in err.value.message, err.value.message
    assert err.value.path == str(model / "config.json") and err.value.fix


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        modelconfig.load(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        modelconfig.load(tmp_path)


def test_save_refuses_an_invalid_config(tmp_path):
    config = modelconfig.from_dict(json.loads((DATA / "landmarks_full.json").read_text()))
    config.mode = "bogus"
    with pytest.raises(UserError, match="'mode' should be one of"):
        modelconfig.save(config, tmp_path)
    assert not (tmp_path / "config.json").exists()


def test_stdlib_only_and_python39():
    """The Slicer module imports it before torch exists: no torch, numpy or SimpleITK."""
    code = ("import sys; import DiffusionSegLib.modelconfig; "
            "bad = [m for m in ('torch', 'numpy', 'SimpleITK', 'monai') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
