"""Landmark metrics on hand-made numbers: radial error, MRE, SD, SDR, folder evaluation, reports."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from DiffusionSegLib.errors import UserError
from DiffusionSegLib.evaluation import evaluate_landmarks, landmark_metrics, radial_errors, write_landmark_report
from DiffusionSegLib.landmarks import Landmarks, write_csv, write_fcsv, write_mrk_json

NAMES = ["sella", "nasion", "menton"]


def _lm(points: dict) -> Landmarks:
    return Landmarks.from_dict(points)


def test_radial_errors_by_name_and_missing():
    truth = Landmarks(NAMES, np.array([[0.0, 0, 0], [10, 10, 0], [np.nan] * 3]))
    # other order, an extra name, and nasion missing
    pred = Landmarks(["menton", "extra", "sella", "nasion"],
                     np.array([[1.0, 1, 0], [5, 5, 5], [3, 4, 0], [np.nan] * 3]))
    err = radial_errors(pred, truth)
    assert err.shape == (3,)
    assert err[0] == 5.0 and np.isnan(err[1]) and np.isnan(err[2])
    # a name absent from the prediction is missing too
    np.testing.assert_allclose(radial_errors(_lm({"sella": (0, 2)}), _lm({"sella": (0, 0), "nasion": (1, 1)})),
                               [2.0, np.nan])


def test_landmark_metrics_known_numbers():
    errors = np.array([[1.0, 2.0, np.nan],
                       [3.0, 2.5, 5.0],
                       [1.0, 4.5, 4.0]])
    m = landmark_metrics(errors, NAMES)
    ok = np.array([1, 2, 3, 2.5, 5, 1, 4.5, 4.0])
    assert m["n_cases"] == 3
    assert m["overall"]["n_evaluated"] == 8 and m["overall"]["n_missing"] == 1
    assert m["overall"]["mre_mm"] == pytest.approx(23.0 / 8)
    assert m["overall"]["sd_mm"] == pytest.approx(ok.std())
    # <= r counts: 2 mm {1, 2, 1} = 3/8; 2.5 mm +2.5 = 4/8; 3 mm +3 = 5/8; 4 mm +4 = 6/8
    assert m["overall"]["sdr_percent"] == pytest.approx({"2": 37.5, "2.5": 50.0, "3": 62.5, "4": 75.0})
    sella = m["landmarks"]["sella"]
    assert sella["mre_mm"] == pytest.approx(5.0 / 3) and sella["sd_mm"] == pytest.approx(np.std([1, 3, 1]))
    assert sella["sdr_percent"]["2"] == pytest.approx(200.0 / 3)
    menton = m["landmarks"]["menton"]
    assert menton["n_evaluated"] == 2 and menton["n_missing"] == 1 and menton["mre_mm"] == 4.5
    assert menton["sdr_percent"]["4"] == 50.0
    # nothing evaluated: NaN, not an error
    empty = landmark_metrics(np.full((2, 1), np.nan), ["a"])
    assert math.isnan(empty["overall"]["mre_mm"]) and empty["overall"]["n_missing"] == 2
    with pytest.raises(ValueError):
        landmark_metrics(errors, NAMES[:2])


def test_evaluate_folders_and_report(tmp_path):
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    write_mrk_json(_lm({"sella": (0, 0), "nasion": (10, 0), "menton": (0, 10)}), truth_dir / "case_001.mrk.json")
    write_mrk_json(Landmarks(NAMES, [[5, 5, 0], [np.nan] * 3, [0, 0, 0]]), truth_dir / "case_002.mrk.json")
    write_mrk_json(_lm({"sella": (0, 0)}), truth_dir / "case_003.mrk.json")  # no prediction
    write_mrk_json(_lm({"sella": (3, 4), "nasion": (10, 2), "menton": (0, 10)}), pred_dir / "case_001.mrk.json")
    write_fcsv(Landmarks(NAMES, [[5, 6, 0], [1, 1, 0], [np.nan] * 3]), pred_dir / "case_002.fcsv")
    write_csv(_lm({"sella": (0, 0)}), pred_dir / "case_004.csv")  # no ground truth

    results = evaluate_landmarks(pred_dir, truth_dir)
    assert results["names"] == NAMES
    assert [c["case"] for c in results["cases"]] == ["case_001", "case_002"]
    assert results["missing_predictions"] == ["case_003"]
    assert results["unlabeled_predictions"] == ["case_004"]
    assert results["cases"][0]["errors_mm"] == pytest.approx({"sella": 5.0, "nasion": 2.0, "menton": 0.0})
    c2 = results["cases"][1]
    assert c2["errors_mm"]["sella"] == pytest.approx(1.0)
    assert c2["missing_truth"] == ["nasion"] and c2["missing_prediction"] == ["menton"]
    overall = results["summary"]["overall"]
    assert overall["mre_mm"] == pytest.approx(2.0)  # (5 + 2 + 0 + 1) / 4
    assert overall["sdr_percent"]["2"] == 75.0
    assert (overall["n_missing"], overall["n_missing_prediction"], overall["n_missing_truth"]) == (2, 1, 1)

    write_landmark_report(results, tmp_path / "out" / "report.json", tmp_path / "out" / "report.csv")
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["cases"][1]["errors_mm"]["nasion"] is None  # NaN as null
    rows = list(csv.DictReader((tmp_path / "out" / "report.csv").open()))
    assert [r["landmark"] for r in rows] == NAMES + ["ALL"]
    assert float(rows[-1]["mre_mm"]) == pytest.approx(2.0) and float(rows[-1]["sdr_2mm_percent"]) == 75.0
    assert rows[1]["mre_mm"] == "2.0000" and rows[1]["n_missing"] == "1"


def test_evaluate_user_errors(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_mrk_json(_lm({"x": (0, 0)}), tmp_path / "a" / "one.mrk.json")
    write_mrk_json(_lm({"x": (0, 0)}), tmp_path / "b" / "two.mrk.json")
    with pytest.raises(UserError, match="no case has both"):
        evaluate_landmarks(tmp_path / "a", tmp_path / "b")
    with pytest.raises(UserError, match="not found"):
        evaluate_landmarks(tmp_path / "missing", tmp_path / "b")



def test_mrk_json_wins_over_csv_of_the_same_case(tmp_path):
    # predict writes <case>.mrk.json and <case>.csv; the markups file is the one scored.
    (tmp_path / "pred").mkdir()
    (tmp_path / "truth").mkdir()
    write_mrk_json(_lm({"x": (0, 0)}), tmp_path / "pred" / "c.mrk.json")
    write_csv(_lm({"x": (5, 0)}), tmp_path / "pred" / "c.csv")
    write_mrk_json(_lm({"x": (0, 0)}), tmp_path / "truth" / "c.mrk.json")
    results = evaluate_landmarks(tmp_path / "pred", tmp_path / "truth")
    assert results["summary"]["overall"]["mre_mm"] == 0.0
