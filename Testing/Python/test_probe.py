"""Frozen-backbone probing and the pixel-MLP ensemble (finetune --mode probe|mlp), and coordinate channels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from DiffusionSegLib.cli.main import main
from DiffusionSegLib.data.coordinates import coordinate_map, position_map
from DiffusionSegLib.diffusion.draw import sample_model
from DiffusionSegLib.errors import UserError
from DiffusionSegLib.evaluation.segmentation import evaluate_segmentations
from DiffusionSegLib.finetune.run import FinetuneOptions, finetune
from DiffusionSegLib.nets import network_config
from DiffusionSegLib.predict.engine import load_task_model, network_output
from DiffusionSegLib.predict.run import PredictOptions, predict
from DiffusionSegLib.probe import build_probe_network
from DiffusionSegLib.sample_data import generate_sample_dataset
from DiffusionSegLib.pretrain.run import PretrainOptions, pretrain
from blind_baselines import atlas_scores, required_dice, shifted_phantoms

CLASSES = ["right_lung", "left_lung", "heart"]
DIFFUSION = {"num_train_timesteps": 1000, "schedule": "linear_beta"}


def probe_spec(mode: str = "probe", timesteps=(10, 30, 60)) -> dict:
    return {"mode": mode, "timesteps": list(timesteps), "noise_seed": 0, "blocks": None, "members": 3,
            "hidden": 16, "diffusion": DIFFUSION}


TRAIN = [f"case_{i:03d}" for i in range(5)]
TEST = [f"case_{i:03d}" for i in range(5, 10)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """10 chest phantoms, 24 px across at 11.2 mm/px, each moved to a random place in a
    32 x 32 canvas, so the atlas of the training masks cannot pass for a model (it scores
    Dice 0.87 on phantoms whose anatomy stays put)."""
    root = tmp_path_factory.mktemp("phantoms")
    generate_sample_dataset(root / "centred", dims=2, n_cases=10, size=(24, 24), seed=5, spacing=[11.2, 11.2])
    return shifted_phantoms(root / "centred", root / "data", (32, 32), seed=5)


@pytest.fixture(scope="module")
def atlas(dataset, tmp_path_factory) -> dict:
    """The image-blind baseline: the best atlas of the TRAIN masks, scored on TEST."""
    return atlas_scores(dataset / "labels", dataset / "images", TRAIN, TEST, CLASSES,
                        tmp_path_factory.mktemp("atlas"))


@pytest.fixture(scope="module")
def pretrained(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pre") / "model"
    pretrain(PretrainOptions(images=dataset / "images", out=out, preset="tiny", image_size=[32, 32], iterations=30,
                             batch_size=5, learning_rate=1e-3, checkpoint_every=30, device="cpu", progress="none"))
    return out


def labels_of(dataset: Path, dst: Path, cases: list[str]) -> Path:
    dst.mkdir(parents=True)
    for case in cases:
        (dst / f"{case}.nrrd").symlink_to(dataset / "labels" / f"{case}.nrrd")
    return dst


def held_out_scores(dataset: Path, model: Path, tmp_path: Path) -> dict:
    """Predict the held-out phantoms (TEST) and score them against their labels."""
    test = tmp_path / "test"
    test.mkdir()
    for case in TEST:
        (test / f"{case}.nrrd").symlink_to(dataset / "images" / f"{case}.nrrd")
    predict(PredictOptions(model=model, images=test, out=tmp_path / "pred", device="cpu", progress="none"))
    return evaluate_segmentations(tmp_path / "pred", dataset / "labels", CLASSES)["summary"]


@pytest.mark.parametrize("dims,shape", [(2, (32, 32)), (3, (16, 32, 24))])
def test_feature_shapes(dims, shape):
    """F = timesteps x (sum of the decoder blocks' channels), every block upsampled to the input size."""
    net = build_probe_network(network_config("tiny", dims), DIFFUSION, 4, probe_spec())
    x = torch.zeros(2, 1, *shape)
    features = net.features(x)
    assert features.shape == (2, 3 * (64 + 32 + 16), *shape)
    assert net.features.channels == features.shape[1]
    assert net(x).shape == (2, 4, *shape)
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("head.") for n in trainable)


def test_mlp_ensemble_outputs_log_mean_probabilities():
    net = build_probe_network(network_config("tiny", 2), DIFFUSION, 4, probe_spec("mlp")).eval()
    x = torch.randn(1, 1, 16, 16)
    out = net(x)
    assert torch.allclose(out.exp().sum(1), torch.ones(1, 16, 16), atol=1e-4)
    members = net.head.member_logits(net.features(x))
    assert len(members) == 3
    mean = torch.stack([m.softmax(1) for m in members]).mean(0)
    assert torch.allclose(out.exp(), mean, atol=1e-5)
    # Training reads a sample of pixels, each member on the same ones, labels gathered alike.
    label = torch.arange(16 * 16).reshape(1, 1, 16, 16) % 4
    pairs = net.train().training_outputs(x, label, seed=3, pixels=50)
    assert len(pairs) == 3 and pairs[0][0].shape == (1, 4, 50, 1) and pairs[0][1].shape == (1, 1, 50, 1)
    again = net.training_outputs(x, label, seed=3, pixels=50)
    assert torch.equal(pairs[0][1], again[0][1]) and len(set(pairs[0][1].flatten().tolist())) > 1


