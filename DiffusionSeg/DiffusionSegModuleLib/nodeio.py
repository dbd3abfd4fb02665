"""MRML nodes <-> the project's files, using Slicer's own storage nodes.

Volumes are written as .nrrd, annotations as .seg.nrrd and .mrk.json, exactly as
Slicer's Save dialog would, so a project folder opens in Slicer and in the backend
(slicerio, SimpleITK) alike. Geometry (spacing, origin, axis directions) travels in the
files; Slicer's RAS is converted to the files' LPS by the storage nodes.

Only MRML is used (no qt, no slicer.util, no slicer.app), so this runs both inside
Slicer and with the slicer-core wheel. Every function takes an :class:`MRMLContext`
(the scene plus the module logics the storage code needs).

Nothing here modifies or replaces a user's node: exports work on temporary copies and
every loaded file becomes a new node with a unique name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .i18n import _

#: Segment colours for new annotations (Slicer's "Generic Anatomy" feel: distinct, not garish).
PALETTE = [
    (0.945, 0.839, 0.569), (0.847, 0.396, 0.310), (0.502, 0.682, 0.502), (0.565, 0.792, 0.973),
    (0.863, 0.961, 0.078), (0.784, 0.784, 0.922), (0.980, 0.980, 0.882), (0.863, 0.706, 0.549),
    (0.435, 0.722, 0.824), (0.706, 0.235, 0.471), (0.310, 0.631, 0.631), (0.996, 0.784, 0.118),
]


def segment_color(index: int) -> tuple[float, float, float]:
    return PALETTE[index % len(PALETTE)]


@dataclasses.dataclass
class MRMLContext:
    """The scene and the logics that segmentation and markups I/O need.

    In Slicer: ``MRMLContext(slicer.mrmlScene, slicer.modules.segmentations.logic(),
    slicer.modules.markups.logic())``; elsewhere :meth:`create` builds them.
    """

    scene: object
    segmentations_logic: object
    markups_logic: object | None = None
    application_logic: object | None = None

    @classmethod
    def create(cls, scene=None) -> "MRMLContext":
        """A standalone scene with the Segmentations and Markups logics registered.

        Without this registration the segmentation storage node cannot convert
        representations and markups nodes lack their display machinery.
        """
        import slicer

        scene = scene or slicer.vtkMRMLScene()
        app = slicer.vtkMRMLApplicationLogic()
        app.SetMRMLScene(scene)
        segmentations = slicer.vtkSlicerSegmentationsModuleLogic()
        segmentations.SetMRMLApplicationLogic(app)
        segmentations.SetMRMLScene(scene)
        app.SetModuleLogic("Segmentations", segmentations)
        markups = slicer.vtkSlicerMarkupsLogic()
        markups.SetMRMLApplicationLogic(app)
        markups.SetMRMLScene(scene)
        app.SetModuleLogic("Markups", markups)
        return cls(scene, segmentations, markups, app)

    def add_node(self, class_name: str, name: str):
        """A new node with a name no other node has (so results never shadow the user's)."""
        return self.scene.AddNewNodeByClass(class_name, self.scene.GenerateUniqueName(name))

    @contextlib.contextmanager
    def temporary_node(self, class_name: str) -> Iterator[object]:
        node = self.scene.AddNewNodeByClass(class_name, "__DiffusionSeg_temp__")
        try:
            yield node
        finally:
            self.remove_node(node)

    def remove_node(self, node) -> None:
        display = node.GetDisplayNode() if hasattr(node, "GetDisplayNode") else None
        storage = node.GetStorageNode() if hasattr(node, "GetStorageNode") else None
        for extra in (display, storage):
            if extra is not None:
                self.scene.RemoveNode(extra)
        self.scene.RemoveNode(node)


# -- helpers --------------------------------------------------------------------------


def _partial_path(path: Path, suffix: str) -> Path:
    """A temporary name in the same folder that keeps the extension the writer needs."""
    return path.with_name(f".{path.name[:-len(suffix)]}.partial-{os.getpid()}{suffix}")


def _write_with_storage_node(ctx: MRMLContext, node, storage_class: str, path: Path, suffix: str,
                             configure=None) -> Path:
    """Write ``node`` to ``path`` atomically (temporary file, then os.replace)."""
    import slicer

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _partial_path(path, suffix)
    storage = getattr(slicer, storage_class)()
    storage.SetFileName(str(temporary))
    if configure is not None:
        configure(storage)
    try:
        if not storage.WriteData(node):
            raise OSError(_("Slicer could not write {path}.").format(path=path))
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def _read_with_storage_node(storage_class: str, node, path: Path, configure=None) -> None:
    import slicer

    if not Path(path).is_file():
        raise FileNotFoundError(_("File not found: {path}").format(path=path))
    storage = getattr(slicer, storage_class)()
    storage.SetFileName(str(path))
    if configure is not None:
        configure(storage)
    if not storage.ReadData(node):
        raise OSError(_("Slicer could not read {path}.").format(path=path))


def _require_untransformed(node) -> None:
    """Files store geometry but not Slicer transforms, so a transformed node would move."""
    if node.GetParentTransformNode() is not None:
        raise ValueError(_("'{name}' is under a transform. Harden the transform (Data module, right-click, "
                           "Harden transform) before saving it to the project.").format(name=node.GetName()))


def _array_from_image(image) -> np.ndarray:
    """Voxels of a vtkImageData as a numpy array (k, j, i) = (z, y, x)."""
    from vtkmodules.util import numpy_support

    shape = tuple(reversed(image.GetDimensions()))
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape).copy()


