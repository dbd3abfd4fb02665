"""``finetune --extra`` (the mixing sampler, its effect, bad folders) and ``diffusionseg selftrain`` end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DiffusionSegLib.cli.main import main
from DiffusionSegLib.data.sampler import StepBatchSampler
from DiffusionSegLib.finetune.extra import MixedBatchSampler, extra_count
from DiffusionSegLib.finetune.run import FinetuneOptions, finetune
from DiffusionSegLib.labels import read_segmentation
from DiffusionSegLib.predict.engine import load_task_model
from DiffusionSegLib.predict.run import predict_segmentation
from DiffusionSegLib.imageio import read_image
from DiffusionSegLib.pretrain.run import PretrainOptions, pretrain
from blind_baselines import shifted_sample_dataset

CLASSES = ["right_lung", "left_lung", "heart"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return shifted_sample_dataset(tmp_path_factory.mktemp("phantoms"), n_cases=8, seed=3)


@pytest.fixture(scope="module")
def pretrained(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pre") / "model"
    pretrain(PretrainOptions(images=dataset / "images", out=out, preset="tiny", image_size=[32, 32], iterations=20,
                             batch_size=4, learning_rate=1e-3, checkpoint_every=20, device="cpu", progress="none"))
    return out


def copy_cases(src: Path, dst: Path, cases: list[str], suffix: str) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for case in cases:
        shutil.copy2(src / f"{case}{suffix}", dst)
    return dst


# ----------------------------------------------------------------------------- the sampler


@pytest.mark.parametrize("batch,weight", [(4, 0.5), (4, 0.3), (1, 0.5), (3, 0.9), (2, 0.0)])
def test_mixed_sampler_draws_the_weight_from_the_extras(batch, weight):
    n_real, n_extra, steps = 3, 5, 200
    batches = list(MixedBatchSampler(n_real, n_extra, batch, steps, weight=weight, seed=4))
    items = [i for b in batches for i, _ in b]
    assert len(batches) == steps and all(len(b) == batch for b in batches)
    extra = [i for i in items if i >= n_real]
    # The fraction of extra items is the weight (to within one item per step's rounding)...
    expected = min(weight, (batch - 1) / batch) if batch >= 2 else weight
    assert abs(len(extra) / len(items) - expected) <= 1 / len(items) + 1e-9
    # ... every batch of two or more keeps a real case, and every case of each stream is used evenly.
    if batch >= 2:
        assert all(any(i < n_real for i, _ in b) for b in batches)
    real_counts = np.bincount([i for i in items if i < n_real], minlength=n_real)
    assert real_counts.max() - real_counts.min() <= 1
    if extra:
        extra_counts = np.bincount(np.array(extra) - n_real, minlength=n_extra)
        assert extra_counts.max() - extra_counts.min() <= 1
    # Resuming at step 37 repeats the uninterrupted run; distributed ranks split each batch.
    assert list(MixedBatchSampler(n_real, n_extra, batch, steps, weight=weight, seed=4, start_step=37)) == batches[37:]
    if batch % 2 == 0:
        halves = [list(MixedBatchSampler(n_real, n_extra, batch, steps, weight=weight, seed=4, rank=r,
                                         world_size=2)) for r in (0, 1)]
        assert all(sorted(a + b) == sorted(full) for a, b, full in zip(*halves, batches))
    # Without extras the real stream is exactly the plain sampler's.
    if weight == 0:
        assert batches == list(StepBatchSampler(n_real, batch, steps, seed=4))
    assert sum(extra_count(s, batch, weight) for s in range(steps)) == len(extra)


# ----------------------------------------------------------------------------- finetune --extra


def test_extra_cases_change_what_is_learned(dataset, pretrained, tmp_path):
    """One real case, and extra cases whose 'heart' covers the whole image: with weight 0.75 the
    model paints far more heart than with weight 0 (the same extras, never drawn)."""
    labels = copy_cases(dataset / "labels", tmp_path / "labels", ["case_000"], ".nrrd")
    extra = tmp_path / "extra"
    copy_cases(dataset / "images", extra / "images", ["case_001", "case_002", "case_003"], ".nrrd")
    (extra / "labels").mkdir()
    for case in ("case_001", "case_002", "case_003"):
        label = sitk.ReadImage(str(dataset / "labels" / f"{case}.nrrd"))
        sitk.WriteImage(label * 0 + 3, str(extra / "labels" / f"{case}.nrrd"))
    test_image = read_image(dataset / "images" / "case_006.nrrd")
    heart = {}
    for weight in (0.0, 0.75):
        out = tmp_path / f"m{weight}"
        finetune(FinetuneOptions(task="segmentation", images=dataset / "images", annotations=labels, out=out,
                                 pretrained=pretrained, classes=CLASSES, extra=[extra], extra_weight=weight,
                                 iterations=30, batch_size=4, learning_rate=3e-3, checkpoint_every=30,
                                 device="cpu", progress="none"))
        labelmap = predict_segmentation(load_task_model(out, "cpu"), test_image)
        heart[weight] = float((sitk.GetArrayFromImage(labelmap) == 3).mean())
    assert heart[0.75] > 0.5 and heart[0.75] > heart[0.0] + 0.3, heart


def test_bad_extra_folder_is_one_clear_error(dataset, pretrained, tmp_path, capsys):
    labels = copy_cases(dataset / "labels", tmp_path / "labels", ["case_000"], ".nrrd")
    base = ["finetune", "--task", "segmentation", "--pretrained", str(pretrained), "--images",
            str(dataset / "images"), "--labels", str(labels), "--classes", ",".join(CLASSES), "--iterations", "2",
            "--device", "cpu", "--progress", "none"]
    # No labels/ sub-folder.
    no_labels = tmp_path / "no_labels"
    copy_cases(dataset / "images", no_labels / "images", ["case_001"], ".nrrd")
    assert main(base + ["--extra", str(no_labels), "--out", str(tmp_path / "m1")]) == 2
    err = capsys.readouterr().err
    assert "no_labels" in err and "labels/" in err and "Fix:" in err and not (tmp_path / "m1").exists()
    # A label whose geometry is not its image's: named, never resampled.
    bad = tmp_path / "bad"
    copy_cases(dataset / "images", bad / "images", ["case_001"], ".nrrd")
    label = sitk.ReadImage(str(dataset / "labels" / "case_001.nrrd"))
    label.SetSpacing([s * 2 for s in label.GetSpacing()])
    (bad / "labels").mkdir()
    sitk.WriteImage(label, str(bad / "labels" / "case_001.nrrd"))
    assert main(base + ["--extra", str(bad), "--out", str(tmp_path / "m2")]) == 2
    err = capsys.readouterr().err
    assert "bad/labels/case_001.nrrd" in err and "Fix:" in err and not (tmp_path / "m2").exists()
    # An annotation without an image, and a weight that would leave out the real cases.
    (bad / "labels" / "case_001.nrrd").unlink()
    shutil.copy2(dataset / "labels" / "case_002.nrrd", bad / "labels")
    assert main(base + ["--extra", str(bad), "--out", str(tmp_path / "m3")]) == 2
    assert "without a matching image" in capsys.readouterr().err
    assert main(base + ["--extra", str(bad), "--extra-weight", "1", "--out", str(tmp_path / "m4")]) == 2
    assert "--extra-weight" in capsys.readouterr().err
    assert not any((tmp_path / m).exists() for m in ("m3", "m4"))


# ----------------------------------------------------------------------------- selftrain


def test_selftrain_one_round_writes_pseudo_labels_and_model(dataset, pretrained, tmp_path, capsys):
    labels = copy_cases(dataset / "labels", tmp_path / "labels", ["case_000", "case_001"], ".nrrd")
    out = tmp_path / "selftrained"
    code = main(["selftrain", "--task", "segmentation", "--pretrained", str(pretrained), "--images",
                 str(dataset / "images"), "--labels", str(labels), "--classes", ",".join(CLASSES), "--out", str(out),
                 "--rounds", "1", "--min-confidence", "0.5", "--iterations", "30", "--batch-size", "4",
                 "--learning-rate", "3e-3", "--device", "cpu", "--progress", "json"])
    assert code == 0, capsys.readouterr().err
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {e["stage"] for e in events} == {"selftrain"} and events[-1]["event"] == "done"
    run = Path(events[-1]["run"])
    assert run.parent == out / "runs"
    record = json.loads((run / "selftrain.json").read_text())
    assert record["labeled"] == ["case_000", "case_001"] and len(record["unlabeled"]) == 6
    pseudo = run / "round_1" / "pseudo"
    report = json.loads((pseudo / "pseudo.json").read_text())
    assert [r["case"] for r in report["cases"]] == record["unlabeled"]
    for row in report["cases"]:
        assert row["kept"] == (row["reason"] == "" and row["confidence"] >= 0.5)
        folder = pseudo if row["kept"] else pseudo / "rejected"
        image = read_image(folder / "images" / f"{row['case']}.nrrd")
        read_segmentation(folder / "labels" / f"{row['case']}.seg.nrrd", CLASSES, image, allow_empty=True)
    assert (run / "round_0" / "model" / "config.json").is_file()
    kept = report["kept"]
    assert kept > 0, report["confidence_quartiles"]
    round1 = json.loads((run / "round_1" / "model" / "config.json").read_text())
    assert round1["training"]["extra_cases"] == kept and round1["training"]["extra"] == [str(pseudo)]
    # The final model is the last round's, with the record; it predicts.
    config = json.loads((out / "config.json").read_text())
    assert config["selftrain"]["final_round"] == 1 and config["selftrain"]["pseudo_labels"][0]["kept"] == kept
    assert (out / "model.safetensors").read_bytes() == (run / "round_1" / "model" / "model.safetensors").read_bytes()
    assert load_task_model(out, "cpu").kind == "segmentation"
    # The output is never replaced without --overwrite.
    code = main(["selftrain", "--task", "segmentation", "--pretrained", str(pretrained), "--images",
                 str(dataset / "images"), "--labels", str(labels), "--classes", ",".join(CLASSES), "--out", str(out),
                 "--device", "cpu", "--progress", "none"])
    assert code == 2 and "not empty" in capsys.readouterr().err


def test_selftrain_errors_leave_nothing(dataset, pretrained, tmp_path, capsys):
    # Every image labeled: nothing to pseudo-label.
    labels = copy_cases(dataset / "labels", tmp_path / "labels", [f"case_{i:03d}" for i in range(2)], ".nrrd")
    images = copy_cases(dataset / "images", tmp_path / "images", [f"case_{i:03d}" for i in range(2)], ".nrrd")
    args = ["selftrain", "--task", "segmentation", "--pretrained", str(pretrained), "--labels", str(labels),
            "--classes", ",".join(CLASSES), "--device", "cpu", "--progress", "none"]
    assert main(args + ["--images", str(images), "--out", str(tmp_path / "s1")]) == 2
    assert "nothing to pseudo-label" in capsys.readouterr().err and not (tmp_path / "s1").exists()
    # A bad label found by round 0's fine-tuning: the error, and no half-made output folder.
    zero = sitk.ReadImage(str(dataset / "labels" / "case_000.nrrd")) * 0
    sitk.WriteImage(zero, str(labels / "case_000.nrrd"))
    assert main(args + ["--images", str(dataset / "images"), "--out", str(tmp_path / "s2")]) == 2
    assert "mpty" in capsys.readouterr().err and not (tmp_path / "s2").exists()
