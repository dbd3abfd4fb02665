"""DiffusionSeg: few-shot segmentation and landmark detection from a diffusion-pretrained U-Net.

Slicer scripted module in the template's order: Module, parameter node, Widget, Logic,
Test. The Logic is the API (DiffusionSegModuleLib.corelogic.CoreLogic plus the parts
that need the Slicer application); the Widget only binds DiffusionSeg.ui to it. Training
and prediction run in a background PythonSlicer process, so Slicer stays responsive.
"""

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Optional, Union

import qt
import vtk

import slicer
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from DiffusionSegModuleLib import backend, dependencies, nodeio, projectfiles
from DiffusionSegModuleLib.corelogic import CoreLogic, RunRecord, latestCurve
from DiffusionSegModuleLib.nodeio import MRMLContext

backend.ensure_importable()
from DiffusionSegLib.vocabulary import (  # noqa: E402  (stated once)
    DEFAULT_FINETUNE_ITERATIONS, DEFAULT_PRETRAIN_ITERATIONS, FINETUNE_MODES, FINETUNE_NETWORKS, MODALITIES,
    PLAIN_PRESET, TASKS, FinetuneMode, FinetuneNetwork, Modality)

#
# DiffusionSeg
#


class DiffusionSeg(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DiffusionSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["Segmentations", "Markups"]
        self.parent.contributors = ["DiffusionSeg developers"]
        self.parent.helpText = _(
            "Pretrain a diffusion U-Net on your unlabeled images, annotate a few cases, fine-tune, "
            "and predict segmentations or landmarks on the rest. Everything runs in a background "
            "process; the project folder holds images, labels, models and runs. "
            "See <a href='https://github.com/DiffusionSeg/SlicerDiffusionSeg'>the documentation</a>.")
        self.parent.acknowledgementText = _(
            "Built on MONAI's DiffusionModelUNet and 3D Slicer's Segmentations and Markups modules.")


#
# DiffusionSegParameterNode
#


@parameterNodeWrapper
class DiffusionSegParameterNode:
    """Everything the user chose in the panel (saved with the scene).

    projectDir: the project folder. task, imageKind, names, modality: used to create a project.
    inputVolume: the current image. annotationNode: what Save writes (an annotation or a
    prediction being corrected); None until the user annotates or opens a case.
    pretrainedModel, taskModel: model folders. finetuneMode: full | probe | mlp (docs/CLI.md).
    finetuneNetwork: pretrained (fine-tune the pretrained diffusion U-Net) | plain (MONAI's BasicUNet
    from scratch, ``finetune --init random --preset plain``); set to the project's default
    (``CoreLogic.networkByDefault``) whenever a project is opened.
    selfTrain: fine-tune with ``diffusionseg selftrain`` (also learns from the unlabeled cases); set to the
    project's default (``CoreLogic.selftrainByDefault``: on for 2D segmentation) whenever a project is opened.
    device: where the backend computes. suggestCount: how many cases "Suggest" ranks.
    """

    projectDir: Path
    task: Annotated[str, Choice(list(TASKS))] = TASKS[0]
    imageKind: Annotated[str, Choice(["3D", "2D"])] = "3D"
    names: str = ""
    modality: Annotated[str, Choice(list(MODALITIES))] = Modality.OTHER.value
    inputVolume: vtkMRMLScalarVolumeNode
    pretrainIterations: Annotated[int, WithinRange(1, 10_000_000)] = DEFAULT_PRETRAIN_ITERATIONS
    pretrainedModel: Path
    # Optional: the wrapper writes None before anything is annotated; a Union without None cannot hold it.
    annotationNode: Optional[Union[vtkMRMLSegmentationNode, vtkMRMLMarkupsFiducialNode]] = None
    finetuneIterations: Annotated[int, WithinRange(1, 10_000_000)] = DEFAULT_FINETUNE_ITERATIONS
    finetuneMode: Annotated[str, Choice(list(FINETUNE_MODES))] = FinetuneMode.FULL.value
    finetuneNetwork: Annotated[str, Choice(list(FINETUNE_NETWORKS))] = FinetuneNetwork.PRETRAINED.value
    selfTrain: bool = False
    taskModel: Path
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"
    suggestCount: Annotated[int, WithinRange(1, 1000)] = 5


#
# DiffusionSegWidget
#


class DiffusionSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds DiffusionSeg.ui to the Logic. Choices live in the parameter node, the running
    job in the Logic; the widget keeps only what it shows (the case list, the loss image)."""

    # (run kind, button): each button starts its run and turns into that run's Cancel button.
    RUN_BUTTONS = (("pretrain", "pretrainButton"), ("finetune", "finetuneButton"),
                   ("predict", "predictCurrentButton"), ("predict", "predictUnlabeledButton"),
                   ("suggest", "suggestButton"), ("curve", "curveButton"))
    # Markups report placing, clearing and moving a point by these events, not by ModifiedEvent.
    POINT_EVENTS = (slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                    slicer.vtkMRMLMarkupsNode.PointPositionUndefinedEvent,
                    slicer.vtkMRMLMarkupsNode.PointModifiedEvent)
    STATUS_TEXT = {"unlabeled": _("unlabeled"), "labeled": _("labeled"), "predicted": _("predicted: review"),
                   "suggested": _("suggested")}

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedAnnotation = None
        self._caseRows = []
        self._lossCurve = (None, None)  # (path, mtime) of the image shown

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DiffusionSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DiffusionSegLogic()
        self.logic.logCallback = self.appendLog

        # The embedded Segment Editor edits through its own parameter node (a singleton of this module).
        self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(self.logic.segmentEditorNode())
        for table in (self.ui.caseTable, self.ui.landmarksTable):
            table.horizontalHeader().setStretchLastSection(True)
            table.verticalHeader().visible = False

        self.ui.openProjectButton.connect("clicked(bool)", self.onOpenProject)
        self.ui.addVolumeButton.connect("clicked(bool)", self.onAddVolume)
        self.ui.addFolderButton.connect("clicked(bool)", self.onAddFolder)
        self.ui.caseTable.connect("cellClicked(int,int)", self.onCaseClicked)
        self.ui.nextUnlabeledButton.connect("clicked(bool)", self.onNextUnlabeled)
        self.ui.annotateButton.connect("clicked(bool)", self.onAnnotate)
        self.ui.placeLandmarksButton.connect("clicked(bool)", self.onPlaceLandmarks)
        self.ui.replaceLandmarkButton.connect("clicked(bool)", self.onReplaceLandmark)
        self.ui.saveAnnotationButton.connect("clicked(bool)", self.onSaveAnnotation)
        self.ui.show3DButton.connect("clicked(bool)", self.onShow3D)
        self.ui.pretrainButton.connect("clicked(bool)", self.onPretrain)
        self.ui.finetuneButton.connect("clicked(bool)", self.onFinetune)
        self.ui.predictCurrentButton.connect("clicked(bool)", self.onPredictCurrent)
        self.ui.predictUnlabeledButton.connect("clicked(bool)", self.onPredictUnlabeled)
        self.ui.suggestButton.connect("clicked(bool)", self.onSuggest)
        self.ui.curveButton.connect("clicked(bool)", self.onCurve)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)

        # The background run is polled from the GUI thread: Slicer stays responsive and
        # nodes are only ever created on the main thread.
        self.pollTimer = qt.QTimer()
        self.pollTimer.setInterval(250)
        self.pollTimer.connect("timeout()", self.onPollTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self.refreshCases()

    def cleanup(self) -> None:
        self.removeObservers()
        self.pollTimer.stop()
        if self.logic is not None and self.logic.isRunning():
            self.logic.cancel()  # never leave a backend running behind a closed Slicer

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUI)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: Optional[DiffusionSegParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUI)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # The .ui sets the Qt dynamic property "SlicerParameterName" on each bound widget.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUI)
            self.updateGUI()

    # -- GUI state, derived from the parameter node and the Logic ---------------------

    def updateGUI(self, caller=None, event=None) -> None:
        p = self._parameterNode
        try:
            project = self.logic.currentProject() if p else None
        except Exception as exc:  # a damaged project.json: say so instead of breaking the panel
            project = None
            self.ui.statusLabel.text = str(exc)
        running = self.logic.run.kind if self.logic.isRunning() else None
        if project is None:
            self.ui.projectStatusLabel.text = _("No project open.")
            self.ui.labeledCountLabel.text = ""
        else:
            status = self.logic.projectStatus(project)
            self.ui.projectStatusLabel.text = _("{task}, {dims}D: {names}. {images} images.").format(
                task=project.task, dims=project.dims, names=", ".join(self.logic.names(project)), images=status["images"])
            self.ui.labeledCountLabel.text = _("{labeled} of {images} cases labeled.").format(**status)
        for widgetName in ("taskComboBox", "dimsComboBox", "namesLineEdit", "modalityComboBox"):
            getattr(self.ui, widgetName).enabled = project is None
        haveVolume = bool(p and p.inputVolume)
        annotation = p.annotationNode if p else None
        idle = running is None
        self.ui.openProjectButton.enabled = idle
        self.ui.addVolumeButton.enabled = idle and project is not None and haveVolume
        self.ui.addFolderButton.enabled = idle and project is not None
        self.ui.nextUnlabeledButton.enabled = project is not None
        self.ui.caseTable.enabled = project is not None
        self.ui.annotateButton.enabled = project is not None and haveVolume
        self.ui.saveAnnotationButton.enabled = project is not None and annotation is not None
        # The editor that fits the task: Segment Editor for segments, the landmark list for points.
        segmentation = project is not None and project.task == "segmentation"
        landmarks = project is not None and project.task == "landmarks"
        self.ui.segmentEditorWidget.visible = segmentation
        self.ui.show3DButton.visible = segmentation
        self.ui.show3DButton.enabled = bool(annotation is not None and annotation.IsA("vtkMRMLSegmentationNode"))
        for widgetName in ("landmarksTable", "placeLandmarksButton", "replaceLandmarkButton"):
            getattr(self.ui, widgetName).visible = landmarks
        isPointList = bool(annotation is not None and annotation.IsA("vtkMRMLMarkupsFiducialNode"))
        self.ui.placeLandmarksButton.enabled = isPointList
        self.ui.replaceLandmarkButton.enabled = isPointList
        self._followAnnotation(annotation, project)
        texts = {"pretrainButton": _("Pretrain on all project images"), "finetuneButton": _("Fine-tune"),
                 "predictCurrentButton": _("Predict current image"),
                 "predictUnlabeledButton": _("Predict all unlabeled"), "suggestButton": _("Suggest cases to annotate"),
                 "curveButton": _("Is one more annotation worth it?")}
        for kind, buttonName in self.RUN_BUTTONS:
            button = getattr(self.ui, buttonName)
            # The button of the running job becomes its Cancel button; the others wait.
            button.text = _("Cancel") if running == kind else texts[buttonName]
            button.enabled = project is not None and (idle or running == kind)
        self.ui.progressBar.visible = running is not None

    def _followAnnotation(self, annotation, project) -> None:
        """Point the editors at the current annotation and watch its landmarks."""
        if annotation is not self._observedAnnotation:
            if self._observedAnnotation is not None and self._observedAnnotation.IsA("vtkMRMLMarkupsFiducialNode"):
                for event in self.POINT_EVENTS:
                    self.removeObserver(self._observedAnnotation, event, self.onAnnotationModified)
            self._observedAnnotation = annotation
            if annotation is not None and annotation.IsA("vtkMRMLMarkupsFiducialNode"):
                for event in self.POINT_EVENTS:
                    self.addObserver(annotation, event, self.onAnnotationModified)
            if annotation is not None and annotation.IsA("vtkMRMLSegmentationNode"):
                editor = self.ui.segmentEditorWidget
                editor.setSegmentationNode(annotation)
                volume = self.logic.volumeOfCase(project, self.logic.caseOfNode(project, annotation), load=False) \
                    if project is not None and self.logic.caseOfNode(project, annotation) else None
                editor.setSourceVolumeNode(volume or self._parameterNode.inputVolume)
        self.updateLandmarksTable(project)

    def updateLandmarksTable(self, project=None) -> None:
        """One row per landmark of the project: placed, next (the next click places it), or not placed."""
        table = self.ui.landmarksTable
        annotation = self._observedAnnotation
        if project is None or project.task != "landmarks" or annotation is None \
                or not annotation.IsA("vtkMRMLMarkupsFiducialNode"):
            table.setRowCount(0)
            return
        states = self.logic.landmarkStates(project, annotation)
        table.setRowCount(len(states))
        nextFound = False
        for row, (name, _index, placed) in enumerate(states):
            if placed:
                status = _("placed")
            elif not nextFound:
                status, nextFound = _("next"), True
            else:
                status = _("not placed")
            table.setItem(row, 0, qt.QTableWidgetItem(name))
            table.setItem(row, 1, qt.QTableWidgetItem(status))

    def onAnnotationModified(self, caller=None, event=None) -> None:
        project = self.logic.currentProject()
        self.updateLandmarksTable(project)
        if project is not None and self._observedAnnotation is not None \
                and all(placed for _n, _i, placed in self.logic.landmarkStates(project, self._observedAnnotation)):
            self.logic.stopPlacing()  # every landmark is placed: clicks go back to moving the view

    def refreshCases(self) -> None:
        """Fill the case list from the project folder (after open, save, add, predict), in review
        order: predictions first, the least confident at the top; then unlabeled; then labeled."""
        project = self.logic.currentProject() if self._parameterNode else None
        self._caseRows = self.logic.caseRows(project) if project is not None else []
        table = self.ui.caseTable
        table.setRowCount(len(self._caseRows))
        for row, caseRow in enumerate(self._caseRows):
            status = self.STATUS_TEXT[caseRow.status]
            if caseRow.confidence is not None:
                status = _("{status} (confidence {confidence:.2f})").format(status=status, confidence=caseRow.confidence)
            if caseRow.rank is not None:
                status = _("{status} #{rank}: {reason}").format(status=status, rank=caseRow.rank, reason=caseRow.reason)
            table.setItem(row, 0, qt.QTableWidgetItem(caseRow.case))
            table.setItem(row, 1, qt.QTableWidgetItem(status))
        self.showCurve(project)
        self.updateGUI()

    def updateProgress(self) -> None:
        state = self.logic.progress
        self.ui.progressBar.maximum = 1000 if state.total else 0  # 0: busy indicator until the total is known
        self.ui.progressBar.value = int(state.fraction * 1000)
        self.ui.statusLabel.text = state.summary()  # step, loss, and the time left (ETA)
        self.updateLossCurve()

    def updateLossCurve(self) -> None:
        """Show the running job's loss.png, reloaded whenever the backend rewrites it."""
        path = self.logic.lossCurvePath()
        if path is None or not path.is_file():
            return
        mtime = path.stat().st_mtime
        if (path, mtime) == self._lossCurve:
            return
        pixmap = qt.QPixmap(str(path))
        if pixmap.isNull():  # caught mid-write: the next poll reads it
            return
        self._lossCurve = (path, mtime)
        self.ui.lossCurveLabel.setPixmap(pixmap.scaledToWidth(max(200, self.ui.lossCurveLabel.width)))

    def appendLog(self, text: str) -> None:
        logging.info(text)
        self.ui.logTextEdit.appendPlainText(text)

    # -- actions ----------------------------------------------------------------------

    def onOpenProject(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not open or create the project."), waitCursor=True):
            self.logic.openOrCreateProject()
        self.refreshCases()

    def onAddVolume(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not add the image."), waitCursor=True):
            case = self.logic.addVolume(self.logic.currentProject(), self._parameterNode.inputVolume)
            self.ui.statusLabel.text = _("Added case '{case}'.").format(case=case)
        self.refreshCases()

    def onAddFolder(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Folder of images to add"))
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not add the images."), waitCursor=True):
            cases = self.logic.addImagesFromFolder(self.logic.currentProject(), folder)
            self.ui.statusLabel.text = _("Added {count} images.").format(count=len(cases))
        self.refreshCases()

    def onCaseClicked(self, row: int, column: int = 0) -> None:
        if 0 <= row < len(self._caseRows):
            self.openCase(self._caseRows[row].case)

    def openCase(self, case: str, create: bool = False) -> None:
        """Open a case for review: its image as background, its label or prediction to edit
        (``create``: a new annotation when it has neither)."""
        with slicer.util.tryWithErrorDisplay(_("Could not open the case."), waitCursor=True):
            volume, annotation = self.logic.openCase(self.logic.requireProject(), case, create=create)
            self._parameterNode.inputVolume = volume
            self._parameterNode.annotationNode = annotation
            slicer.util.setSliceViewerLayers(background=volume, fit=True)
            self.ui.statusLabel.text = _("Case '{case}': {what}.").format(
                case=case, what=annotation.GetName() if annotation is not None else _("press Annotate to label it"))

    def onNextUnlabeled(self) -> None:
        project = self.logic.currentProject()
        case = self.logic.nextUnlabeledCase(project) if project is not None else None
        if case is None:
            slicer.util.infoDisplay(_("Every image of the project is labeled."))
            return
        self.openCase(case, create=True)  # the user asked for a case to annotate

    def onAnnotate(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not start annotating."), waitCursor=True):
            node = self.logic.startAnnotation(self._parameterNode.inputVolume)
            self._parameterNode.annotationNode = node
        self.refreshCases()

    def onPlaceLandmarks(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not start placing landmarks."), waitCursor=True):
            self.logic.startPlacing(self._parameterNode.annotationNode)

    def onReplaceLandmark(self) -> None:
        row = self.ui.landmarksTable.currentRow()
        with slicer.util.tryWithErrorDisplay(_("Could not re-place the landmark."), waitCursor=True):
            if row < 0:
                raise ValueError(_("Select the landmark to re-place in the list."))
            self.logic.replaceLandmark(self.logic.requireProject(), self._parameterNode.annotationNode, row)
        self.updateLandmarksTable(self.logic.currentProject())

    def onSaveAnnotation(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not save the annotation."), waitCursor=True):
            # The case is the annotation's own; the current image only names a case for a node made by hand.
            saved = self.logic.saveAnnotation(self.logic.currentProject(), self._parameterNode.annotationNode,
                                              self._parameterNode.inputVolume)
            message = _("Saved case '{case}'.").format(case=saved["case"])
            if saved["missing"]:
                message += " " + _("Not placed: {names}.").format(names=", ".join(saved["missing"]))
            self.ui.statusLabel.text = message
        self.refreshCases()

    def onShow3D(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not show the segmentation in 3D."), waitCursor=True):
            self.logic.showIn3D(self._parameterNode.annotationNode)

    def onPretrain(self) -> None:
        self._startOrCancel("pretrain", lambda: self.logic.startPretrainFromParameters())

    def onFinetune(self) -> None:
        self._startOrCancel("finetune", lambda: self.logic.startFinetuneFromParameters())

    def onPredictCurrent(self) -> None:
        self._startOrCancel("predict", lambda: self.logic.startPredictFromParameters(currentOnly=True))

    def onPredictUnlabeled(self) -> None:
        self._startOrCancel("predict", lambda: self.logic.startPredictFromParameters(currentOnly=False))

    def onSuggest(self) -> None:
        self._startOrCancel("suggest", lambda: self.logic.startSuggestFromParameters())

    def onCurve(self) -> None:
        self._startOrCancel("curve", lambda: self.logic.startCurveFromParameters())

    def showCurve(self, project) -> None:
        """The project's newest learning curve: its plot and its sentence."""
        curve = latestCurve(project) if project is not None else None
        if curve is None:
            self.ui.curveImageLabel.clear()
            self.ui.curveSentenceLabel.text = ""
            return
        pixmap = qt.QPixmap(curve["plot"])
        if not pixmap.isNull():
            self.ui.curveImageLabel.setPixmap(pixmap.scaledToWidth(max(200, self.ui.curveImageLabel.width)))
        self.ui.curveSentenceLabel.text = curve["sentence"]

    def _startOrCancel(self, kind: str, start) -> None:
        if self.logic.isRunning():
            if self.logic.run.kind == kind:
                self.logic.cancel()
                self.ui.statusLabel.text = _("Cancelling...")
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start."), waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            if start() is None:  # the user declined
                return
            self.ui.logTextEdit.clear()
            self._lossCurve = (None, None)
            self.ui.lossCurveLabel.clear()
            self.pollTimer.start()
        self.updateGUI()
        self.updateProgress()

    def onPollTimer(self) -> None:
        self.logic.poll()
        self.updateProgress()
        if self.logic.isRunning():
            return
        self.pollTimer.stop()
        record = self.logic.lastRun
        if record is not None and record.result is not None:
            self.ui.statusLabel.text = self.logic.resultSummary(record)
            if record.result.status == "failed":
                slicer.util.errorDisplay(record.result.message, windowTitle=_("DiffusionSeg"),
                                         detailedText="\n".join(record.result.stderr_tail))
        self.refreshCases()

    def onInstallDependencies(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not install the dependencies."), waitCursor=True):
            if self.logic.ensureDependencies(askConfirmation=True, force=True):
                slicer.util.infoDisplay(_("DiffusionSeg's dependencies are installed."))


#
# DiffusionSegLogic
#


class DiffusionSegLogic(CoreLogic, ScriptedLoadableModuleLogic):
    """The module's API: CoreLogic (projects, annotations, runs, results as nodes) plus the
    Slicer application parts (PythonSlicer, pip, parameter node, views, editors).

    Usable without the Widget, e.g. from the Python console or DiffusionSegBatch.py.

    CoreLogic comes first in the bases: Slicer's ScriptedLoadableModuleLogic.__init__ calls
    ``super().__init__()`` (Slicer 5.8 and later), which must reach ``object``, not
    CoreLogic's constructor, whose arguments only this class knows.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        context = MRMLContext(slicer.mrmlScene, slicer.modules.segmentations.logic(), slicer.modules.markups.logic())
        CoreLogic.__init__(self, context, pythonSlicerExecutable())
        self.logCallback = logging.info

    def getParameterNode(self):
        return DiffusionSegParameterNode(super().getParameterNode())

    # -- project from the parameter node ----------------------------------------------

    def currentProject(self):
        """The project in the parameter node's folder, or None when there is none yet."""
        folder = self.getParameterNode().projectDir
        return self.openProject(folder) if self.isProject(folder) else None

    def requireProject(self):
        project = self.currentProject()
        if project is None:
            raise ValueError(_("Open or create a project first."))
        return project

    def openOrCreateProject(self):
        """Open the parameter node's project folder, or create the project there."""
        p = self.getParameterNode()
        folder = p.projectDir
        if not folder or str(folder) == ".":
            raise ValueError(_("Choose a project folder."))
        if self.isProject(folder):
            project = self.openProject(folder)
        else:
            names = [n for n in p.names.split(",") if n.strip()]
            if not names:
                raise ValueError(_("Enter the class names (segmentation) or landmark names, separated by commas."))
            project = self.createProject(folder, p.task, 3 if p.imageKind == "3D" else 2, names, p.modality)
        p.task = project.task
        p.imageKind = f"{project.dims}D"
        p.names = ", ".join(self.names(project))
        p.modality = project.modality
        p.finetuneNetwork = self.networkByDefault(project)
        p.selfTrain = self.selftrainByDefault(project, p.finetuneMode, p.finetuneNetwork)
        # Offer the newest models of the project unless the user already chose some.
        if not self._isModelPath(p.pretrainedModel):
            models = self.listModels(project, "pretrained")
            if models:
                p.pretrainedModel = models[0]
        if not self._isModelPath(p.taskModel):
            models = self.listModels(project, project.task)
            if models:
                p.taskModel = models[0]
        return project

    @staticmethod
    def listModels(project, kind):
        return projectfiles.list_models(project, [kind])

    @staticmethod
    def _isModelPath(path) -> bool:
        return projectfiles.is_model(path)

    # -- annotation in the editors ----------------------------------------------------

    def segmentEditorNode(self):
        """The Segment Editor parameter node of the module's embedded editor (one per scene)."""
        node = slicer.mrmlScene.GetSingletonNode("DiffusionSeg", "vtkMRMLSegmentEditorNode")
        if node is None:
            node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            node.UnRegister(None)
            node.SetSingletonTag("DiffusionSeg")
            node = slicer.mrmlScene.AddNode(node)
        return node

    def loadNextUnlabeled(self):
        project = self.requireProject()
        case = self.nextUnlabeledCase(project)
        return None if case is None else self.openCase(project, case, create=True)[0]

    def startAnnotation(self, volume):
        """The annotation node of ``volume`` (its open annotation, saved label, prediction, or a
        new one), shown alone with the image as background. The panel's editors then edit it."""
        if volume is None:
            raise ValueError(_("Select the current image first."))
        project = self.requireProject()
        case = self.addVolume(project, volume)
        volume, node = self.openCase(project, case, create=True)
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        return node

    def landmarkStates(self, project, node):
        return nodeio.landmark_states(node, project.landmark_names)

    def startPlacing(self, node, persistent: bool = True) -> None:
        """Clicks in the views place the next unplaced landmark of ``node``; the list is locked
        to the project's landmarks, so placing stops after the last one."""
        if node is None or not node.IsA("vtkMRMLMarkupsFiducialNode"):
            raise ValueError(_("Open a landmarks annotation first (Annotate, or click a case)."))
        markupsLogic = slicer.modules.markups.logic()
        markupsLogic.SetActiveList(node)
        markupsLogic.StartPlaceMode(persistent)

    def replaceLandmark(self, project, node, row: int) -> None:
        """Clear landmark ``row`` (project order) and place it with the next click."""
        name, index, _placed = self.landmarkStates(project, node)[row]
        if index < 0:
            raise ValueError(_("Landmark '{name}' is not in '{list}'.").format(name=name, list=node.GetName()))
        node.UnsetNthControlPointPosition(index)
        self.startPlacing(node, persistent=False)

    def stopPlacing(self) -> None:
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        if interaction is not None:
            interaction.SwitchToViewTransformMode()

    def showIn3D(self, node) -> None:
        """Show a segmentation as surfaces in the 3D view."""
        if node is None or not node.IsA("vtkMRMLSegmentationNode"):
            raise ValueError(_("Open a segmentation first."))
        node.CreateClosedSurfaceRepresentation()
        node.CreateDefaultDisplayNodes()
        node.GetDisplayNode().SetVisibility3D(True)

    # -- runs from the parameter node -------------------------------------------------

    def startPretrainFromParameters(self):
        p = self.getParameterNode()
        return self.startPretrain(self.requireProject(), p.pretrainIterations, p.device)

    def startFinetuneFromParameters(self):
        p = self.getParameterNode()
        pretrained = p.pretrainedModel if self._isModelPath(p.pretrainedModel) else None
        # The plain BasicUNet is trained from scratch: no pretrained model to miss.
        if pretrained is None and p.finetuneNetwork != PLAIN_PRESET and not slicer.util.confirmYesNoDisplay(
                _("No pretrained model is chosen. Fine-tune from random initialisation?")):
            return None
        return self.startFinetune(self.requireProject(), pretrained, p.finetuneIterations, p.device,
                                  mode=p.finetuneMode, selftrain=p.selfTrain, network=p.finetuneNetwork)

    def startPredictFromParameters(self, currentOnly: bool):
        p = self.getParameterNode()
        project = self.requireProject()
        cases = None
        if currentOnly:
            if not p.inputVolume:
                raise ValueError(_("Select the current image first."))
            cases = [self.addVolume(project, p.inputVolume)]
        return self.startPredict(project, p.taskModel, cases, p.device)

    def startSuggestFromParameters(self):
        """Suggest with the fine-tuned model once there is one and a labeled case (its uncertainty
        counts then), else with the pretrained model (cold start: cases that represent the pool)."""
        p = self.getParameterNode()
        project = self.requireProject()
        if projectfiles.is_model(p.taskModel, [project.task]) and project.labeled_cases():
            model = p.taskModel
        elif projectfiles.is_model(p.pretrainedModel, ["pretrained"]):
            model = p.pretrainedModel
        else:
            raise ValueError(_("Suggesting cases needs a pretrained model: pretrain first, or choose one."))
        return self.startSuggest(project, model, p.suggestCount, p.device)

    def startCurveFromParameters(self):
        p = self.getParameterNode()
        return self.startCurve(self.requireProject(), p.pretrainedModel, p.device)

    def lossCurvePath(self):
        """loss.png of the running training run, else of the last one (None: no training run)."""
        record = self.run or self.lastRun
        if record is None or record.kind not in ("pretrain", "finetune"):
            return None
        return Path(record.out) / "loss.png"

    def onRunFinished(self, record: RunRecord) -> None:
        """Offer the new model for the next step; open the first predicted case for review."""
        CoreLogic.onRunFinished(self, record)
        p = self.getParameterNode()
        if record.kind == "pretrain" and self._isModelPath(record.out):
            p.pretrainedModel = record.out
        elif record.kind == "finetune" and self._isModelPath(record.out):
            p.taskModel = record.out  # also after Cancel: the last checkpoint is a usable model
        elif record.kind == "suggest" and record.suggestions:
            # Open the first suggestion, ready to annotate.
            project = self.openProject(record.project_folder)
            volume, annotation = self.openCase(project, record.suggestions[0]["case"], create=True)
            p.inputVolume = volume
            p.annotationNode = annotation
            slicer.util.setSliceViewerLayers(background=volume, fit=True)
        elif record.kind == "predict" and record.loaded_nodes:
            prediction = record.loaded_nodes[0]
            project = self.openProject(record.project_folder)
            volume = self.volumeOfCase(project, self.caseOfNode(project, prediction))
            p.inputVolume = volume
            p.annotationNode = prediction  # ready to correct and save as a labeled case
            slicer.util.setSliceViewerLayers(background=volume, fit=True)

    def resultSummary(self, record: RunRecord) -> str:
        result = record.result
        if result.status == "done":
            if record.kind == "predict":
                return _("Done: {count} cases predicted; each is in the case list, marked for review.").format(
                    count=len(record.predictions))
            if record.kind == "curve" and record.curve is not None:
                return record.curve["sentence"]
            if record.kind == "suggest":
                top = record.suggestions[0] if record.suggestions else {"case": "-", "reason": ""}
                return _("Suggested {count} cases; '{case}' first ({reason}), now open to annotate.").format(
                    count=len(record.suggestions), case=top["case"], reason=top.get("reason", ""))
            return _("Done: model saved in {path}.").format(path=record.out)
        return result.message

    # -- dependencies -----------------------------------------------------------------

    def ensureDependencies(self, askConfirmation: bool = True, force: bool = False) -> bool:
        """Make sure the backend's packages are in Slicer's Python; True when they are.

        torch through the PyTorch extension (the right CUDA build) in the range the backend
        needs (dependencies.TORCH_REQUIREMENT; an older torch is offered an update), the rest
        through pip with Slicer's own numpy, SimpleITK, vtk and torch pinned.
        """
        missing = dependencies.missing_requirements()
        torchProblem = dependencies.torch_problem()  # from package metadata: torch is not imported here
        if torchProblem is None and not missing and not force:
            return True
        changedWhileImported = []
        if torchProblem is not None:
            try:
                import PyTorchUtils
            except ModuleNotFoundError:
                raise RuntimeError(_("DiffusionSeg needs the PyTorch extension. Install 'PyTorch' from the "
                                     "Extensions Manager, restart Slicer, and try again.") + "\n" + torchProblem)
            torchLogic = PyTorchUtils.PyTorchUtilsLogic()
            requirement = dependencies.torch_version_requirement()
            if dependencies.torch_version() is not None:  # installed, but older than the backend needs
                if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                        torchProblem + "\n\n" + _("Update PyTorch now? This may take several minutes.")):
                    return False
                wasImported = "torch" in sys.modules
                torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=requirement)
                changedWhileImported += ["torch"] if wasImported else []
            elif torchLogic.installTorch(askConfirmation=askConfirmation, torchVersionRequirement=requirement) is None:
                return False
            torchProblem = dependencies.torch_problem()
            if torchProblem is not None:  # e.g. no build in that range for this Python or GPU driver
                raise RuntimeError(torchProblem)
        if missing:
            if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                    _("DiffusionSeg needs these Python packages in Slicer: {packages}. Install them now? "
                      "This may take a few minutes.").format(packages=", ".join(missing))):
                return False
            changedWhileImported += self._pipInstall()
        if changedWhileImported and slicer.util.confirmYesNoDisplay(
                _("Restart Slicer to use the updated packages ({packages})?").format(
                    packages=", ".join(changedWhileImported))):
            slicer.util.restart()
        return True

    def _pipInstall(self) -> list:
        """pip-install requirements-slicer.txt with Slicer's numpy, SimpleITK, vtk and torch pinned.

        Returns the updated packages this Slicer session had already imported (a restart uses them).
        """
        import tempfile

        importNames = {"pynrrd": "nrrd"}
        alreadyImported = [name for name in (dependencies.requirement_name(r) for r in dependencies.read_requirements())
                           if importNames.get(name, name) in sys.modules]
        with tempfile.TemporaryDirectory() as folder:
            constraintsFile = Path(folder) / "constraints.txt"
            constraintsFile.write_text("\n".join(dependencies.constraints()) + "\n", encoding="utf-8")
            try:
                slicer.util.pip_install(["-r", str(dependencies.requirements_file()), "-c", str(constraintsFile)])
            except Exception as exc:
                raise RuntimeError(_("Installing {packages} failed without changing Slicer's numpy, SimpleITK, vtk "
                                     "or torch: {error}").format(
                    packages=", ".join(dependencies.read_requirements()), error=exc))
        return alreadyImported


def pythonSlicerExecutable() -> str:
    """PythonSlicer: Slicer's Python interpreter with Slicer's environment, for the backend."""
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    found = shutil.which("PythonSlicer")
    if found:
        return found
    for folder in (Path(sys.executable).parent, Path(slicer.app.slicerHome) / "bin"):
        if (folder / name).is_file():
            return str(folder / name)
    return sys.executable


#
# DiffusionSegTest
#


class DiffusionSegTest(ScriptedLoadableModuleTest):
    """Self-test for Slicer's CI: sample data, a tiny pretraining and fine-tune, a prediction, checked."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_DiffusionSeg_FinetuneAndPredict()

    def test_DiffusionSeg_FinetuneAndPredict(self):
        import tempfile

        self.delayDisplay("Starting the test")
        logic = DiffusionSegLogic()
        missing = dependencies.missing_requirements()
        if missing or dependencies.torch_problem() is not None:
            # CI must not install packages behind the user's back: say what is missing instead.
            self.skipTest(f"DiffusionSeg dependencies missing: {missing or ['torch']}. Use 'Install dependencies'.")
        with tempfile.TemporaryDirectory(prefix="DiffusionSegTest-") as folder:
            self._finetuneAndPredict(logic, Path(folder))
        self.delayDisplay("Test passed")

    def _finetuneAndPredict(self, logic, folder: Path):
        import numpy as np

        from DiffusionSegModuleLib import nodeio, projectfiles

        project = logic.createProject(folder / "project", "segmentation", 2, ["disc"], "other")

        # Sample data: bright discs on noise in 2D single-slice volumes; the disc is the label.
        rng = np.random.default_rng(0)
        volumes = []
        for index in range(3):
            yy, xx = np.mgrid[0:32, 0:32]
            disc = (yy - 16 - index) ** 2 + (xx - 15 + index) ** 2 < 49
            array = (rng.normal(0, 10, (1, 32, 32)) + 100 * disc[None]).astype(np.float32)
            volume = slicer.util.addVolumeFromArray(array, name=f"sample{index}")
            volume.SetSpacing(0.5, 0.5, 1.0)
            volumes.append(volume)
            if index < 2:
                segmentation = logic.createAnnotation(project, volume)
                slicer.util.updateSegmentBinaryLabelmapFromArray(disc[None].astype(np.uint8), segmentation, "disc", volume)
                logic.saveAnnotation(project, segmentation, volume)
        logic.addVolume(project, volumes[2])
        self.assertEqual(len(project.labeled_cases()), 2)

        # Tiny runs on the CPU: 32 x 32 network input, the tiny U-Net, 2 images per step.
        tiny = {"device": "cpu", "preset": "tiny", "image_size": (32, 32), "batch_size": 2}
        self.delayDisplay("Pretraining a tiny model")
        pretrained = logic.startPretrain(project, iterations=3, **tiny)
        record = logic.wait(timeout=600)
        self.assertEqual(record.result.status, "done", record.result.message)
        self.assertTrue(projectfiles.is_model(pretrained, ["pretrained"]))
        self.assertEqual(logic.getParameterNode().pretrainedModel, pretrained)

        self.delayDisplay("Fine-tuning it on the two labeled cases")
        model = logic.startFinetune(project, pretrained, iterations=5, device="cpu", batch_size=2)
        record = logic.wait(timeout=600)
        self.assertEqual(record.result.status, "done", record.result.message)
        self.assertTrue(projectfiles.is_model(model, ["segmentation"]))
        self.assertEqual(logic.getParameterNode().taskModel, model)

        self.delayDisplay("Predicting the unlabeled case")
        logic.startPredict(project, model, device="cpu")
        record = logic.wait(timeout=600)
        self.assertEqual(record.result.status, "done", record.result.message)
        case = logic.caseOfNode(project, volumes[2])
        self.assertEqual([c for c, _path in record.result.state.outputs], [case])
        self.assertEqual(len(record.loaded_nodes), 1)
        prediction = record.loaded_nodes[0]
        self.assertEqual(prediction.GetAttribute("DiffusionSeg.Case"), case)
        self.assertEqual(nodeio.segment_names(prediction), ["disc"])
        # On the image's own grid: the same IJK-to-RAS matrix and extent.
        imageToRAS, segmentToRAS = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
        volumes[2].GetIJKToRASMatrix(imageToRAS)
        labelmap = prediction.GetSegmentation().GetNthSegment(0).GetRepresentation("Binary labelmap")
        labelmap.GetImageToWorldMatrix(segmentToRAS)
        for row in range(4):
            for column in range(4):
                self.assertAlmostEqual(segmentToRAS.GetElement(row, column), imageToRAS.GetElement(row, column), 5)
        self.assertEqual(labelmap.GetExtent(), volumes[2].GetImageData().GetExtent())
        labels = nodeio.label_array(logic.context, prediction, volumes[2], ["disc"])
        self.assertEqual(labels.shape, (1, 32, 32))

        self.delayDisplay("Correcting the prediction and saving it while another case is current")
        logic.getParameterNode().inputVolume = volumes[0]
        saved = logic.saveAnnotation(project, prediction, volumes[0])
        self.assertEqual(saved["case"], case)  # the prediction's own case, not the current image's
        self.assertEqual(len(project.labeled_cases()), 3)
        self.assertEqual([row.status for row in logic.caseRows(project)], ["labeled"] * 3)