def array_from_volume(volume_node) -> np.ndarray:
    """A copy of a volume's voxels, shape (z, y, x) as in SimpleITK."""
    return _array_from_image(volume_node.GetImageData())


# -- volumes --------------------------------------------------------------------------


def write_volume(ctx: MRMLContext, volume_node, path: str | Path) -> Path:
    """Save a scalar volume as .nrrd (compressed), keeping its geometry."""
    _require_untransformed(volume_node)
    if volume_node.GetImageData() is None:
        raise ValueError(_("'{name}' has no voxels.").format(name=volume_node.GetName()))
    return _write_with_storage_node(ctx, volume_node, "vtkMRMLVolumeArchetypeStorageNode", Path(path), ".nrrd",
                                    lambda storage: storage.SetUseCompression(True))


def read_volume(ctx: MRMLContext, path: str | Path, name: str):
    """Load an image file (any format ITK reads) as a new scalar volume node.

    Exactly that file: without SingleFile the archetype reader stacks every similarly
    numbered file of the folder (case_000.nrrd ... case_003.nrrd) into one volume.
    """
    node = ctx.add_node("vtkMRMLScalarVolumeNode", name)
    try:
        _read_with_storage_node("vtkMRMLVolumeArchetypeStorageNode", node, Path(path),
                                lambda storage: storage.SetSingleFile(1))
    except Exception:
        ctx.remove_node(node)
        raise
    node.CreateDefaultDisplayNodes()
    return node


# -- segmentations --------------------------------------------------------------------


