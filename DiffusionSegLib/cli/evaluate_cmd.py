"""``diffusionseg evaluate``: compare predictions with reference annotations."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import RuntimeOptions, add_progress_option


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="score predictions against reference annotations",
                              description="Segmentation: per-class Dice, IoU, HD95 (mm), mIoU. Landmarks: MRE and "
                                          "SD (mm) per landmark and overall, SDR at 2, 2.5, 3, 4 mm.")
    p.add_argument("--pred", type=Path, required=True, help="folder of predictions")
    p.add_argument("--labels", type=Path, help="reference segmentations (.seg.nrrd or label maps)")
    p.add_argument("--landmarks", type=Path, help="reference landmarks (.mrk.json, .fcsv, CSV)")
    p.add_argument("--classes", help="class names for label maps, comma-separated")
    p.add_argument("--images", type=Path, help="segmentation: the images, to check geometry against")
    p.add_argument("--out", type=Path, help="report file (.json; a .csv is written beside it)")
    add_progress_option(p, RuntimeOptions)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..atomic import jsonable
    from ..training.guard import CommandGuard
    from ..training.progress import Reporter

    reporter = Reporter("evaluate", args.progress)
    with CommandGuard(reporter):  # the error event; the report files are written atomically
        result = evaluate(args)
    # NaN (e.g. HD95 of a structure absent from both) is written as null: stdout stays valid JSON.
    if args.progress == "json":
        reporter.done(**jsonable(result))
    else:
        print(json.dumps(jsonable(result), indent=2, default=str))
    return 0


def evaluate(args: argparse.Namespace) -> dict:
    """Score, write the report when ``--out`` is given; returns ``{"summary", "headline"}``."""
    from ..errors import UserError

    if (args.labels is None) == (args.landmarks is None):
        raise UserError("evaluate needs exactly one of --labels and --landmarks.",
                        fix="pass --labels DIR for segmentations or --landmarks DIR for landmarks.")
    if args.labels is not None:
        from ..evaluation.segmentation import evaluate_segmentations, write_report

        classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
        results = evaluate_segmentations(args.pred, args.labels, classes, images_dir=args.images)
        headline = {k: results["summary"][k] for k in ("n_cases", "mean_dice", "mIoU", "mean_hd95_mm")}
    else:
        from ..evaluation.landmarks import evaluate_landmarks, write_report

        results = evaluate_landmarks(args.pred, args.landmarks)
        overall = results["summary"]["overall"]
        headline = {"n_cases": results["summary"].get("n_cases"), "mre_mm": overall["mre_mm"],
                    "sd_mm": overall["sd_mm"], "sdr_percent": overall["sdr_percent"]}
    if args.out is not None:
        write_report(results, args.out, args.out.with_suffix(".csv"))
    return {"summary": results["summary"], "headline": headline}
