"""Fine-tuning learns on a tiny generated set; prediction writes files Slicer reads, in the input's geometry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import slicerio
import SimpleITK as sitk
import torch

from DiffusionSegLib.cli.main import main
from DiffusionSegLib.errors import UserError
from DiffusionSegLib.evaluation.landmarks import evaluate_landmarks
from DiffusionSegLib.evaluation.segmentation import evaluate_segmentations
from DiffusionSegLib.finetune.run import FinetuneOptions, finetune
from DiffusionSegLib.predict.engine import load_task_model, network_output
from DiffusionSegLib.predict.run import PredictOptions, predict
from DiffusionSegLib.sample_data import generate_sample_dataset
from DiffusionSegLib.pretrain.run import PretrainOptions, pretrain
from blind_baselines import atlas_scores, mean_landmark_scores, required_dice, required_mre, shifted_phantoms


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """12 chest phantoms, 24 px across at 11.2 mm/px, each moved to a random place in a
    32 x 32 canvas (up to 8 px = 90 mm): where the anatomy stays put, the atlas of the
    training masks scores Dice 0.84 and the mean training landmarks 12 mm, and cannot be
    told apart from a model that reads the image."""
    root = tmp_path_factory.mktemp("phantoms")
    generate_sample_dataset(root / "centred", dims=2, n_cases=12, size=(24, 24), seed=3, spacing=[11.2, 11.2])
    return shifted_phantoms(root / "centred", root / "data", (32, 32), seed=3)


def subset(src: Path, dst: Path, cases: list[str], suffix: str) -> Path:
    dst.mkdir(parents=True)
    for case in cases:
        shutil.copy2(src / f"{case}{suffix}", dst)
    return dst


TRAIN = [f"case_{i:03d}" for i in range(6)]
TEST = [f"case_{i:03d}" for i in range(6, 12)]


@pytest.fixture(scope="module")
def pretrained(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pre") / "model"
    pretrain(PretrainOptions(images=dataset / "images", out=out, preset="tiny", image_size=[32, 32], iterations=30,
                             batch_size=6, learning_rate=1e-3, checkpoint_every=30, device="cpu", progress="none"))
    return out


def test_segmentation_learns_and_predicts_slicer_files(dataset, pretrained, tmp_path):
    labels = subset(dataset / "labels", tmp_path / "labels", TRAIN, ".nrrd")
    classes = ["right_lung", "left_lung", "heart"]
    model = tmp_path / "seg"
    finetune(FinetuneOptions(task="segmentation", images=dataset / "images", annotations=labels, out=model,
                             pretrained=pretrained, classes=classes, iterations=120, batch_size=6,
                             learning_rate=3e-3, checkpoint_every=120, device="cpu", progress="none"))
    config = json.loads((model / "config.json").read_text())
    assert config["kind"] == "segmentation" and config["task"]["classes"] == classes
    assert config["training"]["init"] == "pretrained"

    images = subset(dataset / "images", tmp_path / "test", TEST, ".nrrd")
    out = tmp_path / "pred"
    predict(PredictOptions(model=model, images=images, out=out, formats=["nii.gz"], overlay=True, device="cpu",
                           progress="none"))
    results = evaluate_segmentations(out, dataset / "labels", classes)
    dice = results["summary"]["mean_dice"]
    # Chance (a constant or random map) scores far below this on three structures.
    assert dice > 0.6, results["summary"]
    # And the model reads the image: it beats the atlas of the training masks (which never
    # sees the test image; Dice about 0.48 here) by half of the atlas's gap to 1.
    atlas = atlas_scores(dataset / "labels", dataset / "images", TRAIN, TEST, classes, tmp_path / "atlas")
    assert dice >= required_dice(atlas["mean_dice"]), (dice, atlas)

    # The .seg.nrrd opens with slicerio with the segment names and the image's geometry.
    seg_path = out / f"{TEST[0]}.seg.nrrd"
    seg = slicerio.read_segmentation(str(seg_path))
    assert [s["name"] for s in seg["segments"]] == classes
    image = sitk.ReadImage(str(images / f"{TEST[0]}.nrrd"))
    assert np.allclose(np.diag(seg["ijkToLPS"])[:2], image.GetSpacing())
    assert np.allclose(seg["ijkToLPS"][:2, 3], image.GetOrigin())
    assert (out / f"{TEST[0]}_overlay.png").is_file() and (out / f"{TEST[0]}.nii.gz").is_file()
    with pytest.raises(UserError, match="already exist"):
        predict(PredictOptions(model=model, images=images, out=out, device="cpu", progress="none"))

    # Each case's confidence (what the Slicer case list sorts the review by): a phantom of the
    # kind trained on is more certain than noise of the same intensity range.
    confidence = json.loads((out / "confidence.json").read_text())
    assert sorted(confidence) == sorted(TEST)
    assert all(0 <= c["confidence"] <= 1 and 0 <= c["uncertain_fraction"] <= 1 for c in confidence.values())
    phantom = sitk.ReadImage(str(images / f"{TEST[0]}.nrrd"))
    values = sitk.GetArrayFromImage(phantom)
    noise = sitk.GetImageFromArray(np.random.default_rng(0).uniform(values.min(), values.max(), values.shape)
                                   .astype(values.dtype))
    noise.CopyInformation(phantom)
    (tmp_path / "noise").mkdir()
    sitk.WriteImage(noise, str(tmp_path / "noise" / "noise.nrrd"))
    predict(PredictOptions(model=model, images=tmp_path / "noise", out=tmp_path / "noise-pred", device="cpu",
                           progress="none"))
    noisy = json.loads((tmp_path / "noise-pred" / "confidence.json").read_text())["noise"]
    assert noisy["confidence"] < min(c["confidence"] for c in confidence.values()), (noisy, confidence)


def test_predicted_seg_nrrd_loads_in_slicer_core(dataset, pretrained, tmp_path):
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")
    labels = subset(dataset / "labels", tmp_path / "labels", TRAIN[:2], ".nrrd")
    model = tmp_path / "seg"
    finetune(FinetuneOptions(task="segmentation", images=dataset / "images", annotations=labels, out=model,
                             pretrained=pretrained, classes=["right_lung", "left_lung", "heart"], iterations=2,
                             batch_size=2, checkpoint_every=2, device="cpu", progress="none"))
    out = tmp_path / "pred"
    predict(PredictOptions(model=model, images=dataset / "images" / f"{TEST[0]}.nrrd", out=out, device="cpu",
                           progress="none"))
    scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(out / f"{TEST[0]}.seg.nrrd"))
    assert storage.ReadData(node)
    names = [node.GetSegmentation().GetNthSegment(i).GetName() for i in range(node.GetSegmentation().GetNumberOfSegments())]
    assert names == ["right_lung", "left_lung", "heart"]


def test_landmarks_learn_and_predict_markups(dataset, pretrained, tmp_path):
    marks = subset(dataset / "landmarks", tmp_path / "marks", TRAIN, ".mrk.json")
    model = tmp_path / "lmk"
    finetune(FinetuneOptions(task="landmarks", images=dataset / "images", annotations=marks, out=model,
                             pretrained=pretrained, iterations=120, batch_size=6, learning_rate=3e-3,
                             checkpoint_every=120, device="cpu", progress="none"))
    images = subset(dataset / "images", tmp_path / "test", TEST, ".nrrd")
    out = tmp_path / "pred"
    predict(PredictOptions(model=model, images=images, out=out, overlay=True, device="cpu", progress="none"))
    results = evaluate_landmarks(out, dataset / "landmarks")
    mre = results["summary"]["overall"]["mre_mm"]
    # The image is 32 px across at 11.2 mm/px (358 mm): a learned model is within a few pixels.
    assert mre < 35, results["summary"]["overall"]
    # And it reads the image: half the error of the mean training landmarks (about 35 mm
    # here, as the anatomy moves from phantom to phantom).
    blind = mean_landmark_scores(dataset / "landmarks", TRAIN, TEST, tmp_path / "mean")
    assert mre < required_mre(blind["mre_mm"]), (mre, blind)
    doc = json.loads((out / f"{TEST[0]}.mrk.json").read_text())
    points = doc["markups"][0]["controlPoints"]
    assert [p["label"] for p in points][:2] == ["right_lung_apex", "left_lung_apex"]
    assert all("confidence=" in p["description"] for p in points)


def test_sliding_window_equals_whole_volume_forward(tmp_path):
    """3D sliding-window inference: the same result as one whole-volume forward pass."""
    generate_sample_dataset(tmp_path / "vol", dims=3, n_cases=2, size=(16, 32, 32), seed=0)
    model_dir = tmp_path / "seg3d"
    finetune(FinetuneOptions(task="segmentation", images=tmp_path / "vol" / "images",
                             annotations=tmp_path / "vol" / "labels", out=model_dir,
                             classes=["right_kidney", "left_kidney"], pretrained=None, preset="tiny",
                             patch_size=[32, 32, 16], iterations=2, batch_size=1, checkpoint_every=2,
                             device="cpu", progress="none"))
    model = load_task_model(model_dir, "cpu")
    volume = np.random.default_rng(0).uniform(-1, 1, (16, 32, 32)).astype(np.float32)
    # A volume of the patch's size: the window path must reproduce the direct pass exactly.
    whole = network_output(model, volume, windows=False)
    windowed = network_output(model, volume, windows=True)
    assert whole.shape == (3, 16, 32, 32)
    assert np.allclose(windowed, whole, atol=1e-5)

    # A larger volume: many overlapping Gaussian-weighted windows, padded at the border.
    # With a pointwise network (a 1x1x1 convolution) every window agrees with the whole
    # volume, so the blended result must equal the whole-volume pass voxel by voxel.
    pointwise = torch.nn.Conv3d(1, 3, kernel_size=1)
    model.network = pointwise.eval()
    big = np.random.default_rng(1).uniform(-1, 1, (24, 45, 37)).astype(np.float32)
    blended = network_output(model, big, overlap=0.5, windows=True)
    direct = network_output(model, big, windows=False)
    assert blended.shape == (3, 24, 45, 37)
    assert np.allclose(blended, direct, atol=1e-5)


def test_finetune_errors(dataset, pretrained, tmp_path, capsys):
    images = dataset / "images"
    empty = tmp_path / "none"
    empty.mkdir()
    code = main(["finetune", "--task", "segmentation", "--pretrained", str(pretrained), "--images", str(images),
                 "--labels", str(empty), "--classes", "a,b,c", "--out", str(tmp_path / "m1"), "--progress", "none"])
    assert code == 2 and "no annotated case" in capsys.readouterr().err and not (tmp_path / "m1").exists()

    # A label map whose geometry does not match its image is an error, never resampled.
    bad = tmp_path / "bad"
    bad.mkdir()
    label = sitk.ReadImage(str(dataset / "labels" / "case_000.nrrd"))
    label.SetSpacing([s * 2 for s in label.GetSpacing()])
    sitk.WriteImage(label, str(bad / "case_000.nrrd"))
    code = main(["finetune", "--task", "segmentation", "--pretrained", str(pretrained), "--images", str(images),
                 "--labels", str(bad), "--classes", "a,b,c", "--out", str(tmp_path / "m2"), "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "case_000" in err and not (tmp_path / "m2").exists()

    # A label value with no class name.
    code = main(["finetune", "--task", "segmentation", "--pretrained", str(pretrained), "--images", str(images),
                 "--labels", str(subset(dataset / "labels", tmp_path / "l3", ["case_001"], ".nrrd")),
                 "--classes", "a", "--out", str(tmp_path / "m3"), "--progress", "none"])
    assert code == 2 and "case_001" in capsys.readouterr().err

    # An empty mask.
    empty_label = tmp_path / "l4"
    empty_label.mkdir()
    zero = sitk.ReadImage(str(dataset / "labels" / "case_002.nrrd")) * 0
    sitk.WriteImage(zero, str(empty_label / "case_002.nrrd"))
    code = main(["finetune", "--task", "segmentation", "--pretrained", str(pretrained), "--images", str(images),
                 "--labels", str(empty_label), "--classes", "a,b,c", "--out", str(tmp_path / "m4"),
                 "--progress", "none"])
    assert code == 2 and "mpty" in capsys.readouterr().err

    # A landmark outside its image.
    marks = subset(dataset / "landmarks", tmp_path / "l5", ["case_003"], ".mrk.json")
    doc = json.loads((marks / "case_003.mrk.json").read_text())
    doc["markups"][0]["controlPoints"][0]["position"] = [5000.0, 5000.0, 0.0]
    (marks / "case_003.mrk.json").write_text(json.dumps(doc))
    code = main(["finetune", "--task", "landmarks", "--pretrained", str(pretrained), "--images", str(images),
                 "--landmarks", str(marks), "--out", str(tmp_path / "m5"), "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "outside the image" in err and "case_003" in err

    # Predicting with a pretrained (not fine-tuned) model.
    code = main(["predict", "--model", str(pretrained), "--images", str(images), "--out", str(tmp_path / "p"),
                 "--progress", "none"])
    assert code == 2 and "fine-tune" in capsys.readouterr().err


def test_augmentation_recipe_is_chosen_recorded_and_kept_on_resume(dataset, pretrained, tmp_path):
    """--augmentation strong runs for both tasks (heatmaps move with the image, only the picture's
    intensity changes), is written to config.json, and a resume keeps it whatever today's flag says."""
    images = dataset / "images"
    marks = subset(dataset / "landmarks", tmp_path / "marks", TRAIN[:2], ".mrk.json")
    model = tmp_path / "lmk"
    args = ["finetune", "--task", "landmarks", "--pretrained", str(pretrained), "--images", str(images),
            "--landmarks", str(marks), "--out", str(model), "--batch-size", "2", "--checkpoint-every", "1",
            "--progress", "none"]
    assert main(args + ["--iterations", "2", "--augmentation", "strong"]) == 0
    assert json.loads((model / "config.json").read_text())["training"]["augmentation"] == "strong"
    assert main(args + ["--iterations", "4", "--resume", "--augmentation", "none"]) == 0
    config = json.loads((model / "config.json").read_text())
    assert config["training"]["augmentation"] == "strong" and config["training"]["step"] == 4

    with pytest.raises(UserError, match="wild"):  # (the CLI's choices refuse it before this)
        finetune(FinetuneOptions(task="segmentation", images=images, annotations=dataset / "labels",
                                 out=tmp_path / "m", pretrained=pretrained, augmentation="wild", progress="none"))
    assert not (tmp_path / "m").exists()


