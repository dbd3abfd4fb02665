"""Writing labeled cases (image + ``.seg.nrrd`` / ``.mrk.json``) and the confidence report.

Layout of a folder of generated cases (what ``finetune --extra`` reads)::

    DIR/images/<case>.nrrd            the image
    DIR/labels/<case>.seg.nrrd        its label (segmentation), or <case>.mrk.json (landmarks)
    DIR/rejected/images, rejected/labels   the cases below the confidence threshold, to inspect
    DIR/<report>.json, <report>.csv   every case's confidence and whether it was kept
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
from pathlib import Path

import SimpleITK as sitk

from ..atomic import write_atomic, write_json_atomic, write_text_atomic
from ..errors import UserError
from ..imageio import write_image
from ..labels import write_seg_nrrd
from ..landmarks import write_mrk_json
from ..predict.engine import LoadedModel
from .confidence import Labeled


def case_folder(root: Path, kept: bool) -> Path:
    return root if kept else root / "rejected"


BELOW_THRESHOLD = "below min_confidence"
NOT_AMONG_SUREST = "not among the keep_fraction most confident"


def check_keep_fraction(keep_fraction: float) -> None:
    """Checked before any work: a bad value must not surface after an hour of labeling."""
    if not 0.0 < keep_fraction <= 1.0:
        raise UserError(f"the keep fraction must be above 0 and at most 1, not {keep_fraction:g}.",
                        fix="pass --keep-fraction between 0 and 1 (1: the threshold alone decides).")


def choose_kept(rows: list[dict], unusable: set[str], min_confidence: float, keep_fraction: float) -> None:
    """Set each row's ``kept`` and ``reason``. A case is kept when it is usable (not in ``unusable``),
    its ``confidence`` is at least ``min_confidence``, and it is among the ceil(keep_fraction * len(rows))
    most confident of all the rows (ties: the earlier row first). A row's existing ``reason`` (why it is
    unusable) is kept."""
    check_keep_fraction(keep_fraction)
    passing = [r for r in rows if r["case"] not in unusable and r["confidence"] >= min_confidence]
    room = math.ceil(keep_fraction * len(rows) - 1e-9)
    surest = {r["case"] for r in sorted(passing, key=lambda r: -r["confidence"])[:room]}
    for r in rows:
        r["kept"] = r["case"] in surest
        if r["case"] not in unusable:
            r["reason"] = "" if r["kept"] else BELOW_THRESHOLD if r["confidence"] < min_confidence \
                else NOT_AMONG_SUREST


def promote(root: Path, files: list[Path]) -> None:
    """Move a kept case's files from ``root/rejected/<images|labels>/`` to ``root/<images|labels>/``."""
    for path in files:
        target = root / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)


class StagedCases:
    """Labeled cases written to ``root/rejected/`` as they come, then sorted once all are in (``settle``):
    a relative filter (``keep_fraction``) can decide only when every case has its confidence.
    synthesize (drawn images) and selftrain (the user's unlabeled images) both write through it."""

    def __init__(self, root: Path):
        self.root = root
        self.staging = case_folder(root, kept=False)
        self.rows: list[dict] = []
        self._files: dict[str, list[Path]] = {}
        self._unusable: set[str] = set()

    def add(self, case: str, labeled: Labeled, files: list[Path], **fields) -> None:
        """One case whose image and label are already in ``self.staging``; ``fields`` go into its report row."""
        self._files[case] = files
        if not labeled.usable:
            self._unusable.add(case)
        self.rows.append({"case": case, **fields, "confidence": round(labeled.confidence, 4), "kept": False,
                          "reason": labeled.reason, **labeled.details})

    def settle(self, min_confidence: float, keep_fraction: float, keep_rejected: bool = True) -> list[dict]:
        """Choose the kept cases (``choose_kept``), move them out of ``rejected/``, drop the rejected ones
        unless ``keep_rejected``; returns the report rows, each with the ``folder`` it now sits in."""
        choose_kept(self.rows, self._unusable, min_confidence, keep_fraction)
        for row in self.rows:
            if row["kept"]:
                promote(self.root, self._files[row["case"]])
            if row["kept"] or keep_rejected:
                row["folder"] = "." if row["kept"] else "rejected"
        if not keep_rejected:
            shutil.rmtree(self.staging, ignore_errors=True)
        return self.rows


def write_label(model: LoadedModel, labeled: Labeled, folder: Path, case: str) -> Path:
    """``folder/labels/<case>.seg.nrrd`` or ``.mrk.json``, with the writers ``predict`` uses."""
    labels = folder / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    if model.kind == "segmentation":
        task = model.config.task
        return write_seg_nrrd(labeled.label, labels / f"{case}.seg.nrrd", task.classes, task.colors)
    return write_mrk_json(labeled.label, labels / f"{case}.mrk.json")


def write_new_image(image: sitk.Image, folder: Path, case: str) -> Path:
    path = folder / "images" / f"{case}.nrrd"
    write_image(image, path)
    return path


def link_image(source: Path, folder: Path, case: str, image: sitk.Image) -> Path:
    """Put a copy of a user's image into ``folder/images``; a DICOM series folder is written as
    ``<case>.nrrd``. A copy, not a link: a pseudo-labelled case opened and saved in Slicer
    (which rewrites the file in place) must never change the user's original image."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        return write_new_image(image, folder, case)
    target = images / source.name
    write_atomic(target, lambda tmp: shutil.copyfile(source, tmp))
    return target


def write_report(folder: Path, name: str, summary: dict, rows: list[dict]) -> dict:
    """``<name>.json`` (summary + one record per case) and ``<name>.csv`` (one line per case)."""
    write_json_atomic(folder / f"{name}.json", {**summary, "cases": rows})
    flat = [_flatten(row) for row in rows]
    columns: list[str] = []
    for row in flat:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    write_text_atomic(folder / f"{name}.csv", buffer.getvalue())
    return {"json": str(folder / f"{name}.json"), "csv": str(folder / f"{name}.csv")}


def _flatten(row: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = "" if value is None else value
    return out


def confidence_summary(rows: list[dict], min_confidence: float, measure: str, keep_fraction: float) -> dict:
    """Counts and the distribution of the confidence (quartiles), for the report and the logs."""
    import numpy as np

    values = np.array([r["confidence"] for r in rows], dtype=float)
    quartiles = np.percentile(values, [0, 25, 50, 75, 100]).round(4).tolist() if len(values) else []
    return {"min_confidence": min_confidence, "keep_fraction": keep_fraction, "measure": measure,
            "total": len(rows),
            "kept": sum(1 for r in rows if r["kept"]), "rejected": sum(1 for r in rows if not r["kept"]),
            "confidence_quartiles": quartiles}
