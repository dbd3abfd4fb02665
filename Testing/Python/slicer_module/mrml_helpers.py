"""Building test volumes, annotations and reference geometry in a slicer-core scene."""

import math

import numpy as np


def rotation_ras(angle_z=0.3, angle_x=0.2):
    """A non-identity direction matrix (rows = RAS, columns = IJK axes)."""
    cz, sz, cx, sx = math.cos(angle_z), math.sin(angle_z), math.cos(angle_x), math.sin(angle_x)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rz @ rx


def make_volume(ctx, array, spacing, origin_ras, direction_ras, name="image"):
    """A scalar volume node with voxels ``array`` (z, y, x) and the given RAS geometry."""
    import vtk
    from vtkmodules.util import numpy_support

    node = ctx.add_node("vtkMRMLScalarVolumeNode", name)
    image = vtk.vtkImageData()
    image.SetDimensions(*reversed(array.shape))
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(
        np.ascontiguousarray(array).ravel(), deep=True,
        array_type=numpy_support.get_vtk_array_type(array.dtype)))
    node.SetAndObserveImageData(image)
    node.SetSpacing(*spacing)
    node.SetOrigin(*origin_ras)
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, float(direction_ras[r][c]))
    node.SetIJKToRASDirectionMatrix(matrix)
    node.CreateDefaultDisplayNodes()
    return node


def paint_segment(ctx, segmentation_node, segment_id, mask, reference_volume):
    """Set a segment's voxels from a (z, y, x) mask, as the Segment Editor would."""
    import vtk
    from vtkmodules.util import numpy_support

    labelmap = ctx.add_node("vtkMRMLLabelMapVolumeNode", "paint")
    matrix = vtk.vtkMatrix4x4()
    reference_volume.GetIJKToRASMatrix(matrix)
    labelmap.SetIJKToRASMatrix(matrix)
    image = vtk.vtkImageData()
    image.SetDimensions(*reversed(mask.shape))
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(
        mask.astype(np.uint8).ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
    labelmap.SetAndObserveImageData(image)
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    assert ctx.segmentations_logic.ImportLabelmapToSegmentationNode(labelmap, segmentation_node, ids)
    ctx.scene.RemoveNode(labelmap)


def ijk_to_ras(volume_node):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def lps_from_ras(matrix_ras):
    """IJK->RAS to IJK->LPS (flip the first two rows)."""
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ matrix_ras
