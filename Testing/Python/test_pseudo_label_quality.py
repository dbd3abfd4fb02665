"""benchmarks/pseudo_label_quality.py: the confidence measures of pseudo.json against the labels' real IoU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.pseudo_label_quality import quality  # noqa: E402


def _write(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(mask.astype(np.uint8)), str(path))


def test_a_measure_that_ranks_good_labels_first_correlates_and_filters(tmp_path):
    truth = np.zeros((32, 32), np.uint8)
    truth[8:24, 8:24] = 1
    pseudo, labels, rows = tmp_path / "pseudo", tmp_path / "labels", []
    for i, shift in enumerate([0, 2, 4, 6]):          # case_0 exact ... case_3 worst
        case = f"case_{i}"
        _write(labels / f"{case}.nrrd", truth)
        kept = i < 3
        folder = pseudo / "labels" if kept else pseudo / "rejected" / "labels"
        _write(folder / f"{case}.nrrd", np.roll(truth, shift, axis=1))
        # foreground confidence falls with the error, the uncertain fraction rises, image confidence is reversed
        rows.append({"case": case, "kept": kept, "foreground_confidence": 0.99 - 0.01 * i,
                     "image_confidence": 0.9 + 0.01 * i, "uncertain_fraction": 0.01 * i})
    (pseudo / "pseudo.json").write_text(json.dumps({"min_confidence": 0.97, "cases": rows}))

    result = quality(pseudo, labels, ["structure"])
    assert result["cases"] == 4 and result["kept_by_the_run"] == 3   # rejected labels are scored too
    fg, img, unc = (result["measures"][m] for m in ("foreground_confidence", "image_confidence", "uncertain_fraction"))
    assert fg["spearman_with_iou"] == 1.0 and unc["spearman_with_iou"] == 1.0 and img["spearman_with_iou"] == -1.0
    assert fg["mIoU_of_the_surest_fraction"]["0.25"] == 100.0 > fg["mIoU_of_the_surest_fraction"]["1"]
    assert img["mIoU_of_the_surest_fraction"]["0.25"] == result["mIoU_min"]
    assert result["worst_cases"][0]["case"] == "case_3"
