"""``diffusionseg predict``: run a fine-tuned model on images and write results Slicer opens."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..atomic import write_json_atomic
from ..errors import UserError
from ..imageio import list_images, read_image, resample_like
from ..labels import write_labelmap, write_overlay_png, write_seg_nrrd
from ..landmarks import LOW_CONFIDENCE, Landmarks, index_to_physical, write_csv, write_mrk_json
from ..landmarks.heatmaps import decode_heatmaps, sigma_mm_to_px
from ..landmarks.overlay import write_landmark_overlay_png
from ..vocabulary import LANDMARK_FILE_SUFFIX, PREDICTION_LABELMAP_FORMATS, SEGMENTATION_FILE_SUFFIX, case_name
from ..vocabulary import PREDICTION_CONFIDENCE_FILE as CONFIDENCE_FILE
from ..imageio.verify import verify_images
from ..training.guard import CommandGuard
from ..training.progress import Reporter
from .confidence import landmark_confidence, segmentation_confidence
from .engine import LoadedModel, load_task_model, network_output, on_grid

LABELMAP_FORMATS = PREDICTION_LABELMAP_FORMATS


@dataclass
class PredictOptions:
    model: Path
    images: Path
    out: Path
    formats: list[str] = field(default_factory=list)   # extra label-map formats besides .seg.nrrd
    overlay: bool = False
    min_confidence: float = 0.3
    overlap: float = 0.5
    device: str = "auto"
    precision: str = "auto"
    progress: str = "bar"


def predict_segmentation(model: LoadedModel, image: sitk.Image, overlap: float = 0.5) -> sitk.Image:
    """The label map (uint8, 0 = background) of ``image``, on ``image``'s own grid."""
    return segment(model, image, overlap)[0]


def segment(model: LoadedModel, image: sitk.Image, overlap: float = 0.5) -> tuple[sitk.Image, dict]:
    """The label map of ``image`` on its own grid, and how confident it is (predict/confidence.py).

    Class probabilities are resampled back to the input grid (linear) before the
    arg-max, which gives smoother boundaries than resampling the labels. Confidence is
    measured on the network grid, where the probabilities are the network's own.
    """
    prep = model.preprocessing
    grid = prep.resample(image)
    logits = network_output(model, prep.network_input(grid), overlap)
    probabilities = torch.from_numpy(logits).float().softmax(0).numpy()  # (C + 1, *S)
    confidence = segmentation_confidence(probabilities, list(model.config.task.classes))
    back = resample_like(on_grid(probabilities, grid), image, "linear")
    labels = sitk.GetArrayFromImage(back).argmax(-1).astype(np.uint8)
    labelmap = sitk.GetImageFromArray(labels)
    labelmap.CopyInformation(image)
    return labelmap, confidence


def predict_landmarks(model: LoadedModel, image: sitk.Image, min_confidence: float = 0.3,
                      overlap: float = 0.5) -> Landmarks:
    """Landmarks of ``image`` in its physical space (LPS mm), each with a confidence.

    Confidence is the spatial-softmax probability mass near the peak (see
    ``decode_heatmaps``); points below ``min_confidence`` are flagged, never dropped.
    """
    prep = model.preprocessing
    task = model.config.task
    grid = prep.resample(image)
    logits = torch.from_numpy(network_output(model, prep.network_input(grid), overlap))[None]
    sigma_px = sigma_mm_to_px(task.sigma_mm, grid.GetSpacing())
    radius = [max(1, math.ceil(2.5 * s)) for s in sigma_px]
    coords, confidence = decode_heatmaps(logits, radius=radius)
    points = index_to_physical(grid, coords[0].numpy().astype(np.float64))
    conf = confidence[0].numpy().astype(np.float64)
    flags = [LOW_CONFIDENCE if c < min_confidence else "" for c in conf]
    return Landmarks(names=list(task.landmarks), points=points, confidence=conf, flags=flags)


