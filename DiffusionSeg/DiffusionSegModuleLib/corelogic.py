"""The module's Logic without Qt: projects, annotations, background runs, results as nodes.

``DiffusionSegLogic`` (in DiffusionSeg.py) is this class plus the parts that need the
Slicer application (PythonSlicer, pip, the parameter node). The batch script and the
tests drive this class directly, so GUI, batch and tests share one code path.

Nodes and cases: a volume that belongs to a project carries the node attributes
``DiffusionSeg.Project`` and ``DiffusionSeg.Case``; annotation and prediction nodes
carry ``DiffusionSeg.Case`` too, so Save knows which case a corrected prediction is.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Sequence

from . import nodeio, projectfiles
from .backend import find_backend_dir, project_module, vocabulary
from .i18n import _
from .process import BackendProcess, RunResult
from .progress import Event, ProgressState

PROJECT_ATTRIBUTE = "DiffusionSeg.Project"
CASE_ATTRIBUTE = "DiffusionSeg.Case"
ROLE_ATTRIBUTE = "DiffusionSeg.Role"  # "image", "annotation" or "prediction"


@dataclasses.dataclass
class RunRecord:
    """A background run the Logic started: what it is and where it writes."""

    kind: str  # pretrain | finetune | predict | suggest | curve
    project_folder: Path
    out: Path
    load_results: bool = True
    #: predict: every case's loadable prediction file, in case order.
    predictions: dict = dataclasses.field(default_factory=dict)
    #: predict: the nodes loaded into the scene (one case: the first; the rest open from the case list).
    loaded_nodes: list = dataclasses.field(default_factory=list)
    #: suggest: the ranked suggestions (dicts of suggestions.json: case, rank, score, reason...), best first.
    suggestions: list = dataclasses.field(default_factory=list)
    #: curve: curve.json (its "sentence", "predictions", ...), None until the run succeeded.
    curve: dict | None = None
    result: RunResult | None = None


#: Case status in the case list: a saved label wins over a prediction, a prediction over a suggestion.
UNLABELED, SUGGESTED, PREDICTED, LABELED = "unlabeled", "suggested", "predicted", "labeled"
#: The case list's review order by status.
REVIEW_ORDER = {PREDICTED: 0, SUGGESTED: 1, UNLABELED: 2, LABELED: 3}
#: What ``diffusionseg suggest`` and ``diffusionseg curve`` write into their --out folder (docs/CLI.md).
SUGGESTIONS_FILE = "suggestions.json"
CURVE_FILE, CURVE_PLOT = "curve.json", "curve.png"


@dataclasses.dataclass
class CaseRow:
    """One line of the panel's case list."""

    case: str
    status: str  # UNLABELED | SUGGESTED | PREDICTED | LABELED
    label: Path | None = None  # labels/<case>.* when labeled
    prediction: Path | None = None  # the newest prediction run's file for the case
    confidence: float | None = None  # that prediction's confidence (0..1), when the backend reported it
    rank: int | None = None  # SUGGESTED: its rank in the newest suggestion (1 = annotate first)
    reason: str = ""  # SUGGESTED: why, in the backend's words


