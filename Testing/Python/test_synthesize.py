"""``diffusionseg synthesize``: drawn images labeled by a fine-tuned model, written as cases Slicer and
``finetune`` read, with a report whose kept/rejected split follows ``--min-confidence``."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import slicerio
import SimpleITK as sitk

from DiffusionSegLib.cli.main import main
from DiffusionSegLib.errors import UserError
from DiffusionSegLib.finetune.run import FinetuneOptions, finetune
from DiffusionSegLib.imageio import read_image
from DiffusionSegLib.labels import read_segmentation
from DiffusionSegLib.landmarks import points_outside, read_landmarks
from DiffusionSegLib.sample_data import generate_sample_dataset
from DiffusionSegLib.synthesize.cases import BELOW_THRESHOLD, NOT_AMONG_SUREST, choose_kept
from DiffusionSegLib.synthesize.run import SynthesizeOptions, synthesize
from DiffusionSegLib.synthesize.selftrain import pseudo_label
from DiffusionSegLib.training.progress import Reporter
from DiffusionSegLib.pretrain.run import PretrainOptions, pretrain
from blind_baselines import shifted_sample_dataset

CLASSES = ["right_lung", "left_lung", "heart"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """8 shifted chest phantoms, 32 x 32 (as test_finetune_predict)."""
    return shifted_sample_dataset(tmp_path_factory.mktemp("phantoms"), n_cases=8, seed=3)


@pytest.fixture(scope="module")
def models(dataset, tmp_path_factory) -> dict[str, Path]:
    """A tiny pretrained model and a segmentation and a landmark model fine-tuned from it."""
    root = tmp_path_factory.mktemp("models")
    pre = root / "pre"
    pretrain(PretrainOptions(images=dataset / "images", out=pre, preset="tiny", image_size=[32, 32], iterations=20,
                             batch_size=4, learning_rate=1e-3, checkpoint_every=20, device="cpu", progress="none"))
    common = dict(images=dataset / "images", pretrained=pre, iterations=30, batch_size=4, learning_rate=3e-3,
                  checkpoint_every=30, device="cpu", progress="none")
    finetune(FinetuneOptions(task="segmentation", annotations=dataset / "labels", out=root / "seg",
                             classes=CLASSES, **common))
    finetune(FinetuneOptions(task="landmarks", annotations=dataset / "landmarks", out=root / "lmk", **common))
    return {"pretrained": pre, "seg": root / "seg", "lmk": root / "lmk"}


def options(models, out, model="seg", **kwargs) -> SynthesizeOptions:
    defaults = dict(count=5, steps=3, batch_size=3, seed=1, device="cpu", progress="none")
    return SynthesizeOptions(pretrained=models["pretrained"], model=models[model], out=out, **{**defaults, **kwargs})


def test_synthesize_segmentation_cases_and_report(models, tmp_path):
    everything = synthesize(options(models, tmp_path / "all", min_confidence=0.0))
    report = json.loads((tmp_path / "all" / "synthesize.json").read_text())
    rows = report["cases"]
    assert len(rows) == 5 and everything["total"] == 5 and report["measure"] == "foreground"
    confidences = sorted(r["confidence"] for r in rows)
    assert all(0.0 <= c <= 1.0 for c in confidences)

    # The same seed draws the same images: a threshold between the confidences splits them by it.
    threshold = (confidences[1] + confidences[2]) / 2
    if confidences[1] == confidences[2]:
        pytest.skip("two samples with the same confidence")
    synthesize(options(models, tmp_path / "split", min_confidence=threshold))
    out = tmp_path / "split"
    report = json.loads((out / "synthesize.json").read_text())
    assert [r["confidence"] for r in report["cases"]] == [r["confidence"] for r in rows]
    for row in report["cases"]:
        usable = row["reason"] != "no foreground predicted"
        assert row["kept"] == (usable and row["confidence"] >= threshold), row
        folder = out if row["kept"] else out / "rejected"
        assert (folder / "images" / f"{row['case']}.nrrd").is_file()
        assert (folder / "labels" / f"{row['case']}.seg.nrrd").is_file()
    assert report["kept"] == sum(r["kept"] for r in report["cases"]) and report["kept"] + report["rejected"] == 5
    with open(out / "synthesize.csv") as f:
        lines = list(csv.DictReader(f))
    assert [line["case"] for line in lines] == [r["case"] for r in report["cases"]]
    assert {"confidence", "kept", "image_confidence", "class_confidence.heart"} <= set(lines[0])

    # Every written case reads back with the project's readers: the image on its grid, the
    # .seg.nrrd with the model's classes on the image's geometry (Slicer's own reader too).
    kept = sorted((tmp_path / "all" / "labels").glob("*.seg.nrrd"))
    assert kept
    for label_path in kept:
        case = label_path.name[: -len(".seg.nrrd")]
        image = read_image(tmp_path / "all" / "images" / f"{case}.nrrd")
        assert image.GetSize() == (32, 32)
        labelmap = read_segmentation(label_path, CLASSES, image)
        values = sitk.GetArrayFromImage(labelmap)
        assert values.max() <= 3 and values.any()
        assert np.allclose(labelmap.GetSpacing(), image.GetSpacing())
        seg = slicerio.read_segmentation(str(label_path))
        assert [s["name"] for s in seg["segments"]] == CLASSES
    # The drawn images have the network grid of the fine-tuning cases (32 px over 358 mm).
    spacing = read_image(next((tmp_path / "all" / "images").glob("*.nrrd"))).GetSpacing()
    assert report["spacing"] == pytest.approx(list(spacing)) and spacing[0] > 5


def test_choose_kept_threshold_then_surest_fraction():
    rows = [{"case": c, "confidence": v, "reason": ""} for c, v in
            [("a", 0.95), ("b", 0.5), ("c", 0.99), ("d", 0.97), ("e", 0.97), ("f", 0.1)]]
    rows[5]["reason"] = "no foreground predicted"
    choose_kept(rows, {"f"}, min_confidence=0.9, keep_fraction=0.5)   # room: 3 of 6; 4 pass the threshold
    assert {r["case"] for r in rows if r["kept"]} == {"c", "d", "e"}    # tie at 0.97: both fit
    reasons = {r["case"]: r["reason"] for r in rows}
    assert reasons == {"a": NOT_AMONG_SUREST, "b": BELOW_THRESHOLD, "c": "", "d": "", "e": "",
                       "f": "no foreground predicted"}
    choose_kept(rows, {"f"}, min_confidence=0.9, keep_fraction=0.34)  # ceil(2.04) = 3
    assert sum(r["kept"] for r in rows) == 3
    choose_kept(rows, {"f"}, min_confidence=0.0, keep_fraction=1.0)   # the threshold alone; unusable never kept
    assert [r["kept"] for r in rows] == [True] * 5 + [False]
    for bad in (0.0, 1.5, -1):
        with pytest.raises(UserError, match="keep fraction"):
            choose_kept(rows, set(), 0.0, bad)


def test_keep_fraction_keeps_the_most_confident(dataset, models, tmp_path, capsys):
    """synthesize and selftrain's pseudo-labelling keep the surest fraction of what they label, the
    others go to rejected/ (or nowhere with --no-rejected); a bad fraction fails before any work."""
    synthesize(options(models, tmp_path / "frac", min_confidence=0.0, keep_fraction=0.4, keep_rejected=False))
    report = json.loads((tmp_path / "frac" / "synthesize.json").read_text())
    by_confidence = sorted(report["cases"], key=lambda r: -r["confidence"])
    assert report["keep_fraction"] == 0.4 and report["kept"] == 2
    assert all(r["kept"] for r in by_confidence[:2]) and not any(r["kept"] for r in by_confidence[2:])
    assert sorted(p.name for p in (tmp_path / "frac" / "images").iterdir()) == \
        sorted(f"{r['case']}.nrrd" for r in by_confidence[:2])
    assert not (tmp_path / "frac" / "rejected").exists()

    images = sorted((dataset / "images").glob("*.nrrd"))[:4]
    folder = tmp_path / "pseudo"
    stats = pseudo_label(models["seg"], images, folder, measure=None, min_confidence=0.0, keep_fraction=0.5,
                         overlap=0.5, device="cpu", precision="fp32", reporter=Reporter("pseudo-label", "none"))
    rows = json.loads((folder / "pseudo.json").read_text())["cases"]
    assert stats["kept"] == 2 and stats["rejected"] == 2 and stats["keep_fraction"] == 0.5
    least_kept = min(r["confidence"] for r in rows if r["kept"])
    assert all(r["confidence"] <= least_kept for r in rows if not r["kept"])
    for row in rows:   # every case sits where the report says, image and label together
        where = folder if row["kept"] else folder / "rejected"
        assert (where / "images" / Path(row["image"]).name).is_file()
        assert (where / "labels" / f"{row['case']}.seg.nrrd").is_file()

    code = main(["synthesize", "--pretrained", str(models["pretrained"]), "--model", str(models["seg"]),
                 "--out", str(tmp_path / "bad"), "--keep-fraction", "1.5", "--device", "cpu", "--progress", "none"])
    assert code == 2 and "--keep-fraction" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_synthesize_landmarks_and_cli(models, tmp_path, capsys):
    out = tmp_path / "lmk"
    code = main(["synthesize", "--pretrained", str(models["pretrained"]), "--model", str(models["lmk"]),
                 "--out", str(out), "--count", "2", "--steps", "2", "--min-confidence", "0", "--device", "cpu",
                 "--progress", "json"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "done" and events[-1]["kept"] == 2
    names = json.loads((models["lmk"] / "config.json").read_text())["task"]["landmarks"]
    for case in ("synth_0000", "synth_0001"):
        image = read_image(out / "images" / f"{case}.nrrd")
        points = read_landmarks(out / "labels" / f"{case}.mrk.json", names)
        assert points.names == names and not points.is_missing().any()
        assert not any(points_outside(image, points.points))
    rows = json.loads((out / "synthesize.json").read_text())["cases"]
    assert set(rows[0]["landmark_confidence"]) == set(names)
    assert rows[0]["confidence"] == pytest.approx(min(rows[0]["landmark_confidence"].values()), abs=1e-4)

    # The output folder is never overwritten; a pretrained model cannot label.
    code = main(["synthesize", "--pretrained", str(models["pretrained"]), "--model", str(models["lmk"]),
                 "--out", str(out), "--count", "1", "--steps", "1", "--device", "cpu", "--progress", "none"])
    assert code == 2 and "not empty" in capsys.readouterr().err
    with pytest.raises(UserError, match="cannot predict"):
        synthesize(options(models, tmp_path / "x", model="pretrained"))
    with pytest.raises(UserError, match="does not apply"):
        synthesize(options(models, tmp_path / "y", model="lmk", measure="foreground"))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_synthesized_cases_feed_finetune_extra(dataset, models, tmp_path):
    """synthesize's folder is an --extra folder as it is."""
    synthesize(options(models, tmp_path / "synth", count=3, min_confidence=0.0))
    labels = tmp_path / "labels"
    labels.mkdir()
    shutil.copy2(dataset / "labels" / "case_000.nrrd", labels)
    summary = finetune(FinetuneOptions(task="segmentation", images=dataset / "images", annotations=labels,
                                       out=tmp_path / "m", pretrained=models["pretrained"], classes=CLASSES,
                                       extra=[tmp_path / "synth"], iterations=2, batch_size=2, checkpoint_every=2,
                                       device="cpu", progress="none"))
    kept = json.loads((tmp_path / "synth" / "synthesize.json").read_text())["kept"]
    assert summary["extra_cases"] == kept
    training = json.loads((tmp_path / "m" / "config.json").read_text())["training"]
    assert training["extra_cases"] == kept and training["extra_weight"] == 0.5


