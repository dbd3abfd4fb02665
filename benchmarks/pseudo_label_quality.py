"""Does a pseudo-label's confidence tell how good it is? (issue 17: the confidence filter of
``synthesize`` and ``selftrain``).

Reads a pseudo-label folder that ``selftrain`` (or ``synthesize`` on real images) wrote
(``labels/`` and ``rejected/labels/`` beside ``pseudo.json``), scores every pseudo-label against the
dataset's reference labels with the product's ``evaluate_segmentations``, and reports, for every
confidence measure ``pseudo.json`` records, its Spearman rank correlation with the pseudo-label's
IoU and the mean IoU of the cases each threshold of that measure would keep. A measure that does
not rank good labels above bad ones cannot filter them, whatever its threshold.

    python benchmarks/pseudo_label_quality.py --pseudo DIR --labels ../shared/data/jsrt-256/labels \
        --classes right_lung left_lung heart --out benchmarks/results/jsrt_protocol/pseudo_quality_n1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import beside, provenance  # noqa: E402
from DiffusionSegLib.evaluation.segmentation import evaluate_segmentations  # noqa: E402

#: The per-case numbers of pseudo.json that are confidences (higher: surer) or uncertainties (lower: surer).
MEASURES = {"foreground_confidence": +1, "image_confidence": +1, "uncertain_fraction": -1}
KEEP_FRACTIONS = (1.0, 0.75, 0.5, 0.25)


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (ties get their order of appearance: the measures are continuous)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def quality(pseudo: Path, labels: Path, classes: list[str]) -> dict:
    """Per-case IoU of every pseudo-label (kept and rejected) against ``labels``, and how each measure ranks them."""
    rows = {r["case"]: r for r in json.loads((pseudo / "pseudo.json").read_text())["cases"]}
    scored = {}
    for folder in (pseudo / "labels", pseudo / "rejected" / "labels"):
        if folder.is_dir() and any(folder.iterdir()):
            for case in evaluate_segmentations(folder, labels, classes)["cases"]:
                scored[case["case"]] = float(np.nanmean([c["iou"] for c in case["classes"].values()]))
    cases = sorted(set(scored) & set(rows))
    iou = [scored[c] for c in cases]
    measures = {}
    for name, sign in MEASURES.items():
        values = [sign * rows[c][name] for c in cases]   # higher: surer, for every measure
        order = np.argsort(values)[::-1]
        keep = {f"{f:g}": round(100 * float(np.mean([iou[i] for i in order[:max(1, round(f * len(cases)))]])), 2)
                for f in KEEP_FRACTIONS}
        measures[name] = {"spearman_with_iou": round(spearman(values, iou), 3), "mIoU_of_the_surest_fraction": keep}
    worst = sorted(zip(iou, cases))[:5]
    return {"pseudo": str(pseudo), "cases": len(cases), "kept_by_the_run": sum(rows[c]["kept"] for c in cases),
            "min_confidence": json.loads((pseudo / "pseudo.json").read_text())["min_confidence"],
            "mIoU_all": round(100 * float(np.mean(iou)), 2), "mIoU_min": round(100 * min(iou), 2),
            "worst_cases": [{"case": c, "mIoU": round(100 * v, 2), **{m: rows[c][m] for m in MEASURES}}
                            for v, c in worst],
            "measures": measures, "per_case": [{"case": c, "mIoU": round(100 * scored[c], 2),
                                               **{m: rows[c][m] for m in MEASURES}} for c in cases]}


def table(result: dict) -> str:
    lines = [f"{result['cases']} pseudo-labels, mean mIoU {result['mIoU_all']:.1f} % (worst {result['mIoU_min']:.1f}); "
             f"the run kept {result['kept_by_the_run']} at min_confidence {result['min_confidence']:g}.", "",
             "| measure | Spearman with IoU | " + " | ".join(f"mIoU of the surest {100 * f:g} %" for f in KEEP_FRACTIONS)
             + " |", "|---|---|" + "---|" * len(KEEP_FRACTIONS)]
    for name, m in result["measures"].items():
        lines.append(f"| {name} | {m['spearman_with_iou']:+.2f} | " +
                     " | ".join(f"{v:.1f}" for v in m["mIoU_of_the_surest_fraction"].values()) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pseudo", type=Path, required=True, help="a pseudo-label folder (with pseudo.json)")
    p.add_argument("--labels", type=Path, required=True, help="the reference labels of the same cases")
    p.add_argument("--classes", nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True, help="results prefix: .json and .md are written")
    args = p.parse_args()
    result = {"command": " ".join(["python", *sys.argv]), "provenance": provenance(),
              **quality(args.pseudo, args.labels, args.classes)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    beside(args.out, ".json").write_text(json.dumps(result, indent=2) + "\n")
    text = table(result)
    beside(args.out, ".md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