def new_segmentation(ctx: MRMLContext, reference_volume, class_names: Sequence[str], name: str,
                     colors: Sequence[Sequence[float]] | None = None):
    """A new segmentation node for annotating ``reference_volume``: one empty segment per class.

    Segment IDs are the class names, so the Logic can find them again after edits.
    colors: one (r, g, b) in 0..1 per class (the project's), else the module's palette.
    """
    node = ctx.add_node("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    segmentation = node.GetSegmentation()
    for index, class_name in enumerate(class_names):
        color = colors[index] if colors and index < len(colors) else segment_color(index)
        segmentation.AddEmptySegment(class_name, class_name, tuple(color))
    return node


def segment_names(segmentation_node) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def label_array(ctx: MRMLContext, segmentation_node, reference_volume, class_names: Sequence[str]) -> np.ndarray:
    """The segmentation as a label map on the reference volume's grid, shape (z, y, x).

    Voxel value ``i + 1`` means ``class_names[i]``; 0 is background. Segments are found
    by name. Where segments overlap, the class listed later wins.
    """
    import slicer
    import vtk

    segmentation = segmentation_node.GetSegmentation()
    present = [(index, segmentation.GetSegmentIdBySegmentName(n)) for index, n in enumerate(class_names)]
    present = [(index, segment_id) for index, segment_id in present if segment_id]
    dims = reference_volume.GetImageData().GetDimensions()
    labels = np.zeros(tuple(reversed(dims)), dtype=np.uint8 if len(class_names) < 255 else np.uint16)
    if not present:
        return labels
    segment_ids = vtk.vtkStringArray()
    for _index, segment_id in present:
        segment_ids.InsertNextValue(segment_id)
    with ctx.temporary_node("vtkMRMLLabelMapVolumeNode") as labelmap:
        ok = ctx.segmentations_logic.ExportSegmentsToLabelmapNode(
            segmentation_node, segment_ids, labelmap, reference_volume,
            slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
        if not ok or labelmap.GetImageData() is None:
            raise OSError(_("Could not convert '{name}' to a label map.").format(name=segmentation_node.GetName()))
        exported = _array_from_image(labelmap.GetImageData())
    if exported.shape != labels.shape:
        raise ValueError(_("'{name}' could not be resampled onto its image's grid.").format(
            name=segmentation_node.GetName()))
    # The export numbers segments by their position in segment_ids; renumber to class order.
    for position, (index, _segment_id) in enumerate(present, start=1):
        labels[exported == position] = index + 1
    return labels


def check_segment_names(segmentation_node, class_names: Sequence[str]) -> None:
    """Refuse segments the project does not know, rather than silently dropping them."""
    unknown = [n for n in segment_names(segmentation_node) if n not in class_names]
    if unknown:
        raise ValueError(_("Segment(s) {unknown} are not classes of this project ({classes}). Rename or "
                           "delete them before saving.").format(unknown=", ".join(repr(n) for n in unknown),
                                                                  classes=", ".join(class_names)))


def write_segmentation(ctx: MRMLContext, segmentation_node, reference_volume, class_names: Sequence[str],
                       path: str | Path) -> Path:
    """Save an annotation as .seg.nrrd on the reference image's grid.

    The file holds exactly the project's classes, in project order, as one shared
    layer with label value ``i + 1`` for ``class_names[i]`` (empty classes included),
    keeping each segment's name and colour. So the backend can read it as segments
    (slicerio) or as a plain label map.
    """
    import slicer

    _require_untransformed(segmentation_node)
    _require_untransformed(reference_volume)
    check_segment_names(segmentation_node, class_names)
    labels = label_array(ctx, segmentation_node, reference_volume, class_names)
    source = segmentation_node.GetSegmentation()
    with ctx.temporary_node("vtkMRMLSegmentationNode") as output:
        output.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
        shared = _oriented_image(labels, reference_volume)
        for index, class_name in enumerate(class_names):
            segment = slicer.vtkSegment()
            segment.SetName(class_name)
            segment_id = source.GetSegmentIdBySegmentName(class_name)
            color = source.GetSegment(segment_id).GetColor() if segment_id else segment_color(index)
            segment.SetColor(*color)
            segment.SetLabelValue(index + 1)
            segment.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(), shared)
            output.GetSegmentation().AddSegment(segment, class_name)
        return _write_with_storage_node(ctx, output, "vtkMRMLSegmentationStorageNode", Path(path), ".seg.nrrd")


def _oriented_image(labels: np.ndarray, reference_volume):
    """A vtkOrientedImageData with the reference volume's geometry holding ``labels`` (z, y, x)."""
    import slicer
    import vtk
    from vtkmodules.util import numpy_support

    image = slicer.vtkOrientedImageData()
    image.SetDimensions(*reversed(labels.shape))
    vtk_type = vtk.VTK_UNSIGNED_CHAR if labels.dtype == np.uint8 else vtk.VTK_UNSIGNED_SHORT
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(labels.ravel(), deep=True, array_type=vtk_type))
    matrix = vtk.vtkMatrix4x4()
    reference_volume.GetIJKToRASMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    return image


def read_segmentation(ctx: MRMLContext, path: str | Path, name: str, reference_volume=None,
                      class_names: Sequence[str] | None = None, show_3d: bool = True):
    """Load a .seg.nrrd (or label map .nrrd) as a new segmentation node.

    reference_volume: makes the Segment Editor edit on that image's grid.
    class_names: names segments that the file left unnamed (a plain label map), by label value.
    show_3d: also build the closed-surface representation, so the result shows in 3D.
    """
    node = ctx.add_node("vtkMRMLSegmentationNode", name)
    try:
        _read_with_storage_node("vtkMRMLSegmentationStorageNode", node, Path(path))
    except Exception:
        ctx.remove_node(node)
        raise
    node.CreateDefaultDisplayNodes()
    if reference_volume is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    if class_names:
        _name_unnamed_segments(node, class_names)
    if show_3d:
        node.CreateClosedSurfaceRepresentation()
    return node


def _name_unnamed_segments(node, class_names: Sequence[str]) -> None:
    segmentation = node.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(i)
        value = segment.GetLabelValue()
        if segment.GetName() not in class_names and 1 <= value <= len(class_names):
            segment.SetName(class_names[value - 1])