class CoreLogic:
    """The API of the DiffusionSeg module (no Qt).

    Args:
        context: the MRML scene and module logics (nodeio.MRMLContext).
        python_executable: the interpreter for the backend (PythonSlicer in Slicer).
        backend_dir: the folder holding DiffusionSegLib (default: found automatically).
        backend_module: the module run with ``-m`` (tests use a fake backend).
    """

    def __init__(self, context: nodeio.MRMLContext, python_executable: str,
                 backend_dir: str | Path | None = None, backend_module: str = "DiffusionSegLib"):
        self.context = context
        self.process = BackendProcess(python_executable, backend_dir or find_backend_dir(), backend_module)
        self.run: RunRecord | None = None
        self.lastRun: RunRecord | None = None
        self.logCallback: Callable[[str], None] | None = None

    # -- projects ---------------------------------------------------------------------

    def createProject(self, folder: str | Path, task: str, dims: int, names: Sequence[str],
                      modality: str = "other"):
        """A new project folder; ``names`` are class names or landmark names by task."""
        names = [n.strip() for n in names if n.strip()]
        kwargs = {"classes": names} if task == "segmentation" else {"landmark_names": names}
        return project_module().Project.create(folder, task=task, dims=int(dims), modality=modality, **kwargs)

    def openProject(self, folder: str | Path):
        return project_module().Project.load(folder)

    @staticmethod
    def isProject(folder: str | Path | None) -> bool:
        return bool(folder) and str(folder) != "." and (Path(folder) / "project.json").is_file()

    @staticmethod
    def names(project) -> list[str]:
        """The project's class names or landmark names."""
        return list(project.classes if project.task == "segmentation" else project.landmark_names)

    def projectStatus(self, project) -> dict:
        """Counts for the panel: images, labeled and unlabeled cases, models."""
        labeled = project.labeled_cases()
        cases = project.cases()
        return {"images": len(cases), "labeled": len(labeled), "unlabeled": len(cases) - len(labeled),
                "pretrained": len(projectfiles.list_models(project, ["pretrained"])),
                "task_models": len(projectfiles.list_models(project, [project.task]))}

    def addVolume(self, project, volume) -> str:
        """Write a scene volume into images/ as a new case (or return its case if it has one)."""
        case = self.caseOfNode(project, volume)
        if case is not None and project.image_path(case) is not None:
            return case
        case = projectfiles.unique_case_name(project, volume.GetName())
        nodeio.write_volume(self.context, volume, project.images_dir / f"{case}.nrrd")
        self._tag(volume, project, case, "image")
        return case

    def addImagesFromFolder(self, project, folder: str | Path) -> list[str]:
        """Copy every image file of ``folder`` into images/; returns the new cases."""
        files = projectfiles.image_files(folder)
        if not files:
            raise ValueError(_("No image files found in {folder}.").format(folder=folder))
        return projectfiles.import_image_files(project, files)

    def caseOfNode(self, project, node) -> str | None:
        """The case a node belongs to in this project, from its attributes."""
        if node is None:
            return None
        owner = node.GetAttribute(PROJECT_ATTRIBUTE)
        case = node.GetAttribute(CASE_ATTRIBUTE)
        if not case or (owner and Path(owner).resolve() != Path(project.folder).resolve()):
            return None
        return case

    def volumeOfCase(self, project, case: str, load: bool = True):
        """The scene volume of a case (loading images/<case> if it is not in the scene)."""
        for node in self._nodesByClass("vtkMRMLScalarVolumeNode"):
            if node.GetAttribute(ROLE_ATTRIBUTE) == "image" and self.caseOfNode(project, node) == case:
                return node
        if not load:
            return None
        path = project.image_path(case)
        if path is None:
            raise ValueError(_("Case '{case}' has no image in {folder}.").format(case=case, folder=project.images_dir))
        volume = nodeio.read_volume(self.context, path, case)
        self._tag(volume, project, case, "image")
        return volume

    def nextUnlabeledCase(self, project) -> str | None:
        unlabeled = project.unlabeled_cases()
        return unlabeled[0] if unlabeled else None

    def caseRows(self, project) -> list[CaseRow]:
        """Every case of the project with its status, in review order (for the case list):
        predictions to review, least confident first; the newest suggestion's cases, best
        first; the other unlabeled cases; the labeled ones."""
        predictions = latestPredictions(project)
        suggestions = {s["case"]: s for s in latestSuggestions(project)}
        rows = []
        for case in project.cases():
            label = project.label_path(case)
            if label is not None:
                rows.append(CaseRow(case, LABELED, label=label, prediction=predictions.get(case)))
            elif case in predictions:
                rows.append(CaseRow(case, PREDICTED, prediction=predictions[case],
                                    confidence=predictionConfidence(predictions[case], case)))
            elif case in suggestions:
                rows.append(CaseRow(case, SUGGESTED, rank=int(suggestions[case]["rank"]),
                                    reason=str(suggestions[case].get("reason", ""))))
            else:
                rows.append(CaseRow(case, UNLABELED))
        return sorted(rows, key=lambda r: (REVIEW_ORDER[r.status], r.confidence if r.confidence is not None else -1.0,
                                           r.rank or 0))

    def openCase(self, project, case: str, create: bool = False):
        """The case's image and the node to review or annotate it with, both in the scene.

        The annotation is the node already open for the case if there is one (unsaved edits
        are never replaced), else the saved label, else the newest prediction, else (with
        ``create``) a new empty annotation, else None. Other cases' annotations and
        predictions are hidden, so the views show one case at a time.
        Returns ``(volume, annotation or None)``.
        """
        volume = self.volumeOfCase(project, case)
        node = self.annotationOfCase(project, case)
        if node is None:
            row = next((r for r in self.caseRows(project) if r.case == case), None)
            if row is not None and row.status == PREDICTED:
                node = self.loadPrediction(project, case, row.prediction)
            elif create or (row is not None and row.status == LABELED):
                node = self.createAnnotation(project, volume)  # the saved label, or a new annotation
        self.showOnly(project, case)
        return volume, node

    def annotationOfCase(self, project, case: str):
        """The newest annotation or prediction node of ``case`` in the scene, or None."""
        class_name = "vtkMRMLSegmentationNode" if project.task == "segmentation" else "vtkMRMLMarkupsFiducialNode"
        found = [n for n in self._nodesByClass(class_name)
                 if n.GetAttribute(ROLE_ATTRIBUTE) in ("annotation", "prediction") and self.caseOfNode(project, n) == case]
        annotations = [n for n in found if n.GetAttribute(ROLE_ATTRIBUTE) == "annotation"]
        return (annotations or found or [None])[-1]

    def showOnly(self, project, case: str) -> None:
        """Show the annotations and predictions of ``case``; hide those of every other case."""
        for class_name in ("vtkMRMLSegmentationNode", "vtkMRMLMarkupsFiducialNode"):
            for node in self._nodesByClass(class_name):
                if node.GetAttribute(ROLE_ATTRIBUTE) not in ("annotation", "prediction"):
                    continue
                display = node.GetDisplayNode()
                if display is not None:
                    display.SetVisibility(self.caseOfNode(project, node) == case)

    # -- annotation -------------------------------------------------------------------

    def createAnnotation(self, project, volume):
        """A node to annotate ``volume`` with: the case's saved label if there is one,
        else a new segmentation with the project's segments or a point list with the
        project's landmark names. The volume is added to the project if needed."""
        case = self.addVolume(project, volume)
        label = project.label_path(case)
        name = _("{case} labels").format(case=case)
        editable = (vocabulary().SEGMENTATION_FILE_SUFFIX, vocabulary().LANDMARK_FILE_SUFFIX)
        if label is not None and label.name.lower().endswith(editable):
            node = self.loadLabelFile(project, label, volume, name)
        elif project.task == "segmentation":
            node = nodeio.new_segmentation(self.context, volume, project.classes, name, project.class_colors)
        else:
            node = nodeio.new_markups(self.context, project.landmark_names, name)
        self._tag(node, project, case, "annotation")
        return node

    def loadLabelFile(self, project, path: Path, volume, name: str):
        """A label or prediction file as a new node ready to edit: a segmentation with the
        project's segment names, or a point list holding exactly the project's landmarks."""
        if project.task == "segmentation":
            return nodeio.read_segmentation(self.context, path, name, reference_volume=volume,
                                            class_names=project.classes)
        node = nodeio.read_markups(self.context, path, name)
        nodeio.complete_markups(node, project.landmark_names)
        return node

    def saveAnnotation(self, project, node, volume=None) -> dict:
        """Write an annotation (or a corrected prediction) as the label file of its case.

        The case is the one the node belongs to (its ``DiffusionSeg.Case`` attribute, set
        when it was created, loaded or predicted), whatever image is current: after opening
        another case, Save still writes this node's case. Only a node that belongs to no
        case (made by hand in Segment Editor or Markups) takes its case from ``volume``.
        Returns ``{"case", "path", "missing"}`` (missing: landmarks not placed).
        """
        if node is None:
            raise ValueError(_("There is no annotation to save. Press Annotate, or open a case."))
        case = self.caseOfNode(project, node)
        if case is None and volume is not None:
            case = self.addVolume(project, volume)
        if case is None:
            raise ValueError(_("'{name}' does not belong to a case of this project. Select its image as the "
                               "current image.").format(name=node.GetName()))
        missing: list[str] = []
        if project.task == "segmentation":
            if not node.IsA("vtkMRMLSegmentationNode"):
                raise ValueError(_("This is a segmentation project: save a segmentation."))
            volume = self.volumeOfCase(project, case)  # the node's own case, never just the current image
            path = project.labels_dir / f"{case}.seg.nrrd"
            nodeio.write_segmentation(self.context, node, volume, project.classes, path)
        else:
            if not node.IsA("vtkMRMLMarkupsFiducialNode"):
                raise ValueError(_("This is a landmarks project: save a point list."))
            path = project.labels_dir / f"{case}.mrk.json"
            missing = nodeio.write_markups(self.context, node, project.landmark_names, path)
        self._tag(node, project, case, "annotation")
        return {"case": case, "path": path, "missing": missing}

    # -- runs -------------------------------------------------------------------------

    @staticmethod
    def networkArgs(project, preset: str | None = None, image_size: Sequence[int] | None = None) -> list[str]:
        """Network size and input grid for a new network (pretraining, or fine-tuning from scratch).

        ``image_size`` (ITK order x, y[, z]) defaults to the project's ``target_size``; without
        a size, the project's ``target_spacing`` is used (the backend takes one or the other).
        Nothing given: the backend's defaults (2D: small preset, 64 pixels across the shorter side;
        3D: tiny preset, 64 x 64 x 32 patches).
        """
        args = ["--preset", preset] if preset else []
        size = image_size or project.target_size
        if size:
            args += ["--image-size", *(str(int(n)) for n in size)]
        elif project.target_spacing:
            args += ["--spacing", *(str(float(s)) for s in project.target_spacing)]
        return args

    @staticmethod
    def pretrainArgs(project, out: Path, iterations: int, device: str = "auto", resume: bool = False,
                     preset: str | None = None, image_size: Sequence[int] | None = None,
                     batch_size: int | None = None) -> list[str]:
        args = ["pretrain", "--images", str(project.images_dir), "--out", str(out), "--dims", str(project.dims),
                "--modality", project.modality, "--iterations", str(int(iterations)), "--device", device]
        if resume:  # the interrupted run's network and data settings win (the backend reads them)
            args += ["--resume"]
        else:
            args += CoreLogic.networkArgs(project, preset, image_size)
        return args + (["--batch-size", str(int(batch_size))] if batch_size else [])

    @staticmethod
    def finetuneArgs(project, pretrained: Path | None, out: Path, iterations: int, device: str = "auto",
                     preset: str | None = None, image_size: Sequence[int] | None = None,
                     batch_size: int | None = None, mode: str = "full", selftrain: bool = False) -> list[str]:
        """``preset`` and ``image_size`` apply to random initialisation only (a pretrained
        model brings its own network and preprocessing). ``mode``: full (fine-tune the whole
        U-Net), probe or mlp (frozen pretrained U-Net, a trained head); see docs/CLI.md.
        ``selftrain``: ``diffusionseg selftrain`` with the same options (fine-tune, label the
        project's unlabeled images, keep the confident labels, fine-tune again on both)."""
        command = "selftrain" if selftrain else "finetune"
        args = [command, "--task", project.task] + (["--mode", mode] if mode != "full" else [])
        if pretrained:
            args += ["--pretrained", str(pretrained)]
        else:
            args += ["--init", "random", "--modality", project.modality]
            args += CoreLogic.networkArgs(project, preset, image_size)
        args += ["--images", str(project.images_dir)]
        if project.task == "segmentation":
            args += ["--labels", str(project.labels_dir), "--classes", ",".join(project.classes)]
        else:
            # The project's names, in project order: a landmark no saved case has placed yet
            # still gets its output channel, and the order never depends on the files.
            args += ["--landmarks", str(project.labels_dir), "--landmark-names", ",".join(project.landmark_names)]
        args += ["--out", str(out), "--iterations", str(int(iterations)), "--device", device]
        return args + (["--batch-size", str(int(batch_size))] if batch_size else [])

    @staticmethod
    def predictArgs(model: Path, images: Path, out: Path, device: str = "auto") -> list[str]:
        return ["predict", "--model", str(model), "--images", str(images), "--out", str(out), "--device", device]

    @staticmethod
    def suggestArgs(project, model: Path, count: int, out: Path, device: str = "auto") -> list[str]:
        """``out`` is a new folder: the trailing "/" asks for FOLDER/suggestions.json (docs/CLI.md)."""
        annotations = "--labels" if project.task == "segmentation" else "--landmarks"
        return ["suggest", "--model", str(model), "--images", str(project.images_dir), annotations,
                str(project.labels_dir), "--count", str(int(count)), "--out", str(out) + "/", "--device", device]

    def startPretrain(self, project, iterations: int, device: str = "auto", resume_from: Path | None = None,
                      preset: str | None = None, image_size: Sequence[int] | None = None,
                      batch_size: int | None = None) -> Path:
        """Pretrain on all images of the project; returns the model folder it writes.

        preset (tiny|small|base), image_size (x, y[, z]) and batch_size: see :meth:`networkArgs`;
        None leaves the choice to the project and the backend.
        """
        if not project.cases():
            raise ValueError(_("The project has no images yet. Add images first."))
        out = Path(resume_from) if resume_from else projectfiles.new_folder(project.models_dir, "pretrained")
        self._start(RunRecord("pretrain", Path(project.folder), out),
                    self.pretrainArgs(project, out, iterations, device, resume=bool(resume_from), preset=preset,
                                      image_size=image_size, batch_size=batch_size))
        return out

    @staticmethod
    def selftrainByDefault(project, mode: str = "full", network: str | None = None) -> bool:
        """Whether Fine-tune self-trains unless the user says otherwise: where it won on validation
        (``vocabulary.default_selftrain``: 2D segmentation, with the pretrained diffusion U-Net), and
        only when it can run (full mode, and unlabeled cases to learn from). ``network`` None: the
        project's default (:meth:`networkByDefault`)."""
        words = vocabulary()
        network = network or CoreLogic.networkByDefault(project)
        return (words.default_selftrain(project.task, project.dims) and mode == "full"
                and network == words.FinetuneNetwork.PRETRAINED.value and bool(project.unlabeled_cases()))

    @staticmethod
    def networkByDefault(project) -> str:
        """What Fine-tune trains unless the user says otherwise (``vocabulary.default_finetune_network``):
        the pretrained diffusion U-Net, or ``plain`` (MONAI's BasicUNet from scratch)."""
        return vocabulary().default_finetune_network(project.task, project.dims)

    def startFinetune(self, project, pretrained: Path | None, iterations: int, device: str = "auto",
                      preset: str | None = None, image_size: Sequence[int] | None = None,
                      batch_size: int | None = None, mode: str = "full", selftrain: bool = False,
                      network: str | None = None) -> Path:
        """Fine-tune on the labeled cases; returns the task model folder it writes.

        ``pretrained`` None trains from random initialisation (then preset and image_size apply).
        ``selftrain``: also learn from the unlabeled cases (see :meth:`finetuneArgs`); about twice
        the time of fine-tuning, plus one prediction of every unlabeled case. ``network``
        (``vocabulary.FINETUNE_NETWORKS``; None: pretrained): ``plain`` trains MONAI's BasicUNet from
        scratch, so ``pretrained`` and ``preset`` are not used.
        """
        if network == vocabulary().PLAIN_PRESET:
            pretrained, preset = None, network
        if not project.labeled_cases():
            raise ValueError(_("No case is labeled yet. Annotate and save at least one case first."))
        if selftrain and mode != "full":
            raise ValueError(_("Self-training fine-tunes the whole U-Net: choose the full mode, or turn "
                               "self-training off."))
        if selftrain and not project.unlabeled_cases():
            raise ValueError(_("Self-training learns from the unlabeled cases, and every case is labeled. "
                               "Add unlabeled images, or turn self-training off."))
        if pretrained is not None and not projectfiles.is_model(pretrained, ["pretrained"]):
            raise ValueError(_("{path} is not a pretrained DiffusionSeg model (no config.json of kind "
                               "'pretrained'). Pretrain first or choose another folder.").format(path=pretrained))
        if mode != "full" and pretrained is None:
            raise ValueError(_("The {mode} mode reads the features of a frozen pretrained model. Pretrain "
                               "first, or choose the full mode.").format(mode=mode))
        out = projectfiles.new_folder(project.models_dir, project.task)
        self._start(RunRecord("finetune", Path(project.folder), out),
                    self.finetuneArgs(project, pretrained, out, iterations, device, preset=preset,
                                      image_size=image_size, batch_size=batch_size, mode=mode,
                                      selftrain=selftrain))
        return out

    def startPredict(self, project, model: Path, cases: Sequence[str] | None = None, device: str = "auto",
                     load_results: bool = True) -> Path:
        """Predict the given cases (default: every unlabeled case); returns the run folder.

        When the run ends, each output file becomes a new node (see :meth:`poll`).
        """
        if not projectfiles.is_model(model, [project.task]):
            raise ValueError(_("{path} is not a fine-tuned {task} model. Fine-tune first or choose another "
                               "model folder.").format(path=model, task=project.task))
        cases = list(project.unlabeled_cases() if cases is None else cases)
        if not cases:
            raise ValueError(_("There is no image to predict: every case is labeled."))
        out = projectfiles.new_folder(project.runs_dir, "predict")
        if len(cases) == 1:
            images = project.image_path(cases[0])
        else:
            images = projectfiles.link_inputs([project.image_path(c) for c in cases], out / "inputs")
        if images is None:
            raise ValueError(_("Case '{case}' has no image.").format(case=cases[0]))
        self._start(RunRecord("predict", Path(project.folder), out, load_results),
                    self.predictArgs(model, images, out / "predictions", device))
        return out

    def startSuggest(self, project, model: Path, count: int, device: str = "auto") -> Path:
        """Rank the unlabeled cases to annotate next; returns the run folder.

        ``model``: the pretrained model (cold start: the cases that represent the pool), or a
        fine-tuned model of the project's task (its uncertainty and distance to the labeled cases).
        """
        if not projectfiles.is_model(model, ["pretrained", project.task]):
            raise ValueError(_("{path} is not a pretrained or {task} model. Pretrain first, or choose another "
                               "model folder.").format(path=model, task=project.task))
        unlabeled = project.unlabeled_cases()
        if not unlabeled:
            raise ValueError(_("Every case is labeled: there is nothing to suggest. Add images first."))
        count = min(int(count), len(unlabeled))  # asking for more than there are is not a mistake worth a dialog
        out = projectfiles.new_folder(project.runs_dir, "suggest")
        self._start(RunRecord("suggest", Path(project.folder), out), self.suggestArgs(project, model, count, out, device))
        return out

    @staticmethod
    def curveArgs(project, pretrained: Path, out: Path, device: str = "auto") -> list[str]:
        args = ["curve", "--pretrained", str(pretrained), "--images", str(project.images_dir)]
        if project.task == "segmentation":
            args += ["--labels", str(project.labels_dir), "--classes", ",".join(project.classes)]
        else:
            args += ["--landmarks", str(project.labels_dir), "--landmark-names", ",".join(project.landmark_names)]
        return args + ["--out", str(out), "--device", device]

    def startCurve(self, project, pretrained: Path, device: str = "auto") -> Path:
        """Estimate what one more (and five more) annotations would bring; returns the run folder.

        A few short fine-tunings of ``pretrained`` on subsets of the labeled cases (docs/CLI.md, curve).
        """
        if len(project.labeled_cases()) < 2:
            raise ValueError(_("A learning curve needs at least 2 labeled cases. Label one more case first."))
        if not projectfiles.is_model(pretrained, ["pretrained"]):
            raise ValueError(_("{path} is not a pretrained DiffusionSeg model. Pretrain first or choose another "
                               "folder.").format(path=pretrained))
        out = projectfiles.new_folder(project.runs_dir, "curve")
        self._start(RunRecord("curve", Path(project.folder), out), self.curveArgs(project, pretrained, out, device))
        return out

    def _start(self, record: RunRecord, args: list[str]) -> None:
        if self.isRunning():
            raise RuntimeError(_("A DiffusionSeg run is already in progress. Wait for it or cancel it first."))
        self.process.start(args)
        self.run = record
        self._log(" ".join(self.process.command))

    def isRunning(self) -> bool:
        return self.run is not None

    @property
    def progress(self) -> ProgressState:
        return self.process.state

    def cancel(self) -> None:
        if self.run is not None:
            self.process.cancel()

    def poll(self) -> list[Event]:
        """Collect new events; when the run has ended, turn its outputs into nodes.

        The Widget calls this from a QTimer; batch mode and tests call :meth:`wait`.
        """
        if self.run is None:
            return []
        events = self.process.poll()
        for event in events:
            if event.kind == "log":
                self._log(event.data["text"])
        if not self.process.running:
            record, self.run = self.run, None
            record.result = self.process.result
            try:
                self.onRunFinished(record)
            finally:
                self.lastRun = record
        return events

    def wait(self, timeout: float | None = None, on_events=None) -> RunRecord | None:
        """Block until the current run ends (batch mode, tests); returns its record."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.run is not None:
            events = self.poll()
            if on_events is not None and events:
                on_events(events)
            if self.run is not None:
                if deadline is not None and time.monotonic() > deadline:
                    return None
                time.sleep(0.05)
        return self.lastRun

    def onRunFinished(self, record: RunRecord) -> None:
        """Record a prediction run's files per case and open the first case with its
        prediction (the others open from the case list, one at a time). Subclasses add GUI updates."""
        if record.kind == "suggest" and record.result is not None and record.result.ok:
            record.suggestions = readSuggestions(record.out)
        if record.kind == "curve" and record.result is not None and record.result.ok:
            record.curve = readCurve(record.out)
        if record.kind != "predict" or record.result is None:
            return
        files = predictionFiles(record.result.state.outputs, record.out / "predictions")
        # Review order: the least confident prediction first.
        files.sort(key=lambda item: predictionConfidence(item[1], item[0]) or 0.0)
        record.predictions = dict(files)
        if record.load_results and record.predictions:
            project = self.openProject(record.project_folder)
            case, path = next(iter(record.predictions.items()))
            node = self.loadPrediction(project, case, path)
            self.showOnly(project, case)
            record.loaded_nodes.append(node)

    def loadPrediction(self, project, case: str, path: Path):
        """A prediction file as a new node beside the case's image (never replacing a node),
        ready to be corrected and saved as the case's label."""
        volume = self.volumeOfCase(project, case) if case else None
        name = _("{case} prediction").format(case=case or path.name)
        node = self.loadLabelFile(project, Path(path), volume, name)
        self._tag(node, project, case, "prediction")
        return node

    # -- helpers ----------------------------------------------------------------------

    def _tag(self, node, project, case: str, role: str) -> None:
        node.SetAttribute(PROJECT_ATTRIBUTE, str(Path(project.folder).resolve()))
        node.SetAttribute(CASE_ATTRIBUTE, case)
        node.SetAttribute(ROLE_ATTRIBUTE, role)

    def _nodesByClass(self, class_name: str) -> list:
        scene = self.context.scene
        return [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]

    def _log(self, text: str) -> None:
        if self.logCallback is not None:
            self.logCallback(text)


