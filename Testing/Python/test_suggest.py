"""``diffusionseg suggest``: a ranked list of K distinct pool cases; cold start covers both clusters of a
two-kind pool; a second call computes no feature; a fine-tuned model never suggests a labeled case;
bad input is one clear error line (exit 2)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DiffusionSegLib.cli.main import main
from DiffusionSegLib.errors import UserError
from DiffusionSegLib.finetune.run import FinetuneOptions, finetune
from DiffusionSegLib.sample_data import generate_sample_dataset
from DiffusionSegLib.suggest import select
from DiffusionSegLib.suggest.features import Extractor
from DiffusionSegLib.suggest.run import SuggestOptions, suggest
from DiffusionSegLib.suggest.uncertainty import landmark_uncertainty, segmentation_uncertainty
from DiffusionSegLib.pretrain.run import PretrainOptions, pretrain

CLASSES = ["right_lung", "left_lung", "heart"]
STRIPES = ["stripes_0", "stripes_1"]


def stripes(path: Path, like: sitk.Image, phase: int) -> None:
    """A clearly different kind of image: vertical stripes, same geometry and intensity range as ``like``."""
    pixels = sitk.GetArrayFromImage(like).astype(np.float32)
    columns = (np.arange(pixels.shape[1]) + phase) // 3 % 2
    image = sitk.GetImageFromArray(np.broadcast_to(columns * pixels.max(), pixels.shape).astype(np.float32))
    image.CopyInformation(like)
    sitk.WriteImage(image, str(path))


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    """10 chest phantoms and 2 stripe images, 32 x 32; labels/ holds the label maps of 3 chest cases."""
    root = tmp_path_factory.mktemp("pool")
    generate_sample_dataset(root / "data", dims=2, n_cases=10, size=(32, 32), seed=5)
    images = root / "data" / "images"
    like = sitk.ReadImage(str(images / "case_000.nrrd"))
    for i, name in enumerate(STRIPES):
        stripes(images / f"{name}.nrrd", like, phase=i)
    for folder, suffix in (("labels", ".nrrd"), ("landmarks", ".mrk.json")):
        (root / folder).mkdir()
        for case in ("case_000", "case_001", "case_002"):
            name = f"{case}{suffix}"
            (root / folder / name).write_bytes((root / "data" / folder / name).read_bytes())
    return root


@pytest.fixture(scope="module")
def models(pool, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    pretrain(PretrainOptions(images=pool / "data" / "images", out=root / "pre", preset="tiny", image_size=[32, 32],
                             iterations=20, batch_size=4, learning_rate=1e-3, checkpoint_every=20, device="cpu",
                             progress="none", warmup_steps=0))
    finetune(FinetuneOptions(task="segmentation", images=pool / "data" / "images", annotations=pool / "labels",
                             out=root / "seg", pretrained=root / "pre", classes=CLASSES, iterations=20, batch_size=3,
                             learning_rate=3e-3, checkpoint_every=20, device="cpu", progress="none"))
    finetune(FinetuneOptions(task="landmarks", images=pool / "data" / "images", annotations=pool / "landmarks",
                             out=root / "lmk", pretrained=root / "pre", iterations=10, batch_size=3,
                             learning_rate=3e-3, checkpoint_every=10, device="cpu", progress="none"))
    return {"pre": root / "pre", "seg": root / "seg", "lmk": root / "lmk"}


def run(models, pool, out, model="pre", **kw) -> dict:
    options = dict(model=models[model], images=pool / "data" / "images", count=2, out=out, device="cpu",
                   progress="none")
    return suggest(SuggestOptions(**{**options, **kw}))


@pytest.mark.parametrize("strategy", ["kmedoids", "kcentre"])
def test_cold_start_covers_both_clusters(models, pool, tmp_path, strategy):
    report = run(models, pool, tmp_path / "picks", strategy=strategy, cache_dir=tmp_path / "cache")
    picked = [s["case"] for s in report["suggestions"]]
    # Random pairs from 10 + 2 images hold one of each kind with probability 2 * 10 / 66 = 0.30.
    assert len(set(picked)) == 2 and len(set(picked) & set(STRIPES)) == 1, picked
    rows = list(csv.DictReader((tmp_path / "picks.csv").open()))
    assert list(rows[0]) == ["case", "rank", "score", "reason", "image"]
    assert [r["case"] for r in rows] == picked and [r["rank"] for r in rows] == ["1", "2"]
    assert all(r["reason"] for r in rows)
    saved = json.loads((tmp_path / "picks.json").read_text())
    assert saved["strategy"] == strategy and saved["command"].startswith("diffusionseg suggest")
    assert saved["model"]["kind"] == "pretrained" and len(saved["model"]["weights_sha256"]) == 64
    assert saved["timing"]["seconds"] >= 0 and saved["pool"] == 12


def test_ranked_list_is_k_distinct_pool_cases_and_cache_is_reused(models, pool, tmp_path, monkeypatch):
    first = run(models, pool, f"{tmp_path / 'out'}/", count=6)
    names = {p.name.removesuffix(".nrrd") for p in (pool / "data" / "images").iterdir()}
    cases = [s["case"] for s in first["suggestions"]]
    assert len(cases) == len(set(cases)) == 6 and set(cases) <= names
    assert (tmp_path / "out" / "suggestions.json").is_file() and (tmp_path / "out" / "suggestions.csv").is_file()
    assert first["features"]["computed"] + first["features"]["cached"] == 12
    assert Path(first["features"]["cache"]).is_relative_to(models["pre"] / "cache" / "suggest")

    def no_features(*_a, **_k):
        raise AssertionError("a feature was computed on the cached call")
    monkeypatch.setattr(Extractor, "describe", no_features)
    second = run(models, pool, tmp_path / "again", count=6)
    assert second["features"] == {**first["features"], "computed": 0, "cached": 12}
    assert [s["case"] for s in second["suggestions"]] == cases


def test_finetuned_model_never_suggests_labeled_cases(models, pool, tmp_path, capsys):
    code = main(["suggest", "--model", str(models["seg"]), "--images", str(pool / "data" / "images"), "--labels",
                 str(pool / "labels"), "--count", "9", "--out", str(tmp_path / "mix"), "--device", "cpu",
                 "--progress", "json"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    report = json.loads((tmp_path / "mix.json").read_text())
    assert report["strategy"] == "mix" and report["labeled"] == ["case_000", "case_001", "case_002"]
    cases = [s["case"] for s in report["suggestions"]]
    assert len(set(cases)) == 9 and not set(cases) & set(report["labeled"])
    assert all(0 <= s["uncertainty"] <= 1 for s in report["suggestions"])
    # Stripes are unlike every labeled chest: with half the weight on distance they come first.
    assert set(cases[:2]) == set(STRIPES), cases
    assert "far from every labeled case" in report["suggestions"][0]["reason"]


def test_landmark_model_ranks_by_peak_mass_and_distance(models, pool, tmp_path):
    report = run(models, pool, tmp_path / "lmk", model="lmk", landmarks=pool / "landmarks", count=4)
    assert report["strategy"] == "mix" and report["model"]["kind"] == "landmarks"
    for s in report["suggestions"]:
        assert s["case"] not in report["labeled"] and 0 <= s["peak_mass"] <= 1 and s["spread_px"] >= 0
        assert "landmark peaks" in s["reason"]


def test_errors_are_one_line_exit_2(models, pool, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    images = str(pool / "data" / "images")
    bpr = tmp_path / "bpr"
    bpr.mkdir()
    (bpr / "config.json").write_text(json.dumps({"format": "diffusionseg-model", "version": 1, "kind": "bpr"}))
    cases = [(["--model", str(models["pre"]), "--images", str(tmp_path / "empty")], "empty"),
             (["--model", str(bpr), "--images", images], "bpr model"),
             (["--model", str(models["seg"]), "--images", images, "--landmarks", str(pool / "labels")], "seg"),
             (["--model", str(models["seg"]), "--images", images, "--labels", str(pool / "labels"),
               "--count", "10"], "10"),
             (["--model", str(models["pre"]), "--images", images, "--strategy", "mix"], "mix needs a task model"),
             (["--model", str(models["pre"]), "--images", str(tmp_path / "vol")], "3D image, 2D model")]
    (tmp_path / "vol").mkdir()
    sitk.WriteImage(sitk.Image([8, 8, 4], sitk.sitkFloat32), str(tmp_path / "vol" / "v.nrrd"))
    for argv, what in cases:
        count = [] if "--count" in argv else ["--count", "2"]
        code = main(["suggest", *argv, *count, "--out", str(tmp_path / "x"), "--device", "cpu", "--progress", "none"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "Fix:" in err[0], (what, err)
    assert not (tmp_path / "x.json").exists()


def test_selection_on_two_clusters_and_uncertainty_measures():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.1, (10, 4)), rng.normal(5, 0.1, (2, 4))])
    for picks in (select.kcentre(X, 2), select.kmedoids(X, 2)):
        assert {p.index >= 10 for p in picks} == {True, False}
    assert select.coverage(X, [0, 10]) < select.coverage(X, [0, 1])
    # Labeled cases are centres: with one labeled in each cluster nothing new is far, the mix goes by uncertainty.
    u = np.linspace(0, 1, 12)
    picks = select.mix(X, u, 3, fixed=[0, 10], weight=1.0)
    assert [p.index for p in picks] == [11, 9, 8]
    # Segmentation: passes that agree -> low; a pass that flips labels -> disagreement.
    logits = np.zeros((2, 12, 12), np.float32)
    logits[1, 4:8, 4:8] = 8
    calm = segmentation_uncertainty([logits] * 4)
    flipped = logits.copy()
    flipped[1, 4:8, 4:8] = -8
    assert calm["disagreement"] == 0 and calm["uncertainty"] < 0.01
    assert segmentation_uncertainty([logits, logits, logits, flipped])["disagreement"] == 1
    # Landmarks: a sharp peak in every pass -> mass near 1, no spread.
    grid = np.stack(np.meshgrid(np.arange(16), np.arange(16), indexing="ij"))
    peak = -((grid - 8) ** 2).sum(0)[None].astype(np.float32) / (2 * 1.5 ** 2)
    sharp = landmark_uncertainty([peak] * 4, (1.5, 1.5))
    assert sharp["spread_px"] < 1e-3 and sharp["peak_mass"] > 0.9 and sharp["uncertainty"] < 0.06
    flat = landmark_uncertainty([np.zeros_like(peak)] * 4, (1.5, 1.5))
    assert flat["peak_mass"] < 0.2 and flat["uncertainty"] > 0.4


def test_3d_volumes(tmp_path):
    folder = tmp_path / "vols"
    folder.mkdir()
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in (10, 20, 20)], indexing="ij"))
    for i in range(4):
        centre = rng.uniform(6, 14, 3).reshape(3, 1, 1, 1) * [[[[0.5]]], [[[1]]], [[[1]]]]
        pixels = 100 + 800 * (np.sqrt(((grid - centre) ** 2).sum(0)) < 4 + i)
        image = sitk.GetImageFromArray(pixels.astype(np.float32))
        image.SetSpacing([1.0, 1.0, 2.0])
        sitk.WriteImage(image, str(folder / f"vol_{i}.nii.gz"))
    pretrain(PretrainOptions(images=folder, out=tmp_path / "pre3d", preset="tiny", image_size=None,
                             patch_size=[16, 16, 8], iterations=2, batch_size=2, checkpoint_every=2, device="cpu",
                             progress="none", warmup_steps=0))
    report = suggest(SuggestOptions(model=tmp_path / "pre3d", images=folder, count=3, out=tmp_path / "s3d",
                                    device="cpu", progress="none"))
    assert len({s["case"] for s in report["suggestions"]}) == 3
    with pytest.raises(UserError, match="--count 5 is more than the 4 unlabeled"):
        suggest(SuggestOptions(model=tmp_path / "pre3d", images=folder, count=5, out=tmp_path / "s3d",
                               device="cpu", progress="none"))
    assert math.isfinite(report["coverage"])