def test_probe_trains_head_only_and_predicts_deterministically(dataset, pretrained, atlas, tmp_path):
    """The backbone stays bit-identical; the head learns (Dice far above chance and the
    atlas); prediction repeats."""
    labels = labels_of(dataset, tmp_path / "labels", TRAIN)
    model = tmp_path / "probe"
    finetune(FinetuneOptions(task="segmentation", images=dataset / "images", annotations=labels, out=model,
                             pretrained=pretrained, classes=CLASSES, mode="probe", probe_timesteps=[5, 50],
                             probe_hidden=16, iterations=160, batch_size=5, learning_rate=3e-3, checkpoint_every=160,
                             device="cpu", progress="none"))
    config = json.loads((model / "config.json").read_text())
    assert config["mode"] == "probe" and config["probe"]["timesteps"] == [5, 50]
    before = load_file(str(pretrained / "model.safetensors"))
    after = load_file(str(model / "model.safetensors"))
    for name, value in before.items():
        assert torch.equal(after[f"features.unet.{name}"], value), name

    summary = held_out_scores(dataset, model, tmp_path)
    assert summary["mean_dice"] > 0.5, summary  # chance for these small organs is well under 0.2
    assert summary["mean_dice"] >= required_dice(atlas["mean_dice"]), (summary, atlas)  # atlas: about 0.26

    loaded = load_task_model(model, "cpu")
    image = np.random.default_rng(0).uniform(-1, 1, (32, 32)).astype(np.float32)
    assert np.array_equal(network_output(loaded, image), network_output(loaded, image))


def test_probe_mode_for_landmarks_trains_and_predicts_markups(dataset, pretrained, tmp_path):
    """A probe head on heatmaps (the landmark task's own loss; once a KeyError on 'label')."""
    marks = tmp_path / "marks"
    marks.mkdir()
    for case in TRAIN:
        (marks / f"{case}.mrk.json").symlink_to(dataset / "landmarks" / f"{case}.mrk.json")
    model = tmp_path / "lm-probe"
    finetune(FinetuneOptions(task="landmarks", images=dataset / "images", annotations=marks, out=model,
                             pretrained=pretrained, mode="probe", probe_timesteps=[5], probe_hidden=8,
                             iterations=4, batch_size=4, checkpoint_every=4, device="cpu", progress="none"))
    assert json.loads((model / "config.json").read_text())["mode"] == "probe"
    test = tmp_path / "test"
    test.mkdir()
    (test / f"{TEST[0]}.nrrd").symlink_to(dataset / "images" / f"{TEST[0]}.nrrd")
    predict(PredictOptions(model=model, images=test, out=tmp_path / "pred", device="cpu", progress="none"))
    points = json.loads((tmp_path / "pred" / f"{TEST[0]}.mrk.json").read_text())["markups"][0]["controlPoints"]
    assert len(points) == len(json.loads((marks / f"{TRAIN[0]}.mrk.json").read_text())["markups"][0]["controlPoints"])


def test_mlp_mode_learns(dataset, pretrained, atlas, tmp_path):
    labels = labels_of(dataset, tmp_path / "labels", TRAIN)
    model = tmp_path / "mlp"
    finetune(FinetuneOptions(task="segmentation", images=dataset / "images", annotations=labels, out=model,
                             pretrained=pretrained, classes=CLASSES, mode="mlp", mlp_members=2, iterations=100,
                             batch_size=5, learning_rate=3e-3, checkpoint_every=100, device="cpu", progress="none"))
    summary = held_out_scores(dataset, model, tmp_path)
    assert summary["mean_dice"] > 0.4, summary
    assert summary["mean_dice"] >= required_dice(atlas["mean_dice"]), (summary, atlas)  # atlas: about 0.26


