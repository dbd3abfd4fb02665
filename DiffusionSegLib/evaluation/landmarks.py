"""Landmark metrics: radial error (mm), MRE, SD and success detection rates, and reports.

Definitions (those of the ISBI 2015 cephalometric challenge and the DDPM landmark paper):
- radial error: the Euclidean distance in mm between a predicted and a true landmark
  (LPS points, so 2D landmarks at z = 0 give the in-plane distance);
- MRE: the mean radial error; SD: its standard deviation (population SD, ``ddof=0``,
  as the challenge's evaluation scripts compute it);
- SDR at r mm: the percentage of landmarks with radial error <= r.

A pair with either side missing has no error (NaN). Metrics are computed over the pairs
that have one, and the missing ones are counted beside them, never silently dropped:
``n_missing_prediction`` (annotated but not predicted: a failure of the model) and
``n_missing_truth`` (not annotated: nothing to score).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from DiffusionSegLib.atomic import jsonable
from DiffusionSegLib.errors import UserError
from DiffusionSegLib.landmarks.markups import Landmarks, _atomic_write, read_landmarks
from DiffusionSegLib.vocabulary import LANDMARK_LABEL_SUFFIXES, case_files

SDR_THRESHOLDS_MM = (2.0, 2.5, 3.0, 4.0)


def radial_errors(pred: Landmarks, truth: Landmarks) -> np.ndarray:
    """Radial error of each ground-truth landmark, matched by name.

    Args:
        pred: predicted landmarks (any order; extra names are ignored).
        truth: ground truth; its names and order define the output.
    Returns:
        (L,) float64 mm, ``L = len(truth)``; NaN where the truth or the prediction is
        missing (NaN row, or the name absent from ``pred``).
    """
    matched = pred.reordered(truth.names).points
    return np.linalg.norm(matched - truth.points, axis=1)  # NaN propagates from either side


def _summary(errors: np.ndarray, thresholds: Sequence[float]) -> dict:
    """MRE, SD, SDRs and counts of a 1D array of errors (NaN = missing)."""
    ok = errors[~np.isnan(errors)]
    n = len(ok)
    return {
        "mre_mm": float(ok.mean()) if n else math.nan,
        "sd_mm": float(ok.std()) if n else math.nan,
        "sdr_percent": {f"{t:g}": (100.0 * float((ok <= t).mean()) if n else math.nan) for t in thresholds},
        "n_evaluated": n,
        "n_missing": int(errors.size - n),
    }


def landmark_metrics(errors, names: Sequence[str], thresholds: Sequence[float] = SDR_THRESHOLDS_MM) -> dict:
    """MRE, SD and SDR overall and per landmark.

    Args:
        errors: (cases, L) radial errors in mm, NaN where missing.
        names: the L landmark names.
        thresholds: SDR radii in mm.
    Returns:
        ``{"overall": S, "landmarks": {name: S}, "thresholds_mm": [...], "n_cases": int}``
        with ``S = {"mre_mm", "sd_mm", "sdr_percent": {"2": %, "2.5": %, ...},
        "n_evaluated", "n_missing"}``; NaN where nothing was evaluated. The overall
        figures pool all (case, landmark) pairs.
    """
    err = np.asarray(errors, dtype=np.float64)
    if err.ndim == 1:
        err = err[None, :]
    if err.ndim != 2 or err.shape[1] != len(names):
        raise ValueError(f"errors must be (cases, {len(names)}), got {err.shape}")
    return {
        "overall": _summary(err.ravel(), thresholds),
        "landmarks": {name: _summary(err[:, j], thresholds) for j, name in enumerate(names)},
        "thresholds_mm": [float(t) for t in thresholds],
        "n_cases": int(err.shape[0]),
    }


def _landmark_files(folder: Path) -> dict[str, Path]:
    """``{case: file}`` for the landmark files in ``folder``.

    Where a case has several (``predict`` writes ``.mrk.json`` and ``.csv``), the first
    suffix of LANDMARK_LABEL_SUFFIXES wins: ``.mrk.json``, then ``.fcsv``, then ``.csv``.
    """
    if not folder.is_dir():
        raise UserError("landmark folder not found.", path=folder, fix="Check the path.")
    return case_files(folder, LANDMARK_LABEL_SUFFIXES)


def evaluate_landmarks(pred_dir: str | Path, truth_dir: str | Path, names: Sequence[str] | None = None,
                       thresholds: Sequence[float] = SDR_THRESHOLDS_MM) -> dict:
    """Compare predicted landmark files with ground truth, matching files by case name.

    Files are ``<case>.mrk.json``, ``<case>.fcsv`` or ``<case>.csv`` (read with
    :func:`DiffusionSegLib.landmarks.read_landmarks`), in LPS mm.

    Args:
        pred_dir: predictions.
        truth_dir: ground truth.
        names: the landmarks to score, in order; None: every name in the ground-truth
            files, in order of first appearance.
        thresholds: SDR radii in mm.
    Returns:
        ``{"names", "cases": [{"case", "prediction", "truth", "errors_mm": {name: mm or
        NaN}, "missing_prediction": [names], "missing_truth": [names],
        "extra_predicted": [names not in ``names``]}], "summary": landmark_metrics(...)
        with "n_missing_prediction" / "n_missing_truth" added to each entry,
        "missing_predictions": [cases with ground truth but no prediction],
        "unlabeled_predictions": [cases with a prediction but no ground truth],
        "pred_dir", "truth_dir"}``. Cases missing on one side are listed, not scored.
    Raises:
        UserError: a folder is missing, a case has two files, no case is in both
            folders, or a file cannot be read.
    """
    pred_dir, truth_dir = Path(pred_dir), Path(truth_dir)
    preds, truths = _landmark_files(pred_dir), _landmark_files(truth_dir)
    common = sorted(set(preds) & set(truths))
    if not common:
        raise UserError(f"no case has both a prediction and ground truth (predictions: "
                        f"{', '.join(sorted(preds)[:5]) or 'none'}; ground truth: {', '.join(sorted(truths)[:5]) or 'none'}).",
                        path=pred_dir, fix=f"Name predictions like the ground-truth files in {truth_dir} (<case>.mrk.json).")
    truth_lm = {case: read_landmarks(truths[case]) for case in common}
    pred_lm = {case: read_landmarks(preds[case]) for case in common}
    if names is None:
        names = list(dict.fromkeys(n for case in common for n in truth_lm[case].names))
    names = list(names)
    errors = np.full((len(common), len(names)), np.nan)
    no_pred = np.zeros_like(errors, dtype=bool)
    no_truth = np.zeros_like(errors, dtype=bool)
    cases = []
    for i, case in enumerate(common):
        truth, pred = truth_lm[case].reordered(names), pred_lm[case].reordered(names)
        errors[i] = radial_errors(pred, truth)
        no_truth[i] = truth.is_missing()
        no_pred[i] = pred.is_missing() & ~no_truth[i]
        cases.append({"case": case, "prediction": str(preds[case]), "truth": str(truths[case]),
                      "errors_mm": {n: float(e) for n, e in zip(names, errors[i])},
                      "missing_prediction": [n for n, m in zip(names, no_pred[i]) if m],
                      "missing_truth": [n for n, m in zip(names, no_truth[i]) if m],
                      "extra_predicted": [n for n in pred_lm[case].names if n not in names]})
    summary = landmark_metrics(errors, names, thresholds)
    summary["overall"].update(n_missing_prediction=int(no_pred.sum()), n_missing_truth=int(no_truth.sum()))
    for j, name in enumerate(names):
        summary["landmarks"][name].update(n_missing_prediction=int(no_pred[:, j].sum()),
                                          n_missing_truth=int(no_truth[:, j].sum()))
    return {"names": names, "cases": cases, "summary": summary,
            "missing_predictions": sorted(set(truths) - set(preds)),
            "unlabeled_predictions": sorted(set(preds) - set(truths)),
            "pred_dir": str(pred_dir), "truth_dir": str(truth_dir)}


def write_report(results: dict, json_path: str | Path, csv_path: str | Path | None = None,
                 overwrite: bool = True) -> None:
    """Write :func:`evaluate_landmarks` results (or any dict with a ``"summary"`` from
    :func:`landmark_metrics`).

    - JSON: everything, NaN as null.
    - CSV (optional): the summary table, one row per landmark and a last row ``ALL``:
      ``landmark,n_evaluated,n_missing,mre_mm,sd_mm,sdr_2mm_percent,...`` (empty cells
      for NaN), ready for a spreadsheet or a paper.

    Files are written atomically; ``overwrite=False`` refuses to replace an existing file.
    """
    _atomic_write(json_path, json.dumps(jsonable(results), indent=2) + "\n", overwrite)
    if csv_path is None:
        return
    summary = results["summary"]
    thresholds = list(summary["overall"]["sdr_percent"])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["landmark", "n_evaluated", "n_missing", "mre_mm", "sd_mm"]
                    + [f"sdr_{t}mm_percent" for t in thresholds])
    number = lambda v: "" if v is None or not math.isfinite(v) else f"{v:.4f}"  # noqa: E731
    rows = list(summary["landmarks"].items()) + [("ALL", summary["overall"])]
    for name, s in rows:
        writer.writerow([name, s["n_evaluated"], s["n_missing"], number(s["mre_mm"]), number(s["sd_mm"])]
                        + [number(s["sdr_percent"][t]) for t in thresholds])
    _atomic_write(csv_path, buf.getvalue(), overwrite)
