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

from DiffusionSegModuleLib import dependencies
from DiffusionSegModuleLib.corelogic import CoreLogic, RunRecord
from DiffusionSegModuleLib.nodeio import MRMLContext

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
    inputVolume: the current image. annotationNode: what Save writes (annotation or corrected prediction).
    pretrainedModel, taskModel: model folders. finetuneMode: full | probe | mlp (docs/CLI.md).
    device: where the backend computes.
    """

    projectDir: Path
    task: Annotated[str, Choice(["segmentation", "landmarks"])] = "segmentation"
    imageKind: Annotated[str, Choice(["3D", "2D"])] = "3D"
    names: str = ""
    modality: Annotated[str, Choice(["ct", "mri", "xray", "other"])] = "other"
    inputVolume: vtkMRMLScalarVolumeNode
    pretrainIterations: Annotated[int, WithinRange(1, 10_000_000)] = 2000
    pretrainedModel: Path
    annotationNode: Union[vtkMRMLSegmentationNode, vtkMRMLMarkupsFiducialNode]
    finetuneIterations: Annotated[int, WithinRange(1, 10_000_000)] = 1000
    finetuneMode: Annotated[str, Choice(["full", "probe", "mlp"])] = "full"
    taskModel: Path
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"


#
# DiffusionSegWidget
#


class DiffusionSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds DiffusionSeg.ui to the Logic. Holds no state of its own: choices live in the
    parameter node, the running job in the Logic."""

    # (run kind, button): each button starts its run and turns into that run's Cancel button.
    RUN_BUTTONS = (("pretrain", "pretrainButton"), ("finetune", "finetuneButton"),
                   ("predict", "predictCurrentButton"), ("predict", "predictUnlabeledButton"))

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DiffusionSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DiffusionSegLogic()

        self.ui.openProjectButton.connect("clicked(bool)", self.onOpenProject)
        self.ui.addVolumeButton.connect("clicked(bool)", self.onAddVolume)
        self.ui.addFolderButton.connect("clicked(bool)", self.onAddFolder)
        self.ui.pretrainButton.connect("clicked(bool)", self.onPretrain)
        self.ui.nextUnlabeledButton.connect("clicked(bool)", self.onNextUnlabeled)
        self.ui.annotateButton.connect("clicked(bool)", self.onAnnotate)
        self.ui.saveAnnotationButton.connect("clicked(bool)", self.onSaveAnnotation)
        self.ui.finetuneButton.connect("clicked(bool)", self.onFinetune)
        self.ui.predictCurrentButton.connect("clicked(bool)", self.onPredictCurrent)
        self.ui.predictUnlabeledButton.connect("clicked(bool)", self.onPredictUnlabeled)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)

        # The background run is polled from the GUI thread: Slicer stays responsive and
        # nodes are only ever created on the main thread.
        self.pollTimer = qt.QTimer()
        self.pollTimer.setInterval(250)
        self.pollTimer.connect("timeout()", self.onPollTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self.updateGUI()

    def cleanup(self) -> None:
        self.removeObservers()
        self.pollTimer.stop()
        if self.logic is not None and self.logic.isRunning():
            self.logic.cancel()

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
        idle = running is None
        self.ui.openProjectButton.enabled = idle
        self.ui.addVolumeButton.enabled = idle and project is not None and haveVolume
        self.ui.addFolderButton.enabled = idle and project is not None
        self.ui.nextUnlabeledButton.enabled = project is not None
        self.ui.annotateButton.enabled = project is not None and haveVolume
        self.ui.saveAnnotationButton.enabled = project is not None and bool(p and p.annotationNode)
        texts = {"pretrainButton": _("Pretrain on all project images"), "finetuneButton": _("Fine-tune"),
                 "predictCurrentButton": _("Predict current image"),
                 "predictUnlabeledButton": _("Predict all unlabeled images")}
        for kind, buttonName in self.RUN_BUTTONS:
            button = getattr(self.ui, buttonName)
            # The button of the running job becomes its Cancel button; the others wait.
            button.text = _("Cancel") if running == kind else texts[buttonName]
            button.enabled = project is not None and (idle or running == kind)
        self.ui.progressBar.visible = running is not None

    def updateProgress(self) -> None:
        state = self.logic.progress
        self.ui.progressBar.maximum = 1000 if state.total else 0  # 0: busy indicator until the total is known
        self.ui.progressBar.value = int(state.fraction * 1000)
        self.ui.statusLabel.text = state.summary()

    # -- actions ----------------------------------------------------------------------

    def onOpenProject(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not open or create the project."), waitCursor=True):
            self.logic.openOrCreateProject()
        self.updateGUI()

    def onAddVolume(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not add the image."), waitCursor=True):
            case = self.logic.addVolume(self.logic.currentProject(), self._parameterNode.inputVolume)
            self.ui.statusLabel.text = _("Added case '{case}'.").format(case=case)
        self.updateGUI()

    def onAddFolder(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Folder of images to add"))
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not add the images."), waitCursor=True):
            cases = self.logic.addImagesFromFolder(self.logic.currentProject(), folder)
            self.ui.statusLabel.text = _("Added {count} images.").format(count=len(cases))
        self.updateGUI()

    def onNextUnlabeled(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not load the image."), waitCursor=True):
            volume = self.logic.loadNextUnlabeled()
            if volume is None:
                slicer.util.infoDisplay(_("Every image of the project is labeled."))
                return
            self._parameterNode.inputVolume = volume
            slicer.util.setSliceViewerLayers(background=volume, fit=True)

    def onAnnotate(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not start annotating."), waitCursor=True):
            node = self.logic.startAnnotation(self._parameterNode.inputVolume)
            self._parameterNode.annotationNode = node
        self.updateGUI()

    def onSaveAnnotation(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not save the annotation."), waitCursor=True):
            saved = self.logic.saveAnnotation(self.logic.currentProject(), self._parameterNode.annotationNode,
                                              self._parameterNode.inputVolume)
            message = _("Saved case '{case}'.").format(case=saved["case"])
            if saved["missing"]:
                message += " " + _("Not placed: {names}.").format(names=", ".join(saved["missing"]))
            self.ui.statusLabel.text = message
        self.updateGUI()

    def onPretrain(self) -> None:
        self._startOrCancel("pretrain", lambda: self.logic.startPretrainFromParameters())

    def onFinetune(self) -> None:
        self._startOrCancel("finetune", lambda: self.logic.startFinetuneFromParameters())

    def onPredictCurrent(self) -> None:
        self._startOrCancel("predict", lambda: self.logic.startPredictFromParameters(currentOnly=True))

    def onPredictUnlabeled(self) -> None:
        self._startOrCancel("predict", lambda: self.logic.startPredictFromParameters(currentOnly=False))

    def _startOrCancel(self, kind: str, start) -> None:
        if self.logic.isRunning():
            if self.logic.run.kind == kind:
                self.logic.cancel()
                self.ui.statusLabel.text = _("Cancelling...")
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start."), waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            start()
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
        self.updateGUI()

    def onInstallDependencies(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not install the dependencies."), waitCursor=True):
            if self.logic.ensureDependencies(askConfirmation=True, force=True):
                slicer.util.infoDisplay(_("DiffusionSeg's dependencies are installed."))


#
# DiffusionSegLogic
#


class DiffusionSegLogic(ScriptedLoadableModuleLogic, CoreLogic):
    """The module's API: CoreLogic (projects, annotations, runs, results as nodes) plus the
    Slicer application parts (PythonSlicer, pip, parameter node, views, editors).

    Usable without the Widget, e.g. from the Python console or DiffusionSegBatch.py.
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
        from DiffusionSegModuleLib import projectfiles

        return projectfiles.list_models(project, [kind])

    @staticmethod
    def _isModelPath(path) -> bool:
        from DiffusionSegModuleLib import projectfiles

        return projectfiles.is_model(path)

    # -- annotation in the editors ----------------------------------------------------

    def loadNextUnlabeled(self):
        project = self.requireProject()
        case = self.nextUnlabeledCase(project)
        return None if case is None else self.volumeOfCase(project, case)

    def startAnnotation(self, volume):
        """Create the annotation node for ``volume`` and open the right editor on it."""
        if volume is None:
            raise ValueError(_("Select the current image first."))
        project = self.requireProject()
        node = self.createAnnotation(project, volume)
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        if node.IsA("vtkMRMLSegmentationNode"):
            slicer.util.selectModule("SegmentEditor")
            editor = slicer.modules.SegmentEditorWidget.editor
            editor.setSegmentationNode(node)
            editor.setSourceVolumeNode(volume)
        else:
            # Each click in a view places the next unplaced, already named point.
            markupsLogic = slicer.modules.markups.logic()
            markupsLogic.SetActiveList(node)
            markupsLogic.StartPlaceMode(True)
        return node

    # -- runs from the parameter node -------------------------------------------------

    def startPretrainFromParameters(self):
        p = self.getParameterNode()
        return self.startPretrain(self.requireProject(), p.pretrainIterations, p.device)

    def startFinetuneFromParameters(self):
        p = self.getParameterNode()
        pretrained = p.pretrainedModel if self._isModelPath(p.pretrainedModel) else None
        if pretrained is None and not slicer.util.confirmYesNoDisplay(
                _("No pretrained model is chosen. Fine-tune from random initialisation?")):
            return None
        return self.startFinetune(self.requireProject(), pretrained, p.finetuneIterations, p.device,
                                  mode=p.finetuneMode)

    def startPredictFromParameters(self, currentOnly: bool):
        p = self.getParameterNode()
        project = self.requireProject()
        cases = None
        if currentOnly:
            if not p.inputVolume:
                raise ValueError(_("Select the current image first."))
            cases = [self.addVolume(project, p.inputVolume)]
        return self.startPredict(project, p.taskModel, cases, p.device)

    def onRunFinished(self, record: RunRecord) -> None:
        """Offer the new model for the next step; show predictions in 2D and 3D."""
        CoreLogic.onRunFinished(self, record)
        p = self.getParameterNode()
        if record.kind == "pretrain" and self._isModelPath(record.out):
            p.pretrainedModel = record.out
        elif record.kind == "finetune" and self._isModelPath(record.out):
            p.taskModel = record.out  # also after Cancel: the last checkpoint is a usable model
        elif record.kind == "predict" and record.loaded_nodes:
            last = record.loaded_nodes[-1]
            if last.IsA("vtkMRMLSegmentationNode"):
                last.GetDisplayNode().SetVisibility3D(True)
            p.annotationNode = last  # ready to correct and save as a labeled case

    def resultSummary(self, record: RunRecord) -> str:
        result = record.result
        if result.status == "done":
            if record.kind == "predict":
                return _("Done: {count} predictions loaded.").format(count=len(record.loaded_nodes))
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

        import numpy as np

        from DiffusionSegModuleLib import nodeio, projectfiles

        self.delayDisplay("Starting the test")
        logic = DiffusionSegLogic()
        missing = dependencies.missing_requirements()
        if missing or not dependencies.torch_installed():
            # CI must not install packages behind the user's back: say what is missing instead.
            self.skipTest(f"DiffusionSeg dependencies missing: {missing or ['torch']}. Use 'Install dependencies'.")
        folder = Path(tempfile.mkdtemp(prefix="DiffusionSegTest-"))
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
        self.delayDisplay("Test passed")
