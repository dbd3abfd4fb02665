"""Segmentation metrics on hand-made cases with known answers, and folder evaluation."""

import csv
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from DiffusionSegLib.errors import UserError
from DiffusionSegLib.evaluation import class_metrics, evaluate_segmentations, hd95_mm, segmentation_metrics, write_report
from DiffusionSegLib.labels import write_labelmap, write_seg_nrrd


def squares(shape, n, k, axis):
    """Two n-wide squares/cubes, the second shifted by k voxels along numpy ``axis``."""
    a = np.zeros(shape, bool)
    index = tuple(slice(4, 4 + n) for _ in shape)
    a[index] = True
    return a, np.roll(a, k, axis=axis)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("spacing_xy", [(1.0, 1.0), (0.4, 2.5)])
def test_shifted_squares_2d(k, spacing_xy):
    n = 10
    a, b = squares((24, 24), n, k, axis=1)  # shift along x (columns)
    m = class_metrics(a, b, spacing_xy)
    assert m["dice"] == pytest.approx((n - k) / n)
    assert m["iou"] == pytest.approx((n - k) / (n + k))
    assert m["hd95_mm"] == pytest.approx(k * spacing_xy[0])
    a, b = squares((24, 24), n, k, axis=0)  # shift along y (rows) uses the y spacing
    assert hd95_mm(a, b, spacing_xy) == pytest.approx(k * spacing_xy[1])


def test_shifted_cubes_3d_use_the_slice_spacing():
    a, b = squares((20, 20, 20), 8, 2, axis=0)  # shift along z
    assert hd95_mm(a, b, (0.7, 0.7, 3.0)) == pytest.approx(6.0)
    assert hd95_mm(a, a, (0.7, 0.7, 3.0)) == pytest.approx(0.0, abs=1e-5)  # float32 distance map


def test_single_voxels_are_their_euclidean_distance_apart():
    a, b = np.zeros((12, 12), bool), np.zeros((12, 12), bool)
    a[1, 2], b[5, 5] = True, True  # 4 rows (y) and 3 columns (x) apart
    assert hd95_mm(a, b, (0.5, 2.0)) == pytest.approx(math.hypot(3 * 0.5, 4 * 2.0))


def test_empty_masks():
    empty, full = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    full[2:5, 2:5] = True
    both = class_metrics(empty, empty, (1, 1))
    assert both["dice"] == 1 and both["iou"] == 1 and math.isnan(both["hd95_mm"]) and "empty in both" in both["note"]
    missed = class_metrics(empty, full, (1, 1))
    assert missed["dice"] == 0 and math.isnan(missed["hd95_mm"]) and "not predicted" in missed["note"]
    extra = class_metrics(full, empty, (1, 1))
    assert extra["iou"] == 0 and "absent from the ground truth" in extra["note"]


def test_matches_monai_when_scipy_is_there():
    pytest.importorskip("scipy")
    import torch
    from monai.metrics import compute_hausdorff_distance

    rng = np.random.default_rng(1)
    a, b = rng.random((16, 20, 24)) > 0.7, rng.random((16, 20, 24)) > 0.7
    spacing_xyz = (0.8, 1.1, 2.0)
    expected = compute_hausdorff_distance(torch.from_numpy(a[None, None]), torch.from_numpy(b[None, None]),
                                          include_background=True, percentile=95, spacing=spacing_xyz[::-1])
    assert hd95_mm(a, b, spacing_xyz) == pytest.approx(float(expected), rel=1e-5)


def labelmap(array, spacing=(0.5, 2.0), origin=(10.0, -5.0)):
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def test_segmentation_metrics_means_over_classes():
    truth = np.zeros((24, 24), np.uint8)
    truth[4:14, 4:14] = 1
    pred = np.roll(truth, 2, axis=1)
    m = segmentation_metrics(labelmap(pred), labelmap(truth), ["a", "b"])
    assert m["classes"]["a"]["dice"] == pytest.approx(0.8) and m["classes"]["a"]["hd95_mm"] == pytest.approx(1.0)
    assert m["classes"]["b"]["dice"] == 1  # empty in both
    assert m["mean_dice"] == pytest.approx(0.9) and m["mean_hd95_mm"] == pytest.approx(1.0)