def test_synthesize_3d_small_patch(tmp_path):
    """3D: a volume of the pretrained patch (16 x 16 x 16 here; drawing is about 1 s per DDIM step
    for a 64 x 64 x 32 patch on one CPU core) is labeled by sliding windows and written as a case."""
    generate_sample_dataset(tmp_path / "vol", dims=3, n_cases=2, size=(16, 32, 32), seed=0)
    images = tmp_path / "vol" / "images"
    pre = tmp_path / "pre"
    pretrain(PretrainOptions(images=images, out=pre, preset="tiny", spacing=[4.0, 4.0, 4.0], patch_size=[16, 16, 16],
                             iterations=2, batch_size=1, checkpoint_every=2, device="cpu", progress="none"))
    classes = ["right_kidney", "left_kidney"]
    finetune(FinetuneOptions(task="segmentation", images=images, annotations=tmp_path / "vol" / "labels",
                             out=tmp_path / "seg", pretrained=pre, classes=classes, iterations=2, batch_size=1,
                             checkpoint_every=2, device="cpu", progress="none"))
    out = tmp_path / "synth"
    synthesize(SynthesizeOptions(pretrained=pre, model=tmp_path / "seg", out=out, count=1, steps=2,
                                 min_confidence=0.0, device="cpu", progress="none"))
    row = json.loads((out / "synthesize.json").read_text())["cases"][0]
    folder = out if row["kept"] else out / "rejected"
    image = read_image(folder / "images" / "synth_0000.nrrd")
    assert image.GetDimension() == 3 and image.GetSize() == (16, 16, 16)
    assert image.GetSpacing() == pytest.approx((4.0, 4.0, 4.0))
    labelmap = read_segmentation(folder / "labels" / "synth_0000.seg.nrrd", classes, image, allow_empty=True)
    assert labelmap.GetSize() == image.GetSize() and sitk.GetArrayFromImage(labelmap).max() <= 2