def predict(opts: PredictOptions) -> dict:
    """Predict every image of ``opts.images`` (a folder or one file) into ``opts.out``.

    Segmentation: ``<case>.seg.nrrd`` (+ label maps in ``opts.formats``, + ``<case>_overlay.png``).
    Landmarks: ``<case>.mrk.json`` and ``<case>.csv`` (+ ``<case>_overlay.png`` in 2D).
    Every file is written atomically, and existing files are never overwritten.
    """
    out = Path(opts.out)
    reporter = Reporter("predict", opts.progress)
    with CommandGuard(reporter, out):  # one run per output folder; the error event on failure
        bad = [f for f in opts.formats if f not in LABELMAP_FORMATS]
        if bad:
            raise UserError(f"unknown output format(s) {', '.join(bad)}.",
                            fix=f"use --format with {', '.join(LABELMAP_FORMATS)}.")
        return _predict(opts, out, reporter)


def _predict(opts: PredictOptions, out: Path, reporter: Reporter) -> dict:
    model = load_task_model(opts.model, opts.device, opts.precision)
    paths = list_images(opts.images)
    verify_images(paths, model.config.dims, log=reporter.log)
    suffix = SEGMENTATION_FILE_SUFFIX if model.kind == "segmentation" else LANDMARK_FILE_SUFFIX
    clashes = [p for p in paths if (out / f"{case_name(p)}{suffix}").exists()]
    if clashes:
        raise UserError(f"predictions for {len(clashes)} image(s) already exist in the output folder "
                        f"(e.g. {case_name(clashes[0])}).", path=out,
                        fix="choose a new --out; results are never overwritten.")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _predict_all(opts, out, model, paths, reporter)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()  # a failure before the first result leaves no empty folder behind
        raise


def _predict_all(opts: PredictOptions, out: Path, model: LoadedModel, paths: list[Path], reporter: Reporter) -> dict:
    reporter.start(len(paths), out=str(out), model=str(opts.model))
    written: list[str] = []
    confidences: dict[str, dict] = {}
    dims = model.config.dims
    for i, path in enumerate(paths):
        image = read_image(path)
        if image.GetDimension() != dims:
            raise UserError(f"the model is {dims}D but this image is {image.GetDimension()}D.", path=path,
                            fix=f"predict {dims}D images with this model.")
        case = case_name(path)
        if model.kind == "segmentation":
            task = model.config.task
            labelmap, confidence = segment(model, image, opts.overlap)
            files = [write_seg_nrrd(labelmap, out / f"{case}{SEGMENTATION_FILE_SUFFIX}", task.classes,
                                    task.colors)]
            files += [write_labelmap(labelmap, out / f"{case}.{fmt}", n_classes=len(task.classes))
                      for fmt in opts.formats]
            if opts.overlay:
                files.append(write_overlay_png(image, labelmap, task.colors, out / f"{case}_overlay.png"))
        else:
            landmarks = predict_landmarks(model, image, opts.min_confidence, opts.overlap)
            confidence = landmark_confidence(landmarks.names, landmarks.confidence)
            files = [write_mrk_json(landmarks, out / f"{case}{LANDMARK_FILE_SUFFIX}"),
                     write_csv(landmarks, out / f"{case}.csv")]
            if opts.overlay and dims == 2:
                files.append(write_landmark_overlay_png(image, landmarks, out / f"{case}_overlay.png"))
            flagged = [n for n, f in zip(landmarks.names, landmarks.flags) if f]
            if flagged:
                reporter.log(f"{case}: low confidence for {', '.join(flagged)}")
        confidences[case] = confidence
        write_json_atomic(out / CONFIDENCE_FILE, confidences)  # after every case: complete if interrupted
        reporter.emit("output", case=case, path=str(files[0]), confidence=confidence["confidence"])
        written += [str(f) for f in files]
        reporter.progress(i + 1, len(paths))
    summary = {"images": len(paths), "out": str(out), "files": len(written), "kind": model.kind}
    reporter.done(**summary)
    return summary
