"""``diffusionseg curve``: the saturating fit, the subset plan, the report, and the command on tiny phantoms."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from DiffusionSegLib.cli.main import main
from DiffusionSegLib.curve.fit import C_PRIOR, bootstrap, fit_curve
from DiffusionSegLib.curve.plan import default_sizes, plan_subsets
from DiffusionSegLib.curve.plot import render_curve_png
from DiffusionSegLib.curve.report import picture, summarize
from DiffusionSegLib.sample_data import generate_sample_dataset
from DiffusionSegLib.pretrain.run import PretrainOptions, pretrain
from blind_baselines import shifted_phantoms

CLASSES = "right_lung,left_lung,heart"


# ----------------------------------------------------------------------------- the fit (no training)


@pytest.mark.parametrize("a,b,c,higher", [(0.9, 0.5, 0.6, True), (0.82, 0.3, 1.4, True), (3.0, -20.0, 0.8, False)])
def test_fit_recovers_a_saturating_series(a, b, c, higher):
    n = np.repeat(np.arange(1, 10), 2)
    y = a - b * n ** -c
    fit = fit_curve(n, y, higher_is_better=higher)
    assert fit.fitted == ["a", "b", "c"]
    assert (fit.a, fit.b, fit.c) == pytest.approx((a, b, c), rel=1e-4)
    # With noise the parameters are still close, and the prediction at the next sizes closer still.
    noisy = y + np.random.default_rng(1).normal(0, 0.002 * abs(b), y.size)
    fit = fit_curve(n, noisy, higher_is_better=higher)
    assert fit.c == pytest.approx(c, rel=0.15)
    assert fit.predict([10, 15]) == pytest.approx(a - b * np.array([10, 15]) ** -c, abs=0.01 * abs(b))


def test_fit_on_few_sizes_assumes_the_exponent_and_never_passes_the_best_score():
    two = fit_curve([1, 1, 2, 2], [0.6, 0.62, 0.7, 0.69])
    assert two.fitted == ["a", "b"] and two.c == C_PRIOR and two.a <= 1
    one = fit_curve([1, 1], [0.6, 0.62])
    assert one.fitted == ["b"] and one.a == 1 and one.predict(1) == pytest.approx(0.61)
    # Scores that fall with more cases (noise): a flat curve, never a curve that gets worse.
    flat = fit_curve([1, 2, 3], [0.7, 0.65, 0.6])
    assert flat.b == pytest.approx(0, abs=1e-9) and flat.predict(10) == pytest.approx(0.65)
    # MRE never below 0 mm.
    assert fit_curve([1, 2, 4], [9.0, 5.0, 2.5], higher_is_better=False).predict(1000) >= 0
    reps = bootstrap([1, 1], [0.6, 0.62], [2, 3], replicates=50)
    assert reps.shape == (50, 2) and np.all(np.isfinite(reps))


def test_plan_is_seeded_cheap_by_default_and_holds_cases_out():
    cases = [f"case_{i}" for i in range(10)]
    assert default_sizes(2) == [1] and default_sizes(4) == [1, 2, 3] and default_sizes(10) == [1, 3, 9]
    plan = plan_subsets(cases, default_sizes(10), 2, seed=4)
    assert len(plan) == 6  # the default cost: at most 6 fine-tunings
    assert plan == plan_subsets(cases, default_sizes(10), 2, seed=4)
    for s in plan:
        assert len(s.train) == s.n and sorted(s.train + s.test) == cases
    assert len({tuple(s.train) for s in plan}) == len(plan)
    # Two labeled cases: both subsets of one (each scored on the other).
    assert [(s.train, s.test) for s in plan_subsets(["a", "b"], [1], 5)] == [(["a"], ["b"]), (["b"], ["a"])]


def _rows(n_sizes, labeled=6):
    rng = np.random.default_rng(0)
    return [{"n": n, "fold": f, "score": float(0.9 - 0.4 * n ** -0.7 + rng.normal(0, 0.01))}
            for n in range(1, n_sizes + 1) for f in range(2)]


@pytest.mark.parametrize("sizes", [1, 2, 5])
def test_report_gives_three_predictions_with_bands_and_a_sentence(sizes):
    labeled = sizes + 1
    result = summarize(_rows(sizes), labeled, "dice", seed=0)
    preds = result["predictions"]
    assert [p["label"] for p in preds] == ["now", "one_more", "five_more"]
    assert [p["n"] for p in preds] == [labeled, labeled + 1, labeled + 5]
    for p in preds:
        assert p["lower"] <= p["estimate"] <= p["upper"]
        if p["added"]:
            assert p["gain_lower"] <= p["gain"] <= p["gain_upper"]
            assert p["gain"] >= 0  # a saturating curve never predicts a loss
    assert result["interval"]["level"] == 0.8
    assert result["sentence"].startswith("One more annotation: +") and "Dice points" in result["sentence"]
    assert ("assumed" in result["sentence"]) == (sizes < 3)
    # The numpy renderer (Slicer has no matplotlib) draws a readable PNG of the same picture.
    png = render_curve_png(picture(result, labeled))
    import io

    assert Image.open(io.BytesIO(png)).size == (600, 350)


def test_plot_without_matplotlib_falls_back_to_the_numpy_renderer(tmp_path, monkeypatch):
    """In 3D Slicer (no matplotlib) curve.png is still written, by the numpy renderer."""
    import sys

    from DiffusionSegLib.curve.plot import write_plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    result = summarize(_rows(3), 4, "dice", seed=0)
    write_plot(tmp_path / "curve.png", picture(result, 4))
    assert Image.open(tmp_path / "curve.png").size == (600, 350)


# ----------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantoms")
    generate_sample_dataset(root / "centred", dims=2, n_cases=4, size=(24, 24), seed=3, spacing=[11.2, 11.2])
    return shifted_phantoms(root / "centred", root / "data", (32, 32), seed=3)


@pytest.fixture(scope="module")
def pretrained(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pre") / "model"
    pretrain(PretrainOptions(images=dataset / "images", out=out, preset="tiny", image_size=[32, 32], iterations=4,
                             batch_size=4, checkpoint_every=4, device="cpu", progress="none"))
    return out


def _labels(dataset: Path, folder: Path, cases: list[str], suffix: str, sub: str) -> Path:
    folder.mkdir(parents=True)
    for case in cases:
        (folder / f"{case}{suffix}").write_bytes((dataset / sub / f"{case}{suffix}").read_bytes())
    return folder


def test_curve_command_writes_json_csv_png(dataset, pretrained, tmp_path, capsys):
    labels = _labels(dataset, tmp_path / "labels", ["case_000", "case_001", "case_002"], ".nrrd", "labels")
    out = tmp_path / "curve"
    code = main(["curve", "--pretrained", str(pretrained), "--images", str(dataset / "images"), "--labels",
                 str(labels), "--classes", CLASSES, "--out", str(out), "--iterations", "3", "--batch-size", "2",
                 "--folds", "1", "--device", "cpu", "--progress", "json"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0]["event"] == "start" and events[0]["finetunings"] == 2
    assert events[-1]["event"] == "done" and events[-1]["sentence"]
    assert sorted(p.name for p in out.iterdir()) == ["curve.csv", "curve.json", "curve.png", "events.jsonl"]
    assert not list(tmp_path.glob(".curve*"))  # no staging folder or lock left behind
    doc = json.loads((out / "curve.json").read_text())
    assert doc["format"] == "diffusionseg-curve" and doc["version"] == 1
    assert doc["command"].startswith("diffusionseg curve --pretrained")
    assert doc["labeled"] == 3 and doc["settings"]["sizes"] == [1, 2] and doc["settings"]["finetunings"] == 2
    assert doc["metric"]["key"] == "mean_dice" and doc["fit"]["form"] == "y = a - b * n^(-c)"
    assert [s["n"] for s in doc["sizes"]] == [1, 2]
    assert [p["n"] for p in doc["predictions"]] == [3, 4, 8]
    assert all(p["lower"] <= p["estimate"] <= p["upper"] for p in doc["predictions"])
    assert doc["sentence"].startswith("One more annotation:")
    for s in doc["subsets"]:
        assert 0 <= s["score"] <= 1 and not set(s["train"]) & set(s["test"])
    rows = list(csv.DictReader(open(out / "curve.csv")))
    assert len(rows) == 2 and rows[0]["n"] == "1" and float(rows[0]["mean_dice"]) == pytest.approx(
        doc["subsets"][0]["mean_dice"], rel=1e-5)
    assert Image.open(out / "curve.png").size == (600, 350)
    # A non-empty --out is refused, like finetune's.
    code = main(["curve", "--pretrained", str(pretrained), "--images", str(dataset / "images"), "--labels",
                 str(labels), "--out", str(out), "--device", "cpu", "--progress", "none"])
    assert code == 2 and "not empty" in capsys.readouterr().err


def test_curve_landmarks_and_too_few_labels(dataset, pretrained, tmp_path, capsys):
    marks = _labels(dataset, tmp_path / "marks", ["case_000", "case_001"], ".mrk.json", "landmarks")
    out = tmp_path / "curve"
    code = main(["curve", "--pretrained", str(pretrained), "--images", str(dataset / "images"), "--landmarks",
                 str(marks), "--out", str(out), "--iterations", "2", "--batch-size", "2", "--device", "cpu",
                 "--progress", "none"])
    assert code == 0
    doc = json.loads((out / "curve.json").read_text())
    assert doc["metric"]["key"] == "mre_mm" and doc["metric"]["higher_is_better"] is False
    assert len(doc["subsets"]) == 2 and doc["fit"]["assumed"]  # one size: the shape is assumed, and says so
    assert all(p["lower"] <= p["estimate"] <= p["upper"] for p in doc["predictions"])
    assert "mm MRE" in doc["sentence"] and "assumed" in doc["sentence"]
    capsys.readouterr()
    one = _labels(dataset, tmp_path / "one", ["case_000"], ".mrk.json", "landmarks")
    code = main(["curve", "--pretrained", str(pretrained), "--images", str(dataset / "images"), "--landmarks",
                 str(one), "--out", str(tmp_path / "c1"), "--device", "cpu", "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "at least 2 labeled cases" in err and "label one more" in err
    assert str(one) in err and not (tmp_path / "c1").exists()
    code = main(["curve", "--pretrained", str(pretrained), "--images", str(dataset / "images"), "--landmarks",
                 str(marks), "--out", str(tmp_path / "c2"), "--sizes", "2", "--device", "cpu", "--progress", "none"])
    assert code == 2 and "--sizes 2" in capsys.readouterr().err