def latestPredictions(project) -> dict[str, Path]:
    """Each case's prediction file from the newest prediction run that predicted it."""
    found: dict[str, Path] = {}
    runs = sorted(project.runs_dir.glob("predict-*"), key=lambda p: p.name) if project.runs_dir.is_dir() else []
    for run in runs:  # oldest first: a newer run overwrites
        found.update(predictionFiles([], run / "predictions"))
    return found


def readSuggestions(folder: Path) -> list[dict]:
    """The ranked suggestions of one ``suggest`` run folder, best first ([] when unreadable)."""
    try:
        document = json.loads((Path(folder) / SUGGESTIONS_FILE).read_text("utf-8"))
        return sorted(document["suggestions"], key=lambda s: int(s["rank"]))
    except (OSError, ValueError, KeyError, TypeError):
        return []


def readCurve(folder: Path) -> dict | None:
    """curve.json of one ``curve`` run folder, with the plot's path under "plot" (None when unreadable)."""
    try:
        document = json.loads((Path(folder) / CURVE_FILE).read_text("utf-8"))
        document["sentence"]  # noqa: B018  (a curve without its sentence is not one to show)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    document["plot"] = str(Path(folder) / CURVE_PLOT)
    return document


def latestCurve(project) -> dict | None:
    """The newest complete curve of the project (shown in the panel until a newer one exists)."""
    runs = sorted(project.runs_dir.glob("curve-*"), key=lambda p: p.name) if project.runs_dir.is_dir() else []
    for run in reversed(runs):
        curve = readCurve(run)
        if curve is not None:
            return curve
    return None