def test_pretrained_weights_are_copied_and_head_is_new(dataset, pretrained, tmp_path):
    from DiffusionSegLib.finetune.network import task_network
    from DiffusionSegLib.nets import NetworkConfig
    from DiffusionSegLib.training.checkpoint import load_config, load_weights

    weights = load_weights(pretrained)
    cfg = NetworkConfig.from_dict({**load_config(pretrained)["network"], "out_channels": 4})
    net, fresh = task_network(cfg, 0, weights)
    assert sorted(fresh) == ["out.2.conv.bias", "out.2.conv.weight"]
    state = net.unet.state_dict()
    assert torch.equal(state["conv_in.conv.weight"], weights["conv_in.conv.weight"])
    assert state["out.2.conv.weight"].abs().sum() > 0  # not MONAI's zero initialisation


def test_plain_unet_preset_learns_predicts_and_is_never_pretrained(dataset, pretrained, tmp_path, capsys):
    """Preset plain (MONAI's BasicUNet, the benchmarks' supervised U-Net) trains from random init
    through the product's own finetune and predict, beats the atlas, and refuses pretraining."""
    from DiffusionSegLib.imageio import read_image
    from DiffusionSegLib.suggest.features import load_extractor

    labels = subset(dataset / "labels", tmp_path / "labels", TRAIN, ".nrrd")
    classes = ["right_lung", "left_lung", "heart"]
    model = tmp_path / "plain"
    finetune(FinetuneOptions(task="segmentation", images=dataset / "images", annotations=labels, out=model,
                             pretrained=None, preset="plain", image_size=[32, 32], classes=classes,
                             iterations=120, batch_size=6, learning_rate=3e-3, checkpoint_every=120, device="cpu",
                             progress="none"))
    config = json.loads((model / "config.json").read_text())
    assert config["network"]["architecture"] == "BasicUNet" and config["training"]["init"] == "random"
    assert "architecture" not in json.loads((pretrained / "config.json").read_text())["network"]  # as before
    loaded = load_task_model(model, device="cpu")
    assert type(loaded.network.unet).__name__ == "PlainUNet" and loaded.downsampling_factor == 16

    images = subset(dataset / "images", tmp_path / "test", TEST, ".nrrd")
    predict(PredictOptions(model=model, images=images, out=tmp_path / "pred", device="cpu", progress="none"))
    dice = evaluate_segmentations(tmp_path / "pred", dataset / "labels", classes)["summary"]["mean_dice"]
    atlas = atlas_scores(dataset / "labels", dataset / "images", TRAIN, TEST, classes, tmp_path / "atlas")
    assert dice >= required_dice(atlas["mean_dice"]), (dice, atlas)

    # suggest reads the same block roles (bottleneck, decoder levels) from the plain U-Net.
    features, widths, _ = load_extractor(model, device="cpu").describe(read_image(images / "case_006.nrrd"))
    assert widths == [256, 128, 64, 32, 32] and features.shape == (sum(widths),)

    with pytest.raises(UserError, match="cannot be pretrained"):
        pretrain(PretrainOptions(images=dataset / "images", out=tmp_path / "pre", preset="plain",
                                 image_size=[32, 32], iterations=1, device="cpu", progress="none"))
    assert not (tmp_path / "pre" / "config.json").exists()
    with pytest.raises(UserError, match="trained from random initialisation"):
        finetune(FinetuneOptions(task="segmentation", images=dataset / "images", annotations=labels,
                                 out=tmp_path / "both", pretrained=pretrained, preset="plain", classes=classes,
                                 iterations=1, device="cpu", progress="none"))
    capsys.readouterr()
    assert main(["pretrain", "--images", str(dataset / "images"), "--out", str(tmp_path / "pre2"),
                 "--preset", "plain"]) != 0   # not offered by the command line either
    assert "invalid choice: 'plain'" in capsys.readouterr().err
    from DiffusionSegLib.nets import check_fits, network_config
    check_fits(network_config("plain", 3), [40, 56, 40])   # any side of at least 16: the decoder pads odd sizes
    with pytest.raises(UserError, match="more than one voxel"):
        finetune(FinetuneOptions(task="segmentation", images=dataset / "images", annotations=labels,
                                 out=tmp_path / "small", preset="plain", image_size=[16, 16], classes=classes,
                                 iterations=1, device="cpu", progress="none"))
