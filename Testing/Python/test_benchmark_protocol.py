"""The benchmark protocol (issue 17) on the ISBI landmark and the 3D hippocampus benchmarks, on tiny phantoms.

``landmarks_isbi.py --validate`` scores cases held out of the train split and never a test
case; ``report.py`` turns the validation sweep into ``choice.json`` (lower MRE is better);
``--settings choice.json`` runs exactly those settings on test1/test2; the paired report
reads the test records. The supervised landmark baseline (a plain BasicUNet on heatmaps)
trains with the product's LandmarkTask and predicts ``.mrk.json`` through the product's path.
``segmentation_hippocampus.py`` follows the same protocol in 3D (highest mean Dice wins), with
the supervised BasicUNet in 3D trained on the product's patches and predicted through the
product's sliding windows.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import landmarks_isbi, protocol, report, segmentation_hippocampus  # noqa: E402
from benchmarks.common import paired_bootstrap, split  # noqa: E402
from benchmarks.supervised_unet import SupervisedOptions, train_and_predict  # noqa: E402
from DiffusionSegLib.evaluation.landmarks import evaluate_landmarks  # noqa: E402
from DiffusionSegLib.finetune.tasks import LandmarkTask  # noqa: E402
from DiffusionSegLib.landmarks import read_landmarks  # noqa: E402
from DiffusionSegLib.pretrain.run import PretrainOptions, pretrain  # noqa: E402
from DiffusionSegLib.sample_data import CHEST_LANDMARKS, generate_sample_dataset  # noqa: E402
from DiffusionSegLib.synthesize.options import SelftrainOptions  # noqa: E402
from DiffusionSegLib.vocabulary import DEFAULT_AUGMENTATION, case_name  # noqa: E402

# Phantoms at 64x64 (5.6 mm pixels) trained at 32x32: a sigma of a few network pixels.
TINY = ["--image-size", "32", "32", "--preset", "tiny", "--sigma-mm", "15", "--device", "cpu"]


@pytest.fixture(scope="module")
def isbi_like(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    """A dataset laid out like ../shared/data/isbi-ceph: images/, landmarks/ and dataset.json with its splits."""
    data = tmp_path_factory.mktemp("isbi") / "data"
    generate_sample_dataset(data, dims=2, n_cases=12, size=(64, 64))
    cases = [f"case_{i:03d}" for i in range(12)]
    splits = {"train": cases[:8], "test1": cases[8:10], "test2": cases[10:]}
    (data / "dataset.json").write_text(json.dumps({"splits": splits}))
    return data, splits


def _run_benchmark(monkeypatch, argv: list[str], benchmark=landmarks_isbi) -> list[str]:
    """Run a benchmark script in this process; returns the case names of every image it predicted."""
    predicted = []
    real_predict = protocol.Run.predict

    def spy(self, images, out, model=None):
        predicted.extend(case_name(p) for p in Path(images).iterdir())
        return real_predict(self, images, out, model)

    monkeypatch.setattr(protocol.Run, "predict", spy)
    monkeypatch.setattr(sys, "argv", [Path(benchmark.__file__).name, *argv])
    benchmark.main()
    return predicted


def test_isbi_protocol_validates_on_train_cases_then_runs_the_choice(isbi_like, tmp_path, monkeypatch):
    data, splits = isbi_like
    results = tmp_path / "isbi_protocol"
    common = ["--data", str(data), "--work", str(tmp_path / "work"), "--methods", "random", "supervised",
              "--ns", "1", "2", *TINY]

    # Validation: 2 cases held out of the train split, a grid of lr x augmentation (supervised: its own recipe).
    predicted = _run_benchmark(monkeypatch, [*common, "--validate", "2", "--seeds", "0", "--lr", "1e-3", "3e-3",
                                             "--iterations", "3", "--augmentation", "mild", "none",
                                             "--out", str(results / "validation" / "grid")])
    val = json.loads((results / "validation" / "grid.json").read_text())
    held = val["scored_cases"]["validation"]
    tests = set(splits["test1"]) | set(splits["test2"])
    assert len(held) == 2 and set(held) <= set(splits["train"])
    assert set(predicted) == set(held), "validation predicts the held-out train cases and nothing else"
    assert not set(predicted) & tests, "validation never touches test1/test2"
    records = val["records"]
    assert len(records) == 2 * (2 * 2 + 2)   # N x (random: lr x augmentation, supervised: lr)
    for r in records:
        assert r["scored_on"] == "validation" and set(r["splits"]) == {"validation"} and r["test_cases"] == 2
        assert not set(r["cases"]) & (set(held) | tests)
        assert r["settings_from"] == "command line" and r["image_size"] == [32, 32] and r["batch_size"] == 4
        assert {"git_commit", "versions", "machine"} <= set(r["provenance"]) and r["wall_seconds"] >= 0
        assert math.isfinite(r["mre_mm"]) and r["iterations"] == 3
        assert r["augmentation"] == "strong" if r["method"] == "supervised" else r["augmentation"] in ("mild", "none")
        assert ("recipe" in r) == (r["method"] == "supervised") and r["timestep"] == (
            None if r["method"] == "supervised" else 0)

    # The choice: the lowest mean validation MRE per method and N.
    report.choose_settings(results / "validation", report.ISBI)
    choice = json.loads((results / "choice.json").read_text())
    assert choice["rule"].startswith("lowest mean validation MRE")
    for m in ("random", "supervised"):
        for n in (1, 2):
            picked = choice["choice"][m][str(n)]
            best = min((r for r in records if r["method"] == m and r["n"] == n), key=lambda r: r["mre_mm"])
            assert picked["validation_mre_mm"] == round(best["mre_mm"], 2)
            assert (picked["learning_rate"], picked["augmentation"]) == (best["learning_rate"], best["augmentation"])

    # Test: --settings replaces the grids; test1 and test2 are scored.
    predicted = _run_benchmark(monkeypatch, [*common, "--seeds", "0", "1", "--seeds-outer",
                                             "--settings", str(results / "choice.json"),
                                             "--out", str(results / "test" / "grid")])
    assert set(predicted) == tests
    test = json.loads((results / "test" / "grid.json").read_text())["records"]
    assert len(test) == 2 * 2 * 2
    for r in test:
        picked = choice["choice"][r["method"]][str(r["n"])]
        assert (r["learning_rate"], r["iterations"], r["augmentation"]) == (
            picked["learning_rate"], picked["iterations"], picked["augmentation"])
        assert r["scored_on"] == "test" and r["settings_from"] == str(results / "choice.json")
        assert set(r["splits"]) == {"test1", "test2"} and r["mre_mm"] == r["splits"]["test1"]["mre_mm"]
        assert not set(r["cases"]) & tests

    text = report.protocol_test(results / "test", report.ISBI)
    summary = json.loads((results / "test" / "summary.json").read_text())
    diff = summary["differences"]["random - supervised"]["1"]
    assert diff["pairs"] == 2 and diff["wins"] == sum(d < 0 for d in diff["differences"])
    assert "## test2: MRE (mm)" in text and "(no N = 25 test1 runs yet)" in text


def test_supervised_landmark_baseline_predicts_markups(isbi_like, tmp_path):
    data, splits = isbi_like
    labeled, test = tmp_path / "landmarks", tmp_path / "test"
    for folder, cases, src, suffix in ((labeled, splits["train"][:2], data / "landmarks", ".mrk.json"),
                                       (test, splits["test1"], data / "images", ".nrrd")):
        folder.mkdir()
        for case in cases:
            (folder / f"{case}{suffix}").symlink_to(src / f"{case}{suffix}")
    task = LandmarkTask(names=list(CHEST_LANDMARKS), sigma_mm=15.0)
    summary = train_and_predict(data / "images", labeled, test, tmp_path / "pred", task,
                                SupervisedOptions(iterations=3, image_size=(32, 32)))
    assert math.isfinite(summary["final_loss"]) and summary["parameters"] > 1_000_000
    for case in splits["test1"]:
        assert read_landmarks(tmp_path / "pred" / f"{case}.mrk.json").names == list(CHEST_LANDMARKS)
    scored = evaluate_landmarks(tmp_path / "pred", data / "landmarks")["summary"]
    assert scored["n_cases"] == 2 and scored["overall"]["n_missing_prediction"] == 0


def test_paired_wins_follow_the_metric_direction():
    a, b = {0: 1.0, 1: 3.0, 2: 2.0}, {0: 2.0, 1: 2.0, 2: 2.0}
    assert paired_bootstrap(a, b)["wins"] == 1                          # higher is better: draw 1
    assert paired_bootstrap(a, b, higher_is_better=False)["wins"] == 1  # lower is better: draw 0


@pytest.fixture(scope="module")
def hippocampus_like(tmp_path_factory) -> Path:
    """Eight 3D phantoms (32x32x16 voxels of 3x3x6 mm, two structures) laid out like
    ../shared/data/hippocampus (imagesTr/ and labelsTr/ of .nii.gz), and a 3D DDPM pretraining
    of two steps on 16x16x16 patches of all eight (pretrained/)."""
    root = tmp_path_factory.mktemp("hippocampus")
    generate_sample_dataset(root / "phantoms", dims=3, n_cases=8, size=(16, 32, 32))
    for folder, src in (("imagesTr", "images"), ("labelsTr", "labels")):
        (root / "data" / folder).mkdir(parents=True)
        for path in sorted((root / "phantoms" / src).glob("*.nrrd")):
            sitk.WriteImage(sitk.ReadImage(str(path)), str(root / "data" / folder / f"{case_name(path)}.nii.gz"))
    pretrain(PretrainOptions(images=root / "data" / "imagesTr", out=root / "pretrained", preset="tiny", iterations=2,
                             batch_size=2, spacing=[3.0, 3.0, 6.0], patch_size=[16, 16, 16], modality="mri",
                             checkpoint_every=2, device="cpu", progress="none"))
    return root / "data"


def test_hippocampus_protocol_validates_on_train_cases_then_runs_the_choice(hippocampus_like, tmp_path, monkeypatch):
    data = hippocampus_like
    results = tmp_path / "hippocampus_protocol"
    train, test = split(sorted(case_name(p) for p in (data / "labelsTr").iterdir()))
    common = ["--data", str(data), "--pretrained", str(data.parent / "pretrained"), "--work", str(tmp_path / "work"),
              "--methods", "ddpm", "random", "plain", "supervised", "--ns", "1", "--spacing", "3", "3", "6",
              "--patch-size", "32", "32", "16", "--iterations", "2", "--device", "cpu"]

    # Validation: 1 case held out of the training half, a grid of two learning rates.
    predicted = _run_benchmark(monkeypatch, [*common, "--validate", "1", "--seeds", "0", "--lr", "1e-3", "3e-3",
                                             "--out", str(results / "validation" / "grid")],
                               segmentation_hippocampus)
    val = json.loads((results / "validation" / "grid.json").read_text())
    (held,) = val["scored_cases"].values()
    assert len(held) == 1 and set(held) <= set(train) and set(val["scored_cases"]) == {"validation"}
    assert set(predicted) == set(held), "validation predicts the held-out train case and nothing else"
    assert not set(predicted) & set(test), "validation never touches the test half"
    records = val["records"]
    assert len(records) == 4 * 2   # (ddpm, random, plain, supervised) x lr
    for r in records:
        assert r["scored_on"] == "validation" and r["test_cases"] == 1 and not set(r["cases"]) & (set(held) | set(test))
        assert r["spacing"] == [3.0, 3.0, 6.0] and r["patch_size"] == [32, 32, 16] and r["modality"] == "mri"
        assert "image_size" not in r and r["batch_size"] == 2 and r["iterations"] == 2
        assert {"git_commit", "versions", "machine"} <= set(r["provenance"]) and r["wall_seconds"] >= 0
        assert 0 <= r["mean_dice"] <= 1 and set(r["per_class"]) == {"anterior", "posterior"}
        assert r["augmentation"] == ("strong" if r["method"] == "supervised" else DEFAULT_AUGMENTATION)
        assert r["predict_seconds_per_volume"] >= 0
        # The pretrained method's record has its pretraining's; its 16x16x16 patch is replaced by --patch-size.
        assert ("pretraining" in r) == (r["method"] == "ddpm")
        assert ("recipe" in r) == (r["method"] in ("supervised", "plain"))
        assert r.get("pretraining", {"training": {"images": 8}})["training"]["images"] == 8
    recipe = next(r["recipe"] for r in records if r["method"] == "supervised")
    assert recipe["patch_size"] == [32, 32, 16] and recipe["spacing"] == [3.0, 3.0, 6.0] and "image_size" not in recipe
    assert max(r["parameters"] for r in records if r["method"] == "supervised") > 5_000_000  # the 3D BasicUNet

    # The choice: the highest mean validation Dice per method and N.
    report.choose_settings(results / "validation", report.HIPPOCAMPUS)
    choice = json.loads((results / "choice.json").read_text())
    assert choice["rule"].startswith("highest mean validation mean Dice")
    for m in ("ddpm", "random", "plain", "supervised"):
        best = max((r for r in records if r["method"] == m), key=lambda r: r["mean_dice"])
        picked = choice["choice"][m]["1"]
        assert picked["learning_rate"] == best["learning_rate"]
        assert picked["validation_mean_dice"] == round(best["mean_dice"], 3)

    # Test: --settings replaces the grid; the test half (its first 2 cases) is scored.
    predicted = _run_benchmark(monkeypatch, [*common, "--seeds", "0", "--settings", str(results / "choice.json"),
                                             "--test-limit", "2", "--out", str(results / "test" / "grid")],
                               segmentation_hippocampus)
    assert set(predicted) == set(test[:2])
    tested = json.loads((results / "test" / "grid.json").read_text())["records"]
    assert len(tested) == 4
    for r in tested:
        picked = choice["choice"][r["method"]]["1"]
        assert (r["learning_rate"], r["iterations"]) == (picked["learning_rate"], picked["iterations"])
        assert r["scored_on"] == "test" and r["settings_from"] == str(results / "choice.json")
    text = report.protocol_test(results / "test", report.HIPPOCAMPUS)
    assert "| 1 | ddpm - supervised |" in text and "## Test mean Dice" in text
    summary = json.loads((results / "test" / "summary.json").read_text())
    assert set(summary["differences"]) == {"ddpm - supervised", "ddpm - random", "random - supervised",
                                           "ddpm - plain", "plain - supervised"}
    # Method plain is the product's BasicUNet preset, trained from random weights by the product's finetune.
    assert all(r["recipe"] == {"network": "BasicUNet", "preset": "plain"} for r in tested if r["method"] == "plain")


def spy_on_pseudo_labels(monkeypatch) -> list[list[str]]:
    """The cases of each call of selftrain's pseudo-labelling, recorded as the benchmark runs."""
    from DiffusionSegLib.synthesize import selftrain as selftrain_module

    labeled_now, real_pseudo_label = [], selftrain_module.pseudo_label

    def spy(model_dir, images, folder, **kwargs):
        labeled_now.append(sorted(case_name(p) for p in images))
        return real_pseudo_label(model_dir, images, folder, **kwargs)

    monkeypatch.setattr(selftrain_module, "pseudo_label", spy)
    return labeled_now