def latestSuggestions(project) -> list[dict]:
    """The newest complete suggestion run's list (older runs are history)."""
    runs = sorted(project.runs_dir.glob("suggest-*"), key=lambda p: p.name) if project.runs_dir.is_dir() else []
    for run in reversed(runs):
        suggestions = readSuggestions(run)
        if suggestions:
            return suggestions
    return []


def predictionConfidence(path: Path, case: str) -> float | None:
    """The confidence the backend reported for ``case`` in the run that wrote ``path`` (None: not reported)."""
    try:
        figures = json.loads((Path(path).parent / vocabulary().PREDICTION_CONFIDENCE_FILE).read_text("utf-8"))
        return float(figures[case]["confidence"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # an older run without the file, or one cut off before this case: no order to give


def predictionFiles(outputs: Sequence[tuple[str, str]], folder: Path) -> list[tuple[str, Path]]:
    """One loadable file per case, from the run's ``output`` events (else from its folder)."""
    words = vocabulary()  # the prediction files the module shows, best first (predict also writes .csv, .png)
    case_name, loadable = words.case_name, words.LOADABLE_PREDICTION_SUFFIXES
    if not outputs and folder.is_dir():
        outputs = [(case_name(p), str(p)) for p in sorted(folder.iterdir()) if p.is_file()]
    best: dict[str, tuple[int, Path]] = {}
    for case, path in outputs:
        path = Path(path)
        rank = next((i for i, suffix in enumerate(loadable) if path.name.lower().endswith(suffix)), None)
        if rank is None:
            continue
        case = case or case_name(path)
        if case not in best or rank < best[case][0]:
            best[case] = (rank, path)
    return [(case, best[case][1]) for case in sorted(best)]
