"""The project folder: the datastore shared by the Slicer module and the command line.

Layout (see ../shared/DESIGN.md)::

    <project>/
      project.json   {"format": "diffusionseg-project", "version": 1, "task": ..., ...}
      images/        every image, labeled or not (<case>.nrrd, .nii.gz, .png, ...)
      labels/        segmentation: <case>.seg.nrrd or a label map (<case>.nrrd/.nii.gz/.mha/.png/.tif...);
                     landmarks: <case>.mrk.json (or .fcsv/.csv); a case is labeled when the
                     label file for the project's task exists
      models/        checkpoints with their config
      runs/          one folder per run

A case is an image file name without its (possibly double) suffix: ``images/case_003.nii.gz``
is case ``case_003`` (the rule and each file role's suffixes: vocabulary.py). Label values in
label maps are ``i + 1`` for ``classes[i]``; 0 is background.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from DiffusionSegLib.atomic import write_json_atomic
from DiffusionSegLib.errors import UserError
from DiffusionSegLib.vocabulary import (  # noqa: F401  (re-exported: the module reads them from here)
    IMAGE_SUFFIXES,
    LANDMARK_LABEL_SUFFIXES,
    MODALITIES,
    PREDICTION_CONFIDENCE_FILE,
    SEGMENTATION_LABEL_SUFFIXES,
    TASKS,
    case_files,
    case_map,
    case_name,
    image_entries,
    label_suffixes,
)

FORMAT = "diffusionseg-project"
VERSION = 1
# The vocabulary (tasks, modalities, each file role's suffixes, the case-naming rule) is
# stated once in DiffusionSegLib/vocabulary.py; re-exported here for the Slicer module.

# Colours for new classes (0..1 RGB), Slicer-like; cycled when there are more classes.
DEFAULT_COLORS = [(0.5, 0.68, 0.5), (0.95, 0.84, 0.57), (0.69, 0.48, 0.4), (0.44, 0.5, 0.85),
                  (0.85, 0.4, 0.4), (0.4, 0.8, 0.85), (0.9, 0.6, 0.2), (0.6, 0.4, 0.8)]


@dataclass
class Project:
    """A project folder and its settings (the contents of ``project.json``).

    Attributes:
        folder: the project folder.
        task: 'segmentation' or 'landmarks'.
        dims: 2 (radiographs, slices) or 3 (volumes).
        classes: segment names without background; classes[i] has label value i + 1.
        class_colors: one (r, g, b) in 0..1 per class.
        landmark_names: the landmarks, in output order.
        modality: 'xray', 'ct', 'mri' or 'other' (chooses intensity normalisation).
        target_spacing: resampling spacing in mm, ITK order (x, y[, z]), or None = keep.
        target_size: network input size in pixels, ITK order (x, y[, z]), or None = auto.
        extra: other keys of project.json, kept as they are (e.g. how sample data was made).
    """

    folder: Path
    task: str = "segmentation"
    dims: int = 2
    classes: list[str] = field(default_factory=list)
    class_colors: list[tuple[float, float, float]] = field(default_factory=list)
    landmark_names: list[str] = field(default_factory=list)
    modality: str = "other"
    target_spacing: list[float] | None = None
    target_size: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ paths
    @property
    def project_file(self) -> Path:
        return Path(self.folder) / "project.json"

    @property
    def images_dir(self) -> Path:
        return Path(self.folder) / "images"

    @property
    def labels_dir(self) -> Path:
        return Path(self.folder) / "labels"

    @property
    def models_dir(self) -> Path:
        return Path(self.folder) / "models"

    @property
    def runs_dir(self) -> Path:
        return Path(self.folder) / "runs"

    # ------------------------------------------------------------------ create / load / save
    @classmethod
    def create(cls, folder: str | Path, task: str = "segmentation", dims: int = 2, *,
               classes: list[str] | None = None, class_colors: list | None = None,
               landmark_names: list[str] | None = None, modality: str = "other",
               target_spacing: list[float] | None = None, target_size: list[int] | None = None,
               extra: dict | None = None, overwrite: bool = False) -> "Project":
        """Make the folder and its sub-folders and write project.json.

        Missing class colours are taken from DEFAULT_COLORS. Refuses (UserError) when the
        folder already holds a project.json, unless ``overwrite``.
        """
        classes = list(classes or [])
        colors = list(class_colors) if class_colors is not None else [
            DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(len(classes))]
        project = cls(Path(folder), task, dims, classes, colors, list(landmark_names or []), modality,
                      target_spacing, target_size, dict(extra or {}))
        project._validate(project.project_file)
        if project.project_file.exists() and not overwrite:
            raise UserError("a project already exists here.", path=project.project_file,
                            fix="Open it with Project.load, or choose an empty folder.")
        for d in (project.images_dir, project.labels_dir, project.models_dir, project.runs_dir):
            d.mkdir(parents=True, exist_ok=True)
        project.save()
        return project

    @classmethod
    def load(cls, folder: str | Path) -> "Project":
        """Read and check ``<folder>/project.json``; UserError naming the file if it is
        missing or malformed."""
        path = Path(folder) / "project.json"
        if not path.is_file():
            raise UserError("no project.json: not a DiffusionSeg project folder.", path=path,
                            fix="Create a project first (Project.create or the Slicer module).")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"cannot read project file ({e}).", path=path,
                            fix="Repair the JSON or create the project again.") from e
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise UserError(f"not a DiffusionSeg project file (\"format\" is not \"{FORMAT}\").", path=path)
        if not isinstance(doc.get("version"), int) or doc["version"] > VERSION or doc["version"] < 1:
            raise UserError(f"project file version {doc.get('version')!r} is not supported (this is version "
                            f"{VERSION}).", path=path, fix="Update DiffusionSeg.")
        known = ("task", "dims", "classes", "class_colors", "landmark_names", "modality", "target_spacing",
                 "target_size")
        kwargs = {k: doc[k] for k in known if k in doc}
        if "class_colors" in kwargs and isinstance(kwargs["class_colors"], list):
            kwargs["class_colors"] = [tuple(c) if isinstance(c, list) else c for c in kwargs["class_colors"]]
        extra = {k: v for k, v in doc.items() if k not in known + ("format", "version")}
        project = cls(Path(folder), extra=extra, **kwargs)
        project._validate(path)
        return project

    def save(self) -> Path:
        """Write project.json atomically (temporary file beside it, then os.replace)."""
        self._validate(self.project_file)
        doc = {"format": FORMAT, "version": VERSION, "task": self.task, "dims": self.dims,
               "classes": self.classes, "class_colors": [list(c) for c in self.class_colors],
               "landmark_names": self.landmark_names, "modality": self.modality,
               "target_spacing": self.target_spacing, "target_size": self.target_size, **self.extra}
        write_json_atomic(self.project_file, doc)
        return self.project_file

    def _validate(self, path: Path) -> None:
        def bad(what: str, fix: str):
            raise UserError(what, path=path, fix=fix)

        if self.task not in TASKS:
            bad(f"task {self.task!r} is not one of {', '.join(TASKS)}.", "Set \"task\" to segmentation or landmarks.")
        if self.dims not in (2, 3) or isinstance(self.dims, bool):
            bad(f"dims {self.dims!r} must be 2 or 3.", "Set \"dims\" to 2 for radiographs, 3 for volumes.")
        if self.modality not in MODALITIES:
            bad(f"modality {self.modality!r} is not one of {', '.join(MODALITIES)}.", "Use 'other' if unsure.")
        for key, names in (("classes", self.classes), ("landmark_names", self.landmark_names)):
            if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
                bad(f"{key} must be a list of non-empty names.", f"Fix \"{key}\".")
            if len(set(names)) != len(names):
                bad(f"{key} has duplicated names.", "Give every class or landmark a unique name.")
        if self.task == "segmentation" and not self.classes:
            bad("a segmentation project needs at least one class.", "List the segment names in \"classes\".")
        if self.task == "landmarks" and not self.landmark_names:
            bad("a landmarks project needs at least one landmark name.", "List them in \"landmark_names\".")
        colors = self.class_colors
        if not isinstance(colors, list) or len(colors) != len(self.classes) or not all(
                isinstance(c, (tuple, list)) and len(c) == 3 and all(_num(v) and 0 <= v <= 1 for v in c)
                for c in colors):
            bad("class_colors must give one [r, g, b] in 0..1 per class.", "Fix \"class_colors\" or remove it.")
        self.class_colors = [tuple(float(v) for v in c) for c in colors]
        for key, values, kind in (("target_spacing", self.target_spacing, float), ("target_size", self.target_size, int)):
            if values is None:
                continue
            ok = isinstance(values, list) and len(values) == self.dims and all(
                _num(v) and v > 0 and (kind is float or float(v).is_integer()) for v in values)
            if not ok:
                bad(f"{key} must be null or {self.dims} positive {'numbers' if kind is float else 'integers'}.",
                    f"Fix \"{key}\" (ITK order x, y[, z]).")
        if not isinstance(self.extra, dict):
            bad("extra must be a dict.", "Internal error.")

    # ------------------------------------------------------------------ cases
    def cases(self) -> list[str]:
        """All case names found in images/ (sorted; hidden and temporary files ignored).

        Raises:
            UserError: two images of one case (vocabulary.case_map names both files).
        """
        return sorted(self._images())

    def _images(self) -> dict[str, Path]:
        if not self.images_dir.is_dir():
            return {}
        return case_map(image_entries(self.images_dir), self.images_dir)

    def image_path(self, case: str) -> Path | None:
        """The image file (or DICOM series folder) of ``case`` in images/, or None."""
        return self._images().get(case)

    def _labels(self) -> dict[str, Path]:
        return case_files(self.labels_dir, label_suffixes(self.task))

    def label_path(self, case: str) -> Path | None:
        """The label file of ``case`` for this project's task, or None.

        Segmentation: <case>.seg.nrrd, then a label map; landmarks: <case>.mrk.json, then
        .fcsv, then .csv (vocabulary.SEGMENTATION_LABEL_SUFFIXES / LANDMARK_LABEL_SUFFIXES,
        the lists fine-tuning and evaluation read too).
        """
        return self._labels().get(case)

    def labeled_cases(self) -> list[str]:
        """Cases in images/ whose label file (for this task) exists in labels/."""
        labels = self._labels()
        return [c for c in self.cases() if c in labels]

    def unlabeled_cases(self) -> list[str]:
        """Cases in images/ without a label file: used for pretraining and prediction."""
        labels = self._labels()
        return [c for c in self.cases() if c not in labels]


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
