"""Generate phantoms, pretrain, sample, fine-tune (segmentation and landmarks), predict, evaluate.

Every step goes through the same functions the ``diffusionseg`` subcommands call, so
the demo is also an end-to-end check of the command line's machinery.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ..diffusion.draw import sample_model
from ..errors import UserError
from ..evaluation.landmarks import evaluate_landmarks
from ..evaluation.landmarks import write_report as write_landmark_report
from ..evaluation.segmentation import evaluate_segmentations, write_report
from ..finetune.run import FinetuneOptions, finetune
from ..predict.run import PredictOptions, predict
from ..pretrain.run import PretrainOptions, pretrain
from ..sample_data import generate_sample_dataset
from ..atomic import write_json_atomic
from ..training.guard import CommandGuard
from ..training.progress import Reporter
from .options import DemoOptions  # noqa: F401  (stated there, torch-free; imported from here too)

MARKER = "demo.json"


def _prepare(out: Path) -> None:
    """Replace an earlier demo's output (safe to run twice); never touch anything else."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise UserError("the folder exists, is not empty and is not an earlier demo's output.", path=out,
                            fix="choose another folder for the demo.")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / MARKER, {"status": "running"})


def _subset(cases: list[str], src: Path, dst: Path, suffix: str) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for case in cases:
        shutil.copy2(src / f"{case}{suffix}", dst / f"{case}{suffix}")
    return dst


def run_demo(opts: DemoOptions) -> dict:
    """Run every step on generated data in ``opts.out``; returns the summary written to ``demo.json``."""
    out = Path(opts.out)
    with CommandGuard(Reporter("demo", opts.progress), out):
        return _run(opts, out)


def _run(opts: DemoOptions, out: Path) -> dict:
    _prepare(out)
    t0 = time.monotonic()
    common = dict(device=opts.device, progress=opts.progress)
    project = generate_sample_dataset(out / "data", dims=2, n_cases=opts.cases, size=(opts.size, opts.size),
                                      seed=opts.seed)
    data = out / "data"
    cases = sorted(p.name[: -len(".nrrd")] for p in (data / "images").glob("*.nrrd"))
    train, test = cases[: opts.labeled], cases[len(cases) // 2:]
    # Fine-tuning sees only the first few annotations; prediction runs on the other half.
    seg_labels = _subset(train, data / "labels", out / "work" / "labels-few", ".nrrd")
    landmark_labels = _subset(train, data / "landmarks", out / "work" / "landmarks-few", ".mrk.json")
    test_images = _subset(test, data / "images", out / "work" / "test-images", ".nrrd")

    pretrained = out / "models" / "pretrained"
    pre = pretrain(PretrainOptions(images=data / "images", out=pretrained, preset="tiny",
                                   image_size=[opts.size, opts.size], iterations=opts.pretrain_iterations,
                                   batch_size=8, learning_rate=1e-3, checkpoint_every=opts.pretrain_iterations,
                                   seed=opts.seed, **common))
    sample_model(pretrained, out / "samples", count=16, steps=50, seed=opts.seed, **common)

    seg_model, lmk_model = out / "models" / "segmentation", out / "models" / "landmarks"
    finetune(FinetuneOptions(task="segmentation", images=data / "images", annotations=seg_labels, out=seg_model,
                             pretrained=pretrained, classes=project.classes, iterations=opts.finetune_iterations,
                             checkpoint_every=opts.finetune_iterations, seed=opts.seed, **common))
    finetune(FinetuneOptions(task="landmarks", images=data / "images", annotations=landmark_labels, out=lmk_model,
                             pretrained=pretrained, iterations=opts.finetune_iterations,
                             checkpoint_every=opts.finetune_iterations, seed=opts.seed, **common))
    seg_pred, lmk_pred = out / "predictions" / "segmentation", out / "predictions" / "landmarks"
    predict(PredictOptions(model=seg_model, images=test_images, out=seg_pred, overlay=True, **common))
    predict(PredictOptions(model=lmk_model, images=test_images, out=lmk_pred, overlay=True, **common))

    seg_results = evaluate_segmentations(seg_pred, data / "labels", project.classes)
    # Reports go beside the predictions, not among them (a report is not a prediction).
    write_report(seg_results, out / "evaluation" / "segmentation.json", out / "evaluation" / "segmentation.csv")
    lmk_results = evaluate_landmarks(lmk_pred, data / "landmarks")
    write_landmark_report(lmk_results, out / "evaluation" / "landmarks.json", out / "evaluation" / "landmarks.csv")
    overall = lmk_results["summary"]["overall"]
    summary = {
        "status": "done",
        "seconds": round(time.monotonic() - t0, 1),
        "cases": len(cases), "labeled_for_finetuning": len(train), "test_cases": len(test),
        "pretrain": {k: pre[k] for k in ("steps", "seconds", "images_per_s", "final_loss")},
        "segmentation": {"mean_dice": seg_results["summary"]["mean_dice"], "mIoU": seg_results["summary"]["mIoU"]},
        "landmarks": {"mre_mm": overall["mre_mm"], "sdr_percent": overall["sdr_percent"]},
    }
    write_json_atomic(out / MARKER, summary)
    (out / "README.txt").write_text(README.format(**{k: json.dumps(v) for k, v in summary.items()}))
    return summary


README = """DiffusionSeg demo output
========================

data/                     generated chest-radiograph phantoms (images/, labels/, landmarks/, project.json)
models/pretrained/        the diffusion U-Net pretrained on all images without labels
                          (runs/*/loss.png is its loss curve)
samples/samples.png       images drawn from the pretrained model: do they look like the phantoms?
models/segmentation/      fine-tuned on {labeled_for_finetuning} labeled cases
models/landmarks/         fine-tuned on the same cases' landmarks
predictions/segmentation/ <case>.seg.nrrd (open in 3D Slicer with the image from data/images),
                          <case>_overlay.png to look at
predictions/landmarks/    <case>.mrk.json (Slicer markups), <case>.csv, <case>_overlay.png
evaluation/               segmentation.json/.csv (Dice, IoU, HD95 per class and case),
                          landmarks.json/.csv (radial errors, MRE, SDR)

Results on {test_cases} test cases: segmentation {segmentation}; landmarks {landmarks}.
Wall time {seconds} s.
"""
