"""From per-subset scores to the curve's result: fit, the predictions at N, N+1, N+5 with their
bands, one sentence for a person, and the files (``curve.json``, ``curve.csv``, ``curve.png``)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..atomic import write_atomic, write_json_atomic
from .fit import C_PRIOR, C_PRIOR_RANGE, FORM, INTERVAL, REPLICATES, band, bootstrap, fit_curve
from .plot import CurvePicture, write_plot

FORMAT, VERSION = "diffusionseg-curve", 1
JSON_NAME, CSV_NAME, PNG_NAME = "curve.json", "curve.csv", "curve.png"
ADDED = (("now", 0), ("one_more", 1), ("five_more", 5))

#: The metrics a curve can be drawn for; ``scale`` turns a score into the unit the sentence speaks of.
METRICS = {
    "dice": {"key": "mean_dice", "label": "mean Dice", "higher_is_better": True, "best": 1.0, "scale": 100.0,
             "unit": "Dice points", "task": "segmentation"},
    "iou": {"key": "mean_iou", "label": "mean IoU", "higher_is_better": True, "best": 1.0, "scale": 100.0,
            "unit": "IoU points", "task": "segmentation"},
    "mre": {"key": "mre_mm", "label": "MRE (mm)", "higher_is_better": False, "best": 0.0, "scale": 1.0,
            "unit": "mm MRE", "task": "landmarks"},
}


def summarize(subsets: list[dict], labeled: int, metric: str, seed: int = 0) -> dict:
    """The curve's result from the scored subsets (dicts with ``n`` and ``score``).

    Returns ``{"metric", "sizes", "fit", "interval", "predictions", "sentence"}`` (see docs/CLI.md).
    """
    info = METRICS[metric]
    n = np.array([s["n"] for s in subsets], dtype=float)
    y = np.array([np.nan if s["score"] is None else s["score"] for s in subsets], dtype=float)
    if not np.isfinite(y).any():
        raise ValueError("no subset could be scored")
    kw = {"higher_is_better": info["higher_is_better"], "best": info["best"]}
    fit = fit_curve(n, y, **kw)
    at = [labeled + k for _, k in ADDED]
    replicates = bootstrap(n, y, at, replicates=REPLICATES, seed=seed, **kw)
    estimates = fit.predict(at)
    predictions = []
    for j, (label, added) in enumerate(ADDED):
        lower, upper = band(replicates[:, j], float(estimates[j]))
        entry = {"label": label, "added": added, "n": at[j], "estimate": float(estimates[j]),
                 "lower": lower, "upper": upper}
        if added:
            gain = float(estimates[j] - estimates[0])
            entry["gain"] = gain
            entry["gain_lower"], entry["gain_upper"] = band(replicates[:, j] - replicates[:, 0], gain)
        predictions.append(entry)
    sizes = []
    for size in sorted(set(int(v) for v in n)):
        scores = [float(v) for v, m in zip(y, n) if m == size and np.isfinite(v)]
        sizes.append({"n": size, "subsets": int((n == size).sum()), "scored": len(scores),
                      "mean": float(np.mean(scores)) if scores else None,
                      "sd": float(np.std(scores)) if scores else None, "scores": scores})
    assumed = {}
    if "c" not in fit.fitted:
        assumed["c"] = {"value": C_PRIOR, "bootstrap_range": list(C_PRIOR_RANGE)}
    if "a" not in fit.fitted:
        assumed["a"] = {"value": info["best"], "why": "one subset size only: the curve saturates at the best score"}
    fit_dict = {**fit.to_dict(), "assumed": assumed}
    interval = {"level": INTERVAL, "method": "stratified bootstrap over the per-subset scores (resampled within "
                "each size), curve refitted per replicate" + (", exponent drawn log-uniformly from "
                f"{C_PRIOR_RANGE[0]:g}..{C_PRIOR_RANGE[1]:g}" if "c" in assumed else ""), "replicates": REPLICATES,
                "seed": seed}
    return {"metric": {"name": metric, "key": info["key"], "label": info["label"],
                       "higher_is_better": info["higher_is_better"], "best": info["best"], "unit": info["unit"],
                       "scale": info["scale"]},
            "sizes": sizes, "fit": fit_dict, "interval": interval, "predictions": predictions,
            "sentence": sentence(predictions, labeled, metric, fit.sizes),
            "_bootstrap": (fit, n, y, replicates)}


def sentence(predictions: list[dict], labeled: int, metric: str, sizes: int) -> str:
    """One line for a person, e.g. "One more annotation: +1.2 Dice points expected (0.4 to 2.0); ..."."""
    info = METRICS[metric]
    k = info["scale"]
    now, one, five = predictions
    text = (f"One more annotation: {k * one['gain']:+.1f} {info['unit']} expected ({k * one['gain_lower']:+.1f} "
            f"to {k * one['gain_upper']:+.1f}); five more: {k * five['gain']:+.1f} ({k * five['gain_lower']:+.1f} to "
            f"{k * five['gain_upper']:+.1f}). Now, with {labeled} labeled cases: {info['label']} "
            f"{k * now['estimate']:.1f} ({k * now['lower']:.1f} to {k * now['upper']:.1f}). "
            f"Ranges: {round(100 * INTERVAL)}% bootstrap.")
    if not info["higher_is_better"]:
        text += " Lower MRE is better."
    if sizes < 3:
        text += (" Only one subset size could be scored, so the curve's shape is assumed, not measured."
                 if sizes == 1 else " Only two subset sizes were scored, so the curve's exponent is assumed.")
    return text


def picture(result: dict, labeled: int) -> CurvePicture:
    fit, n, y, _ = result["_bootstrap"]
    grid = np.linspace(1.0, labeled + 5.0, 120)
    kw = {"higher_is_better": fit.higher_is_better, "best": fit.best}
    reps = bootstrap(n, y, grid, replicates=200, seed=result["interval"]["seed"], **kw)
    curve = fit.predict(grid)
    lo, hi = np.percentile(reps, [50 * (1 - INTERVAL), 50 * (1 + INTERVAL)], axis=0)
    marks = [{**p, "label": {"now": f"N={p['n']}", "one_more": "+1", "five_more": "+5"}[p["label"]]}
             for p in result["predictions"]]
    return CurvePicture(n=n, scores=y, grid=grid, curve=curve, lower=np.minimum(lo, curve),
                        upper=np.maximum(hi, curve), marks=marks, labeled=labeled,
                        metric_label=result["metric"]["label"],
                        title=f"{FORM}: a={fit.a:.3g}, b={fit.b:.3g}, c={fit.c:.3g}")


def write_csv(path: Path, subsets: list[dict], metric_keys: list[str]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["n", "fold", "score", *metric_keys, "train", "test", "seconds"])
            for s in subsets:
                w.writerow([s["n"], s["fold"], _number(s["score"]), *(_number(s.get(k)) for k in metric_keys),
                            ";".join(s["train"]), ";".join(s["test"]), s["seconds"]])

    write_atomic(path, write)


def _number(value) -> str:
    return "" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.6g}"


def write_outputs(folder: Path, result: dict, subsets: list[dict], metric_keys: list[str], labeled: int) -> None:
    """``curve.json`` (``result`` without its private fields), ``curve.csv`` and ``curve.png`` in ``folder``."""
    write_csv(folder / CSV_NAME, subsets, metric_keys)
    write_plot(folder / PNG_NAME, picture(result, labeled))
    write_json_atomic(folder / JSON_NAME, {k: v for k, v in result.items() if not k.startswith("_")})