def test_hippocampus_selftrain_pseudo_labels_the_training_volumes_only(hippocampus_like, tmp_path, monkeypatch):
    """Method selftrain in 3D: round 0 on the drawn volume, then pseudo-labels of the rest of the training half,
    never the held-out validation volume or a test volume."""
    data = hippocampus_like
    train, test = split(sorted(case_name(p) for p in (data / "labelsTr").iterdir()))
    labeled_now = spy_on_pseudo_labels(monkeypatch)
    out = tmp_path / "hippocampus_protocol" / "validation" / "selftrain"
    _run_benchmark(monkeypatch, ["--data", str(data), "--pretrained", str(data.parent / "pretrained"),
                                 "--work", str(tmp_path / "work"), "--methods", "selftrain", "--ns", "1",
                                 "--seeds", "0", "--spacing", "3", "3", "6", "--patch-size", "32", "32", "16",
                                 "--iterations", "2", "--device", "cpu", "--validate", "1", "--min-confidence", "0",
                                 "--out", str(out)], segmentation_hippocampus)
    result = json.loads(out.with_suffix(".json").read_text())
    (record,), (held,) = result["records"], result["scored_cases"].values()
    (pseudo,) = labeled_now
    assert set(pseudo) == set(train) - set(held) - set(record["cases"]) and not set(pseudo) & set(test)
    assert record["method"] == "selftrain" and record["selftrain"]["pseudo_labels"][0]["round"] == 1
    assert 0 <= record["mean_dice"] <= 1 and 0 <= record["round_0"]["mean_dice"] <= 1   # round 0 scored too


