"""``diffusionseg predict``: run a fine-tuned model on images and write results Slicer opens."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..atomic import write_json_atomic
from ..errors import UserError
from ..imageio import list_images, read_image
from ..labels import write_labelmap, write_overlay_png, write_seg_nrrd
from ..landmarks import LOW_CONFIDENCE, Landmarks, index_to_physical, write_csv, write_mrk_json
from ..landmarks.heatmaps import decode_heatmaps, sigma_mm_to_px
from ..landmarks.overlay import write_landmark_overlay_png
from ..vocabulary import LANDMARK_FILE_SUFFIX, PREDICTION_LABELMAP_FORMATS, SEGMENTATION_FILE_SUFFIX, case_name
from ..vocabulary import PREDICTION_CONFIDENCE_FILE as CONFIDENCE_FILE
from ..imageio.verify import verify_images
from ..training.guard import CommandGuard
from ..training.progress import Reporter
from .argmax import StreamedLabelMap, geometry_of
from .confidence import ConfidenceTally, landmark_confidence
from .engine import LoadedModel, load_task_model, network_output, output_slabs
from .defaults import DEFAULT_OVERLAP, MAX_WINDOW_VOXELS
from .options import PredictOptions  # noqa: F401  (stated there, torch-free; imported from here too)

LABELMAP_FORMATS = PREDICTION_LABELMAP_FORMATS


def predict_segmentation(model: LoadedModel, image: sitk.Image, overlap: float = DEFAULT_OVERLAP,
                         max_window_voxels: int | None = None) -> sitk.Image:
    """The label map (uint8, 0 = background) of ``image``, on ``image``'s own grid."""
    return segment(model, image, overlap, max_window_voxels)[0]


def segment(model: LoadedModel, image: sitk.Image, overlap: float = DEFAULT_OVERLAP,
            max_window_voxels: int | None = None) -> tuple[sitk.Image, dict]:
    """The label map of ``image`` on its own grid, and how confident it is (predict/confidence.py).

    Each finished slab of network output becomes class probabilities at once (softmax),
    tallied for the confidence and kept in float16 (precise to 5e-4, far below what moves
    an arg-max that matters) only until the output rows it reaches are written
    (predict/argmax.py: StreamedLabelMap). Confidence is measured on the network grid, where
    the probabilities are the network's own; the labels come from the probabilities
    resampled to the image.
    """
    prep = model.preprocessing
    grid = prep.resample(image)
    shape = tuple(reversed(grid.GetSize()))
    slabs = output_slabs(model, prep.network_input(grid), overlap, max_window_voxels=max_window_voxels)
    grid = geometry_of(grid)   # why: its pixels (a second copy of the image) are not needed again
    labels = None   # the label map, written block by block as the slabs of probabilities arrive
    tally = ConfidenceTally(list(model.config.task.classes))
    for row, slab in slabs:
        p = slab.softmax(0)
        tally.add(p)
        if labels is None:
            labels = StreamedLabelMap(grid, (p.shape[0], *shape), image)
        labels.add(row, p.numpy().astype(np.float16))
    return labels.result(), tally.result()


def predict_landmarks(model: LoadedModel, image: sitk.Image, min_confidence: float = 0.3,
                      overlap: float = DEFAULT_OVERLAP, max_window_voxels: int | None = None
                      ) -> Landmarks:
    """Landmarks of ``image`` in its physical space (LPS mm), each with a confidence.

    Confidence is the spatial-softmax probability mass near the peak (see
    ``decode_heatmaps``); points below ``min_confidence`` are flagged, never dropped.
    """
    prep = model.preprocessing
    task = model.config.task
    grid = prep.resample(image)
    logits = torch.from_numpy(network_output(model, prep.network_input(grid), overlap,
                                             max_window_voxels=max_window_voxels))[None]
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
    check_window_options(opts)
    model = load_task_model(opts.model, opts.device, opts.precision, opts.fast)
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


def check_window_options(opts: PredictOptions) -> None:
    """One clear message for an overlap or window size that cannot be slid."""
    if not 0 <= opts.overlap < 1:
        raise UserError(f"--overlap {opts.overlap} is not a fraction of the window in [0, 1).",
                        fix=f"use e.g. --overlap {DEFAULT_OVERLAP} (0: windows only touch).")
    if opts.max_window_voxels is not None and opts.max_window_voxels < 1:
        raise UserError(f"--window-voxels {opts.max_window_voxels} is not a number of voxels.",
                        fix=f"use 0 for the training patch, or e.g. --window-voxels {MAX_WINDOW_VOXELS}.")


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
            labelmap, confidence = segment(model, image, opts.overlap, opts.max_window_voxels)
            files = [write_seg_nrrd(labelmap, out / f"{case}{SEGMENTATION_FILE_SUFFIX}", task.classes,
                                    task.colors)]
            files += [write_labelmap(labelmap, out / f"{case}.{fmt}", n_classes=len(task.classes))
                      for fmt in opts.formats]
            if opts.overlay:
                files.append(write_overlay_png(image, labelmap, task.colors, out / f"{case}_overlay.png"))
        else:
            landmarks = predict_landmarks(model, image, opts.min_confidence, opts.overlap, opts.max_window_voxels)
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