# -- markups --------------------------------------------------------------------------


def new_markups(ctx: MRMLContext, landmark_names: Sequence[str], name: str):
    """A new point list with one unplaced, named control point per landmark.

    In Slicer the user then clicks in the views and each click places the next
    unplaced point, so the names are right without typing them.
    """
    node = ctx.add_node("vtkMRMLMarkupsFiducialNode", name)
    node.CreateDefaultDisplayNodes()
    complete_markups(node, landmark_names)
    return node


def complete_markups(node, landmark_names: Sequence[str]) -> None:
    """Give ``node`` one control point per landmark (missing ones added unplaced) and lock
    the number of points.

    Locked, persistent place mode places the unplaced named points one click at a time
    and then stops adding points: without the lock it goes on adding unnamed points after
    the last landmark, which Save must refuse.
    """
    import vtk

    node.SetFixedNumberOfControlPoints(False)
    present = {node.GetNthControlPointLabel(i) for i in range(node.GetNumberOfControlPoints())}
    for landmark in landmark_names:
        if landmark not in present:
            index = node.AddControlPoint(vtk.vtkVector3d(0, 0, 0), landmark)
            node.UnsetNthControlPointPosition(index)
    node.SetFixedNumberOfControlPoints(True)


def landmark_states(node, landmark_names: Sequence[str]) -> list[tuple[str, int, bool]]:
    """``(name, control point index or -1, placed)`` for each landmark, in project order."""
    index = {node.GetNthControlPointLabel(i): i for i in range(node.GetNumberOfControlPoints())}
    states = []
    for landmark in landmark_names:
        i = index.get(landmark, -1)
        placed = i >= 0 and node.GetNthControlPointPositionStatus(i) == node.PositionDefined
        states.append((landmark, i, placed))
    return states


def defined_points(markups_node) -> dict[str, tuple[float, float, float]]:
    """Placed control points by label, in world RAS millimetres (parent transforms applied)."""
    points: dict[str, tuple[float, float, float]] = {}
    for i in range(markups_node.GetNumberOfControlPoints()):
        if markups_node.GetNthControlPointPositionStatus(i) != markups_node.PositionDefined:
            continue
        label = markups_node.GetNthControlPointLabel(i)
        if label in points:
            raise ValueError(_("Point '{label}' is placed twice in '{name}'. Delete one of them.").format(
                label=label, name=markups_node.GetName()))
        points[label] = tuple(markups_node.GetNthControlPointPositionWorld(i))
    return points


def write_markups(ctx: MRMLContext, markups_node, landmark_names: Sequence[str], path: str | Path) -> list[str]:
    """Save placed landmarks as .mrk.json (LPS, millimetres), in project order.

    Returns the names of landmarks not placed (they are left out of the file, which
    tells the backend they are unknown rather than at the origin).
    """
    import vtk

    points = defined_points(markups_node)
    unknown = [label for label in points if label not in landmark_names]
    if unknown:
        raise ValueError(_("Point(s) {unknown} are not landmarks of this project ({names}). Rename or delete "
                           "them before saving.").format(unknown=", ".join(repr(n) for n in unknown),
                                                         names=", ".join(landmark_names)))
    if not points:
        raise ValueError(_("No landmark is placed in '{name}'.").format(name=markups_node.GetName()))
    with ctx.temporary_node("vtkMRMLMarkupsFiducialNode") as output:
        for landmark in landmark_names:
            if landmark in points:
                output.AddControlPoint(vtk.vtkVector3d(*points[landmark]), landmark)
        _write_with_storage_node(ctx, output, "vtkMRMLMarkupsJsonStorageNode", Path(path), ".mrk.json",
                                 lambda storage: storage.SetCoordinateSystem(1))  # 1 = LPS, as files store it
    return [landmark for landmark in landmark_names if landmark not in points]


def read_markups(ctx: MRMLContext, path: str | Path, name: str):
    """Load a .mrk.json point list as a new markups node."""
    node = ctx.add_node("vtkMRMLMarkupsFiducialNode", name)
    unique_name = node.GetName()
    try:
        _read_with_storage_node("vtkMRMLMarkupsJsonStorageNode", node, Path(path))
    except Exception:
        ctx.remove_node(node)
        raise
    node.SetName(unique_name)  # the file may carry a name of its own
    node.CreateDefaultDisplayNodes()
    return node