def test_selftrain_method_pseudo_labels_the_training_pool_only(isbi_like, tmp_path, monkeypatch):
    """Method selftrain runs the product's selftrain from the DDPM model: round 0 on the labeled draw, then
    pseudo-labels of the rest of the training pool; never a held-out validation case or a test case. Without a
    choice of its own in --settings it takes ddpm's (its rounds are DDPM fine-tunings)."""
    data, splits = isbi_like
    pretrained = tmp_path / "pretrained"
    pretrain(PretrainOptions(images=data / "images", out=pretrained, preset="tiny", iterations=2, batch_size=2,
                             image_size=[32, 32], checkpoint_every=2, device="cpu", progress="none"))
    labeled_now = spy_on_pseudo_labels(monkeypatch)
    results = tmp_path / "isbi_protocol"
    common = ["--data", str(data), "--pretrained", str(pretrained), "--work", str(tmp_path / "work"),
              "--methods", "selftrain", "--ns", "2", "--seeds", "0", *TINY]

    # The keep fraction is a setting of selftrain, swept on validation like the learning rate.
    _run_benchmark(monkeypatch, [*common, "--validate", "2", "--iterations", "2", "--keep-fraction", "1", "0.5",
                                 "--min-confidence", "0", "--out", str(results / "validation" / "grid")])
    record, half = json.loads((results / "validation" / "grid.json").read_text())["records"]
    held = json.loads((results / "validation" / "grid.json").read_text())["scored_cases"]["validation"]
    pseudo, _ = labeled_now
    assert set(pseudo) == set(splits["train"]) - set(held) - set(record["cases"]), \
        "the pool is the training cases neither drawn nor held out"
    assert record["selftrain"]["rounds"] == 1 and record["selftrain"]["pool"] == len(splits["train"]) - 2
    (round_1,) = record["selftrain"]["pseudo_labels"]
    assert round_1["kept"] + round_1["rejected"] == len(pseudo) and round_1["round"] == 1
    assert record["pretraining"]["training"]["images"] == 12 and record["iterations"] == 2
    assert (record["keep_fraction"], half["keep_fraction"]) == (1.0, 0.5)
    assert round_1["kept"] == len(pseudo) and half["selftrain"]["pseudo_labels"][0]["kept"] == -(-len(pseudo) // 2)
    # Round 0 is scored on the same splits: report.py pairs selftrain - selftrain-r0.
    assert set(record["round_0"]["splits"]) == set(record["splits"]) and record["round_0"]["mre_mm"] >= 0
    report.choose_settings(results / "validation", report.ISBI)
    chosen = json.loads((results / "choice.json").read_text())["choice"]["selftrain"]["2"]
    assert chosen["keep_fraction"] in (1.0, 0.5)

    # Test with a choice that has ddpm's settings only: selftrain runs them.
    choice = results / "choice.json"
    choice.write_text(json.dumps({"choice": {"ddpm": {"1": {"learning_rate": 3e-3, "iterations": 3,
                                                            "augmentation": "none"}}}}))
    labeled_now.clear()
    predicted = _run_benchmark(monkeypatch, [*common, "--settings", str(choice), "--out", str(results / "test" / "g")])
    (record,) = json.loads((results / "test" / "g.json").read_text())["records"]
    assert (record["learning_rate"], record["iterations"], record["augmentation"]) == (3e-3, 3, "none")
    assert record["keep_fraction"] == SelftrainOptions.keep_fraction, "ddpm's settings have none: the product's"
    (pseudo,) = labeled_now
    assert set(pseudo) == set(splits["train"]) - set(record["cases"])
    assert set(predicted) == set(splits["test1"]) | set(splits["test2"]) and not set(pseudo) & set(predicted)


def jsrt_like(tmp_path: Path) -> tuple[Path, Path]:
    """10 phantoms laid out like ../shared/data/jsrt-256 (8-bit PNGs), and a 2-step tiny pretraining on them."""
    phantoms, data = tmp_path / "phantoms", tmp_path / "jsrt"
    generate_sample_dataset(phantoms, dims=2, n_cases=10, size=(64, 64))
    for folder in ("images", "labels"):
        (data / folder).mkdir(parents=True)
        for path in sorted((phantoms / folder).glob("*.nrrd")):
            image = sitk.ReadImage(str(path))
            image = sitk.Cast(sitk.RescaleIntensity(image, 0, 255) if folder == "images" else image, sitk.sitkUInt8)
            sitk.WriteImage(image, str(data / folder / f"{case_name(path)}.png"))
    pretrained = tmp_path / "pretrained"
    pretrain(PretrainOptions(images=data / "images", out=pretrained, preset="tiny", iterations=2, batch_size=2,
                             image_size=[32, 32], checkpoint_every=2, device="cpu", progress="none"))
    return data, pretrained


def test_jsrt_synthesize_method_learns_from_drawn_cases_and_scores_round_0(tmp_path, monkeypatch):
    """Method synthesize (PTDR): round 0 on the draw, images drawn from the DDPM model and labeled by round 0,
    round 1 on real + drawn; both rounds scored on the same test cases; the record says what was drawn and kept."""
    from benchmarks import segmentation_jsrt

    data, pretrained = jsrt_like(tmp_path)
    extras = []
    real_finetune = protocol.finetune

    def spy(options):
        extras.append([Path(e) for e in options.extra])
        return real_finetune(options)

    monkeypatch.setattr(protocol, "finetune", spy)
    results = tmp_path / "jsrt_protocol" / "test"
    predicted = _run_benchmark(monkeypatch, [
        "--data", str(data), "--pretrained", str(pretrained), "--work", str(tmp_path / "work"), "--methods",
        "synthesize", "--ns", "1", "--seeds", "0", "--iterations", "2", "--image-size", "32", "32", "--preset",
        "tiny", "--synthesize-count", "3", "--min-confidence", "0", "--keep-fraction", "0.5", "--device", "cpu",
        "--out", str(results / "grid")], segmentation_jsrt)
    _, test = split(sorted(case_name(p) for p in (data / "images").iterdir()))
    assert sorted(predicted) == sorted(test * 2), "the final model and round 0 predict the test half"
    (record,) = json.loads((results / "grid.json").read_text())["records"]
    assert record["synthesize"]["count"] == 3 and record["synthesize"]["kept"] == 2   # ceil(0.5 * 3)
    assert record["keep_fraction"] == 0.5 and set(record["round_0"]) == {"mIoU", "mean_dice", "per_class"}
    assert len(extras) == 2 and extras[0] == [] and [e.name for e in extras[1]] == ["drawn"]
    report.protocol_test(results, report.JSRT)
    summary = json.loads((results / "summary.json").read_text())
    assert summary["differences"]["synthesize - synthesize-r0"]["1"]["pairs"] == 1


def test_jsrt_selftrain_scores_its_round_0_and_the_report_pairs_them(tmp_path, monkeypatch):
    """segmentation_jsrt.py with method selftrain scores the final model and its round 0 (the plain fine-tuning it
    started from) on the same test cases; report.py shows round 0 as method selftrain-r0 and pairs the two."""
    from benchmarks import segmentation_jsrt

    data, pretrained = jsrt_like(tmp_path)
    results = tmp_path / "jsrt_protocol" / "test"
    predicted = _run_benchmark(monkeypatch, [
        "--data", str(data), "--pretrained", str(pretrained), "--work", str(tmp_path / "work"), "--methods",
        "selftrain", "--ns", "1", "--seeds", "0", "1", "--iterations", "2", "--image-size", "32", "32", "--preset",
        "tiny", "--device", "cpu", "--out", str(results / "grid")], segmentation_jsrt)
    train, test = split(sorted(case_name(p) for p in (data / "images").iterdir()))
    assert sorted(predicted) == sorted(test * 4), "both draws predict the test half twice: final model, round 0"
    records = json.loads((results / "grid.json").read_text())["records"]
    assert len(records) == 2
    for r in records:
        assert set(r["round_0"]) == {"mIoU", "mean_dice", "per_class"} and 0 <= r["round_0"]["mIoU"] <= 1
        assert r["selftrain"]["pool"] == len(train)
    text = report.protocol_test(results, report.JSRT)
    summary = json.loads((results / "summary.json").read_text())
    assert summary["means"]["selftrain-r0"]["1"]["mean"] == pytest.approx(
        100 * sum(r["round_0"]["mIoU"] for r in records) / 2)
    assert summary["differences"]["selftrain - selftrain-r0"]["1"]["pairs"] == 2
    assert "| 1 | selftrain - selftrain-r0 |" in text

    # The same runs from a pretraining of the training cases only, in inductive_*.json: apart, and paired apart.
    (results / "inductive_grid.json").write_text((results / "grid.json").read_text())
    text = report.protocol_test(results, report.JSRT)
    summary = json.loads((results / "summary.json").read_text())
    assert {"selftrain", "selftrain-r0", "selftrain-inductive", "selftrain-r0-inductive"} <= set(summary["means"])
    assert summary["means"]["selftrain-inductive"] == summary["means"]["selftrain"]
    assert summary["differences"]["selftrain-inductive - selftrain-r0-inductive"]["1"]["pairs"] == 2


def test_report_keeps_the_validated_setting_of_a_draw_run_twice(tmp_path):
    """Once runs at the setting choice.json holds now exist, the runs of the same method, N and recipe at an
    older setting leave the tables (a mean never mixes settings); other recipes stay; the note names them."""
    choice = tmp_path / "choice.json"
    choice.write_text(json.dumps({"choice": {"supervised": {"2": {"learning_rate": 1e-3, "iterations": 1200}}}}))
    base = {"method": "supervised", "n": 2, "learning_rate": 1e-3, "augmentation": "strong"}
    records = [{**base, "seed": 0, "iterations": 600}, {**base, "seed": 0, "iterations": 1200},
               {**base, "seed": 1, "iterations": 600},
               {**base, "method": "ddpm", "seed": 0, "iterations": 200, "augmentation": "mild"}]
    kept, left_out = report.validated_only(records, choice)
    assert kept == [records[1], records[3]]
    assert left_out == ["supervised N=2 lr 0.001 600 steps (2 runs)"]
    assert report.validated_only(records, tmp_path / "none.json") == (records, [])


def test_results_files_of_a_prefix_with_a_dot_stay_apart():
    """``--out .../selftrain_keep0.5_n1`` and ``..._n2`` write two JSON files, not one ``selftrain_keep0.json``."""
    from benchmarks.common import beside

    a, b = Path("r/selftrain_keep0.5_n1_s0"), Path("r/selftrain_keep0.5_n2_s0")
    assert beside(a, ".json") == Path("r/selftrain_keep0.5_n1_s0.json") != beside(b, ".json")
    assert beside(Path("r/flops.json"), ".md") == Path("r/flops.md")