def test_probe_sliding_window_equals_whole_volume(tmp_path):
    """3D probing through a window the size of the volume repeats the whole-volume pass exactly:
    the feature noise depends only on the window shape and the fixed seed."""
    generate_sample_dataset(tmp_path / "vol", dims=3, n_cases=2, size=(16, 32, 32), seed=0)
    pre = tmp_path / "pre3d"
    pretrain(PretrainOptions(images=tmp_path / "vol" / "images", out=pre, preset="tiny", patch_size=[32, 32, 16],
                             iterations=2, batch_size=1, checkpoint_every=2, device="cpu", progress="none"))
    model_dir = tmp_path / "probe3d"
    finetune(FinetuneOptions(task="segmentation", images=tmp_path / "vol" / "images",
                             annotations=tmp_path / "vol" / "labels", out=model_dir,
                             classes=["right_kidney", "left_kidney"], pretrained=pre, mode="probe", probe_hidden=8,
                             iterations=2, batch_size=1, checkpoint_every=2, device="cpu", progress="none"))
    model = load_task_model(model_dir, "cpu")
    volume = np.random.default_rng(0).uniform(-1, 1, (16, 32, 32)).astype(np.float32)
    whole = network_output(model, volume, windows=False)
    windowed = network_output(model, volume, windows=True)
    assert whole.shape == (3, 16, 32, 32)
    assert np.allclose(windowed, whole, atol=1e-5)
    big = np.random.default_rng(1).uniform(-1, 1, (20, 40, 36)).astype(np.float32)
    blended = network_output(model, big, overlap=0.5, windows=True)
    assert blended.shape == (3, 20, 40, 36) and np.isfinite(blended).all()


def test_probe_errors(dataset, pretrained, tmp_path, capsys):
    labels = labels_of(dataset, tmp_path / "labels", ["case_000"])
    common = dict(task="segmentation", images=dataset / "images", annotations=labels, classes=CLASSES,
                  iterations=1, batch_size=1, device="cpu", progress="none")
    with pytest.raises(UserError, match="frozen pretrained U-Net"):
        finetune(FinetuneOptions(out=tmp_path / "a", mode="probe", **common))
    with pytest.raises(UserError, match="segmentation only"):
        finetune(FinetuneOptions(**{**common, "task": "landmarks"}, out=tmp_path / "b", mode="mlp",
                                 pretrained=pretrained))
    with pytest.raises(UserError, match="must lie in"):
        finetune(FinetuneOptions(out=tmp_path / "c", mode="probe", probe_timesteps=[10, 5000], pretrained=pretrained,
                                 **common))
    masked = tmp_path / "masked"
    pretrain(PretrainOptions(images=dataset / "images", out=masked, preset="tiny", image_size=[32, 32], iterations=1,
                             batch_size=2, objective="masked", checkpoint_every=1, device="cpu", progress="none"))
    with pytest.raises(UserError, match="DDPM-pretrained"):
        finetune(FinetuneOptions(out=tmp_path / "d", mode="probe", pretrained=masked, **common))
    # Through the command line: one line naming the problem, exit 2, no output folder.
    code = main(["finetune", "--task", "segmentation", "--images", str(dataset / "images"), "--labels", str(labels),
                 "--classes", ",".join(CLASSES), "--out", str(tmp_path / "e"), "--init", "random", "--mode", "probe"])
    assert code == 2 and "frozen pretrained" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_position_coordinates_condition_every_stage(dataset, tmp_path):
    """--coordinates position: 1 + dims input channels in pretraining, fine-tuning, prediction, sampling."""
    assert position_map((2, 3)).shape == (2, 2, 3)
    assert np.allclose(position_map((2, 3))[1, 0], [-1, 0, 1])
    pre = tmp_path / "pre"
    pretrain(PretrainOptions(images=dataset / "images", out=pre, preset="tiny", image_size=[32, 32], iterations=3,
                             batch_size=2, coordinates="position", checkpoint_every=3, device="cpu",
                             progress="none"))
    config = json.loads((pre / "config.json").read_text())
    assert config["network"]["in_channels"] == 3 and config["preprocessing"]["coordinates"] == "position"
    labels = labels_of(dataset, tmp_path / "labels", ["case_000", "case_001"])
    for mode in ("full", "probe"):
        model = tmp_path / mode
        finetune(FinetuneOptions(task="segmentation", images=dataset / "images", annotations=labels, out=model,
                                 pretrained=pre, classes=CLASSES, mode=mode, probe_hidden=8, iterations=2,
                                 batch_size=2, checkpoint_every=2, device="cpu", progress="none"))
        predict(PredictOptions(model=model, images=dataset / "images" / "case_005.nrrd", out=tmp_path / f"p-{mode}",
                               device="cpu", progress="none"))
        assert (tmp_path / f"p-{mode}" / "case_005.seg.nrrd").is_file()
    sample_model(pre, tmp_path / "samples", count=2, steps=2, device="cpu", progress="none")
    assert (tmp_path / "samples" / "samples.png").is_file()
    with pytest.raises(UserError, match="unknown coordinate source"):
        pretrain(PretrainOptions(images=dataset / "images", out=tmp_path / "bad", image_size=[32, 32],
                                 coordinates="elsewhere", iterations=1, device="cpu", progress="none"))
    assert not (tmp_path / "bad").exists()
    import SimpleITK as sitk

    assert coordinate_map(sitk.Image(4, 5, sitk.sitkFloat32), None) is None
