"""Segmentation metrics: per-class Dice, IoU and HD95 (mm), per case and over a folder.

Conventions (stated here because papers differ):

- A class empty in both prediction and ground truth scores Dice = IoU = 1 (nothing to
  find, nothing found); empty in only one scores 0.
- HD95 is the 95th percentile Hausdorff distance in millimetres between the boundary
  voxels of the two masks (MONAI's definition: boundary = mask minus its erosion with
  face neighbours; the larger of the two directed 95th percentiles). It is NaN, with a
  note, when either mask is empty, and means over cases skip NaN.
- Means over classes are plain means (mean Dice, mIoU, mean HD95 over defined values).

HD95 uses SimpleITK's exact Euclidean distance map with the image spacing (MONAI's
``compute_hausdorff_distance`` needs scipy, which the backend does not depend on; the
numbers are the same).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..atomic import jsonable, write_text_atomic
from ..errors import UserError
from ..imageio.images import list_images, read_image_info
from ..labels.grid import Grid
from ..labels.reading import class_names_from, is_seg_nrrd, load_segmentation
from ..vocabulary import LABEL_PICTURE_SUFFIXES as PICTURE_SUFFIXES
from ..vocabulary import SEGMENTATION_LABEL_SUFFIXES, case_files, case_map

#: Label files in order of preference when one case has several (as project.py).


# ---------------------------------------------------------------- one pair of masks
def _boundary(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it (outside the array counts as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = np.ones_like(mask)
    for axis in range(mask.ndim):
        for shift in (0, 2):
            index = [slice(1, -1)] * mask.ndim
            index[axis] = slice(shift, shift + mask.shape[axis])
            inner &= padded[tuple(index)]
    return mask & ~inner


def _distances_to(target_boundary: np.ndarray, spacing_xyz: Sequence[float]) -> np.ndarray:
    """Distance in mm from every voxel to the nearest voxel of ``target_boundary``."""
    image = sitk.GetImageFromArray(target_boundary.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in spacing_xyz))
    signed = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False,
                                          useImageSpacing=True)
    # The boundary set is one voxel thin, so its own voxels are at 0 and the rest positive.
    return np.abs(sitk.GetArrayFromImage(signed))


def hd95_mm(pred: np.ndarray, truth: np.ndarray, spacing_xyz: Sequence[float], percentile: float = 95.0) -> float:
    """95th percentile symmetric Hausdorff distance in mm between two non-empty masks.

    Args:
        pred, truth: bool arrays ``(H, W)`` or ``(D, H, W)``.
        spacing_xyz: voxel spacing, ITK order ``(x, y[, z])``.

    Returns:
        ``max(P95(d(pred -> truth)), P95(d(truth -> pred)))``; NaN if a mask is empty.
    """
    if not pred.any() or not truth.any():
        return math.nan
    pred_edge, truth_edge = _boundary(pred), _boundary(truth)
    forward = _distances_to(truth_edge, spacing_xyz)[pred_edge]
    backward = _distances_to(pred_edge, spacing_xyz)[truth_edge]
    return float(max(np.percentile(forward, percentile), np.percentile(backward, percentile)))


def class_metrics(pred: np.ndarray, truth: np.ndarray, spacing_xyz: Sequence[float]) -> dict:
    """Dice, IoU, HD95 (mm) and voxel counts of one class (bool masks, same shape)."""
    n_pred, n_truth = int(pred.sum()), int(truth.sum())
    both = int(np.count_nonzero(pred & truth))
    union = n_pred + n_truth - both
    note = ""
    if union == 0:
        dice = iou = 1.0
        note = "empty in both: Dice 1, HD95 undefined"
    else:
        dice, iou = 2 * both / (n_pred + n_truth), both / union
        if n_pred == 0:
            note = "not predicted: HD95 undefined"
        elif n_truth == 0:
            note = "predicted but absent from the ground truth: HD95 undefined"
    return {"dice": dice, "iou": iou, "hd95_mm": hd95_mm(pred, truth, spacing_xyz),
            "pred_voxels": n_pred, "label_voxels": n_truth, "note": note}


def _nanmean(values) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def segmentation_metrics(pred: sitk.Image, truth: sitk.Image, classes: Sequence[str]) -> dict:
    """Per-class and class-mean metrics of two label maps on the same grid.

    Args:
        pred, truth: label maps (0 background, ``i + 1`` = ``classes[i]``), same size.
        classes: class names.

    Returns:
        ``{"classes": {name: {dice, iou, hd95_mm, pred_voxels, label_voxels, note}},
        "mean_dice", "mean_iou", "mean_hd95_mm"}``.
    """
    if pred.GetSize() != truth.GetSize():
        raise ValueError(f"prediction size {pred.GetSize()} differs from ground truth size {truth.GetSize()}")
    p, t = sitk.GetArrayViewFromImage(pred), sitk.GetArrayViewFromImage(truth)
    spacing = truth.GetSpacing()
    per_class = {name: class_metrics(p == i + 1, t == i + 1, spacing) for i, name in enumerate(classes)}
    return {"classes": per_class,
            "mean_dice": _nanmean(m["dice"] for m in per_class.values()),
            "mean_iou": _nanmean(m["iou"] for m in per_class.values()),
            "mean_hd95_mm": _nanmean(m["hd95_mm"] for m in per_class.values())}


# ---------------------------------------------------------------- folders
def _label_files(folder: Path) -> dict[str, Path]:
    """``{case: file}`` for the label files in ``folder``; the preferred suffix wins when a
    case has several (e.g. ``a.seg.nrrd`` and ``a.png`` written by one prediction run).
    Hidden files and overlay pictures (``*overlay*.png``) are not labels."""
    if not folder.is_dir():
        raise UserError("No such folder.", path=folder, fix="check the path.")
    return case_files(folder, SEGMENTATION_LABEL_SUFFIXES,
                      ignore=lambda name: "overlay" in name and name.endswith(".png"))


def _grid_image(grid: Grid) -> sitk.Image:
    image = sitk.Image([int(s) for s in grid.size], sitk.sitkUInt8)
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    image.SetDirection(grid.direction)
    return image


def _file_grid(path: Path) -> Grid:
    """The voxel grid a label file is stored on (header only); one-slice volumes as 2D."""
    if is_seg_nrrd(path):
        import nrrd  # pynrrd, slicerio's reader: slicerio drops the sizes from the header it returns
        import slicerio

        try:
            sizes = [int(s) for s in nrrd.read_header(str(path))["sizes"]][-3:]  # (layers,) i, j, k
            header = slicerio.read_segmentation(str(path), skip_voxels=True)
        except Exception as err:
            raise UserError(f"Could not read this segmentation's header ({err}).", path=path,
                            fix="save it again from Slicer as .seg.nrrd.") from err
        return Grid.of_ijk_to_lps(sizes, header["ijkToLPS"]).planar()
    info = read_image_info(path)  # already makes a one-slice volume 2D
    return Grid(tuple(info.size), tuple(info.spacing), tuple(info.origin), tuple(info.direction))


def _reference(case: str, pred: Path, truth: Path, images: dict[str, Path] | None) -> tuple[sitk.Image, Path]:
    """The grid both labels must lie on: the case's image if given, else the prediction's
    (predictions are written on their image's grid), else (a PNG prediction) the truth's."""
    if images is not None:
        if case not in images:
            raise UserError(f"No image for case {case!r}.", path=truth, fix="add the image, or leave out the images folder.")
        return _grid_image(_file_grid(images[case])), images[case]
    source = truth if pred.name.lower().endswith(PICTURE_SUFFIXES) and not truth.name.lower().endswith(
        PICTURE_SUFFIXES) else pred
    return _grid_image(_file_grid(source)), source


def _default_classes(preds: dict[str, Path], truths: dict[str, Path]) -> list[str]:
    """Class names from the first ground-truth (else prediction) .seg.nrrd; else label_1..label_N."""
    for files in (truths, preds):
        for path in files.values():
            if is_seg_nrrd(path):
                return class_names_from(path)[0]
    top = 0
    for path in list(truths.values()) + list(preds.values()):
        top = max(top, int(sitk.GetArrayViewFromImage(sitk.ReadImage(str(path))).max()))
    return [f"label_{v}" for v in range(1, top + 1)]


def evaluate_segmentations(pred_dir: str | Path, label_dir: str | Path, classes: Sequence[str] | None = None, *,
                           images_dir: str | Path | None = None) -> dict:
    """Compare predicted labels with ground truth, matching files by case name.

    Args:
        pred_dir: predictions (``<case>.seg.nrrd`` or label maps).
        label_dir: ground truth, same formats.
        classes: class names; None: from the first ``.seg.nrrd`` (ground truth first),
            else ``label_1 .. label_N`` from the largest value.
        images_dir: the images, whose grids both labels must lie on; without it the
            prediction's grid is used.

    Returns:
        ``{"classes": [...], "cases": [{"case", "prediction", "label", "classes": {name:
        {dice, iou, hd95_mm, pred_voxels, label_voxels, note}}, "mean_dice", "mean_iou",
        "mean_hd95_mm", "notes"}], "summary": {"n_cases", "classes": {name: {dice, iou,
        hd95_mm, hd95_cases}}, "mean_dice", "mIoU", "mean_hd95_mm"}, "missing_predictions":
        [cases with a label but no prediction], "unlabeled_predictions": [cases with a
        prediction but no label]}``. Cases missing on one side are listed, not scored.

    Raises:
        UserError: a folder is missing, no case is in both folders, or a label cannot be
            read or does not lie on its grid (see ``labels.load_segmentation``).
    """
    pred_dir, label_dir = Path(pred_dir), Path(label_dir)
    preds, truths = _label_files(pred_dir), _label_files(label_dir)
    images = case_map(list_images(images_dir), images_dir) if images_dir is not None else None
    common = sorted(set(preds) & set(truths))
    if not common:
        raise UserError(f"No case has both a prediction and a label (predictions: {', '.join(list(preds)[:5]) or 'none'}; "
                        f"labels: {', '.join(list(truths)[:5]) or 'none'}).", path=pred_dir,
                        fix=f"name predictions like their labels in {label_dir} (<case>.seg.nrrd).")
    classes = list(classes) if classes is not None else _default_classes(preds, truths)
    cases = []
    for case in common:
        reference, reference_path = _reference(case, preds[case], truths[case], images)
        pred = load_segmentation(preds[case], classes, reference, reference_path=reference_path, allow_empty=True)
        truth = load_segmentation(truths[case], classes, reference, reference_path=reference_path, allow_empty=True)
        metrics = segmentation_metrics(pred.labelmap, truth.labelmap, classes)
        notes = [f"{n} voxel(s) in overlapping {kind} segments went to the later class"
                 for n, kind in ((pred.overlap_voxels, "predicted"), (truth.overlap_voxels, "ground-truth")) if n]
        cases.append({"case": case, "prediction": str(preds[case]), "label": str(truths[case]), **metrics,
                      "notes": notes})
    per_class = {}
    for name in classes:
        rows = [c["classes"][name] for c in cases]
        hd = [r["hd95_mm"] for r in rows if not math.isnan(r["hd95_mm"])]
        per_class[name] = {"dice": _nanmean(r["dice"] for r in rows), "iou": _nanmean(r["iou"] for r in rows),
                           "hd95_mm": _nanmean(hd), "hd95_cases": len(hd)}
    summary = {"n_cases": len(cases), "classes": per_class,
               "mean_dice": _nanmean(v["dice"] for v in per_class.values()),
               "mIoU": _nanmean(v["iou"] for v in per_class.values()),
               "mean_hd95_mm": _nanmean(v["hd95_mm"] for v in per_class.values())}
    return {"classes": classes, "cases": cases, "summary": summary,
            "missing_predictions": sorted(set(truths) - set(preds)),
            "unlabeled_predictions": sorted(set(preds) - set(truths)),
            "pred_dir": str(pred_dir), "label_dir": str(label_dir)}


# ---------------------------------------------------------------- reports
def write_report(results: dict, out_path_json: str | Path, csv_path: str | Path | None = None) -> None:
    """Write ``evaluate_segmentations`` results as JSON (NaN as null) and optionally CSV.

    The CSV has one row per case and class (``case, class, dice, iou, hd95_mm,
    pred_voxels, label_voxels, note``; NaN as empty), one ``mean`` row per class, a
    ``mean``/``all`` row, and a row per case missing on one side. Both files are
    written atomically and replaced if they exist (they are outputs).
    """
    write_text_atomic(Path(out_path_json), json.dumps(jsonable(results), indent=2) + "\n")
    if csv_path is None:
        return

    def number(v):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:.6g}" if isinstance(v, float) else v)

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["case", "class", "dice", "iou", "hd95_mm", "pred_voxels", "label_voxels", "note"])
    for case in results["cases"]:
        for name, m in case["classes"].items():
            writer.writerow([case["case"], name, number(m["dice"]), number(m["iou"]), number(m["hd95_mm"]),
                             m["pred_voxels"], m["label_voxels"], m["note"]])
    summary = results["summary"]
    for name, m in summary["classes"].items():
        writer.writerow(["mean", name, number(m["dice"]), number(m["iou"]), number(m["hd95_mm"]), "", "",
                         f"HD95 over {m['hd95_cases']} of {summary['n_cases']} cases"])
    writer.writerow(["mean", "all", number(summary["mean_dice"]), number(summary["mIoU"]),
                     number(summary["mean_hd95_mm"]), "", "", ""])
    for case in results.get("missing_predictions", []):
        writer.writerow([case, "", "", "", "", "", "", "no prediction"])
    for case in results.get("unlabeled_predictions", []):
        writer.writerow([case, "", "", "", "", "", "", "no ground truth"])
    write_text_atomic(Path(csv_path), buffer.getvalue())