def test_evaluate_folders_and_report(tmp_path):
    classes = ["liver", "kidney"]
    truth = np.zeros((24, 24), np.uint8)
    truth[4:14, 4:14] = 1
    truth[16:20, 2:22] = 2
    pred = truth.copy()
    pred[pred == 1] = 0
    pred[4:14, 6:16] = 1  # liver shifted 2 columns; kidney exact
    (tmp_path / "pred").mkdir()
    write_seg_nrrd(labelmap(pred), tmp_path / "pred" / "c1.seg.nrrd", classes)
    write_labelmap(labelmap(pred), tmp_path / "pred" / "c1.png")  # same case in another format: .seg.nrrd wins
    write_seg_nrrd(labelmap(pred), tmp_path / "pred" / "only_pred.seg.nrrd", classes)
    write_labelmap(labelmap(truth), tmp_path / "labels" / "c1.nrrd")
    write_labelmap(labelmap(truth), tmp_path / "labels" / "only_label.nrrd")

    results = evaluate_segmentations(tmp_path / "pred", tmp_path / "labels")
    assert results["classes"] == classes  # from the prediction's .seg.nrrd (the labels have no names)
    assert results["missing_predictions"] == ["only_label"] and results["unlabeled_predictions"] == ["only_pred"]
    (case,) = results["cases"]
    assert case["prediction"].endswith("c1.seg.nrrd")
    assert case["classes"]["liver"]["dice"] == pytest.approx(0.8)
    assert case["classes"]["liver"]["hd95_mm"] == pytest.approx(2 * 0.5)
    assert case["classes"]["kidney"]["hd95_mm"] == 0
    assert results["summary"]["mean_dice"] == pytest.approx(0.9)
    assert results["summary"]["mIoU"] == pytest.approx((8 / 12 + 1) / 2)

    write_report(results, tmp_path / "out" / "metrics.json", tmp_path / "out" / "metrics.csv")
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["summary"]["n_cases"] == 1
    rows = list(csv.DictReader((tmp_path / "out" / "metrics.csv").open()))
    assert [r["case"] for r in rows] == ["c1", "c1", "mean", "mean", "mean", "only_label", "only_pred"]
    assert rows[-2]["note"] == "no prediction" and float(rows[0]["hd95_mm"]) == pytest.approx(1.0)


def test_evaluate_reports_empty_predictions_and_refuses_bad_grids(tmp_path):
    truth = np.zeros((24, 24), np.uint8)
    truth[4:14, 4:14] = 1
    write_labelmap(labelmap(truth), tmp_path / "labels" / "c1.nrrd")
    write_labelmap(labelmap(np.zeros_like(truth)), tmp_path / "pred" / "c1.nrrd")
    results = evaluate_segmentations(tmp_path / "pred", tmp_path / "labels", ["a"])
    m = results["cases"][0]["classes"]["a"]
    assert m["dice"] == 0 and math.isnan(m["hd95_mm"]) and math.isnan(results["summary"]["mean_hd95_mm"])
    write_report(results, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["summary"]["mean_hd95_mm"] is None  # NaN -> null

    write_labelmap(labelmap(truth, spacing=(0.5, 1.0)), tmp_path / "pred" / "c1.nrrd", overwrite=True)
    with pytest.raises(UserError, match="does not lie on the voxel grid") as err:
        evaluate_segmentations(tmp_path / "pred", tmp_path / "labels", ["a"])
    assert "labels/c1.nrrd" in str(err.value) and "pred/c1.nrrd" in str(err.value)
    with pytest.raises(UserError, match="No case has both"):
        evaluate_segmentations(tmp_path / "labels", tmp_path / "pred" / "..", ["a"])
