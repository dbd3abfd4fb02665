"""``diffusionseg curve``: how accuracy grows with the number of labeled cases, from the user's own cases.

For each planned subset (see :mod:`.plan`) the pretrained model is fine-tuned in-process
with ``finetune``'s own function on the subset's cases (a short schedule), and scored with
the project's metrics on the labeled cases left out. The scores are fitted with a
saturating curve (:mod:`.fit`) that predicts the accuracy with all N cases, with N+1 and
with N+5 (:mod:`.report`). Everything is written in a hidden sibling of ``--out`` and
renamed onto it when complete; the subset models are deleted as soon as they are scored.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..evaluation import landmark_metrics, radial_errors, segmentation_metrics
from ..finetune.cases import LANDMARK_SUFFIXES, SEGMENTATION_SUFFIXES, Case, labeled_cases
from ..finetune.run import FinetuneOptions, _landmark_task, _segmentation_task, finetune
from ..imageio import read_image
from ..labels.reading import load_segmentation
from ..landmarks import read_landmarks
from ..predict.engine import load_task_model
from ..predict.run import predict_landmarks, predict_segmentation
from ..training.guard import CommandGuard
from ..training.outputs import check_output_folder, staged_folder
from ..training.progress import Reporter
from .plan import check_labeled, check_sizes, default_sizes, plan_subsets
from .options import CurveOptions  # noqa: F401  (stated there, torch-free; imported from here too)
from .report import CSV_NAME, FORMAT, JSON_NAME, PNG_NAME, VERSION, summarize, write_outputs


def _metric(opts: CurveOptions) -> str:
    if opts.task == "landmarks":
        if opts.metric not in (None, "mre"):
            raise UserError(f"--metric {opts.metric} is a segmentation metric.", fix="leave --metric out (MRE).")
        return "mre"
    if opts.metric not in (None, "dice", "iou"):
        raise UserError(f"--metric {opts.metric} is not a segmentation metric.", fix="pass --metric dice or iou.")
    return opts.metric or "dice"


def score_segmentation(model_dir: Path, test: list[Case], classes: list[str], device: str, precision: str) -> dict:
    """Mean Dice and IoU over classes (each class averaged over the cases first, as ``evaluate`` does)."""
    model = load_task_model(model_dir, device, precision)
    rows = []
    for case in test:
        image = read_image(case.image)
        truth = load_segmentation(case.annotation, classes, image, reference_path=case.image, allow_empty=True)
        rows.append(segmentation_metrics(predict_segmentation(model, image), truth.labelmap, classes)["classes"])
    result = {}
    for key, name in (("dice", "mean_dice"), ("iou", "mean_iou")):
        per_class = [np.nanmean([r[c][key] for r in rows]) if any(np.isfinite(r[c][key]) for r in rows) else np.nan
                     for c in classes]
        finite = [v for v in per_class if np.isfinite(v)]
        result[name] = float(np.mean(finite)) if finite else None
    return result


def score_landmarks(model_dir: Path, test: list[Case], names: list[str], device: str, precision: str) -> dict:
    """MRE (mm) over every (case, landmark) pair, as ``evaluate`` pools them."""
    model = load_task_model(model_dir, device, precision)
    errors = np.array([radial_errors(predict_landmarks(model, read_image(case.image)),
                                     read_landmarks(case.annotation).reordered(names)) for case in test])
    mre = landmark_metrics(errors, names)["overall"]["mre_mm"]
    return {"mre_mm": None if not np.isfinite(mre) else float(mre)}


def curve(opts: CurveOptions) -> dict:
    """Fine-tune on subsets, score, fit, and write ``curve.json``, ``curve.csv``, ``curve.png`` into ``opts.out``."""
    out = Path(opts.out).absolute()  # the events name absolute paths
    reporter = Reporter("curve", opts.progress)
    with CommandGuard(reporter, out):
        metric = _metric(opts)
        suffixes = SEGMENTATION_SUFFIXES if opts.task == "segmentation" else LANDMARK_SUFFIXES
        cases = labeled_cases(opts.images, opts.annotations, suffixes)
        check_labeled(len(cases), opts.annotations)
        if opts.folds < 1 or opts.iterations < 1:
            raise UserError("--folds and --iterations must be 1 or more.", fix="pass positive whole numbers.")
        sizes = check_sizes(list(opts.sizes), len(cases)) if opts.sizes else default_sizes(len(cases))
        check_output_folder(out)
        result, finetunings = _run(opts, out, metric, cases, sizes, reporter)
    reporter.events_path = out / "events.jsonl"
    for name in (JSON_NAME, CSV_NAME, PNG_NAME):
        reporter.emit("output", path=str(out / name))
    reporter.done(out=str(out), json=str(out / JSON_NAME), png=str(out / PNG_NAME), csv=str(out / CSV_NAME),
                  sentence=result["sentence"], predictions=result["predictions"], finetunings=finetunings)
    return {k: v for k, v in result.items() if not k.startswith("_")}


def _run(opts: CurveOptions, out: Path, metric: str, cases: list[Case], sizes: list[int],
         reporter: Reporter) -> tuple[dict, int]:
    """Fine-tune and score every planned subset, in the hidden sibling of ``out`` that becomes ``out``."""
    by_name = {c.name: c for c in cases}
    base = FinetuneOptions(task=opts.task, images=opts.images, annotations=opts.annotations, out=out,
                           pretrained=opts.pretrained, classes=opts.classes, landmark_names=opts.landmark_names,
                           iterations=opts.iterations, batch_size=opts.batch_size, learning_rate=opts.learning_rate,
                           checkpoint_every=opts.iterations, seed=opts.seed, device=opts.device,
                           precision=opts.precision, progress="none")
    # One list of classes (landmarks) for every subset, chosen from all the labeled cases as finetune would.
    if opts.task == "segmentation":
        base.classes = _segmentation_task(base, cases).classes
    else:
        base.landmark_names = _landmark_task(base, cases, 1.0).names
    plan = plan_subsets(list(by_name), sizes, opts.folds, opts.seed)
    t0 = time.monotonic()
    with staged_folder(out) as tmp:
        reporter.attach(tmp / "events.jsonl")
        reporter.start(len(plan), out=str(out), labeled=len(cases), sizes=sizes, finetunings=len(plan))
        reporter.log(f"curve: {len(plan)} fine-tuning(s) of {opts.iterations} iterations on subsets of "
                     f"{', '.join(map(str, sizes))} of the {len(cases)} labeled cases")
        rows = []
        for i, subset in enumerate(plan):
            started = time.monotonic()
            work = tmp / "work" / f"n{subset.n}_fold{subset.fold}"
            annotations = work / "annotations"
            annotations.mkdir(parents=True)
            for name in subset.train:
                shutil.copy2(by_name[name].annotation, annotations / by_name[name].annotation.name)
            finetune(FinetuneOptions(**{**base.__dict__, "annotations": annotations, "out": work / "model"}))
            test = [by_name[name] for name in subset.test]
            if opts.task == "segmentation":
                scores = score_segmentation(work / "model", test, base.classes, opts.device, opts.precision)
            else:
                scores = score_landmarks(work / "model", test, base.landmark_names, opts.device, opts.precision)
            shutil.rmtree(work)
            row = {"n": subset.n, "fold": subset.fold, "score": scores[_key(metric)], **scores,
                   "train": subset.train, "test": subset.test, "seconds": round(time.monotonic() - started, 1)}
            rows.append(row)
            reporter.log(f"n={subset.n} fold {subset.fold}: {_key(metric)} {row['score']} on {len(test)} held-out")
            reporter.progress(i + 1, len(plan), n=subset.n, score=row["score"])
        shutil.rmtree(tmp / "work", ignore_errors=True)
        if all(r["score"] is None for r in rows):
            raise UserError("no held-out case could be scored (every class absent from prediction and label).",
                            path=opts.annotations, fix="check that the labels contain the classes.")
        result = {"format": FORMAT, "version": VERSION, "command": opts.command, "task": opts.task,
                  "pretrained": str(opts.pretrained), "images": str(opts.images),
                  "annotations": str(opts.annotations), "labeled": len(cases), "cases": sorted(by_name),
                  "settings": {"sizes": sizes, "folds": opts.folds, "iterations": opts.iterations,
                               "batch_size": opts.batch_size, "learning_rate": opts.learning_rate,
                               "seed": opts.seed, "finetunings": len(plan),
                               **({"classes": base.classes} if opts.task == "segmentation"
                                  else {"landmarks": base.landmark_names})},
                  **summarize(rows, len(cases), metric, opts.seed), "subsets": rows,
                  "files": {"json": JSON_NAME, "csv": CSV_NAME, "png": PNG_NAME},
                  "seconds": round(time.monotonic() - t0, 1)}
        keys = ["mean_dice", "mean_iou"] if opts.task == "segmentation" else ["mre_mm"]
        write_outputs(tmp, result, rows, keys, len(cases))
    return result, len(plan)


def _key(metric: str) -> str:
    return {"dice": "mean_dice", "iou": "mean_iou", "mre": "mre_mm"}[metric]
