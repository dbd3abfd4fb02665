"""Segmentation label I/O: .seg.nrrd (slicerio and Slicer's own reader) and label maps."""

import math

import numpy as np
import pytest
import SimpleITK as sitk

from DiffusionSegLib.errors import UserError
from DiffusionSegLib.labels import (class_names_from, load_segmentation, read_segmentation, write_labelmap,
                                    write_overlay_png, write_seg_nrrd)
from DiffusionSegLib.labels.writing import ijk_to_lps

CLASSES = ["right_lung", "left_lung", "heart"]
COLORS = [(0.25, 0.5, 0.75), (1.0, 0.0, 0.5), (0.125, 0.875, 0.0)]


def rotation(az=0.3, ax=0.2):
    cz, sz, cx, sx = math.cos(az), math.sin(az), math.cos(ax), math.sin(ax)
    return np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])


def with_geometry(array, spacing, origin, direction):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(np.asarray(direction, dtype=float).ravel().tolist())
    return image


def case(dims):
    """(reference image, label array) with non-trivial geometry; 2D and oblique 3D."""
    if dims == 2:
        shape, geometry = (12, 16), ((0.4, 0.7), (3.5, -2.0), rotation(0.4, 0)[:2, :2])
    else:
        shape, geometry = (5, 12, 16), ((0.8, 0.6, 2.5), (-120.0, 31.5, 7.25), rotation())
    labels = np.zeros(shape, np.uint8)
    labels[..., 2:6, 1:5] = 1
    labels[..., 2:6, 10:14] = 2
    labels[..., 7:10, 5:11] = 3
    image = with_geometry(np.random.default_rng(0).random(shape).astype(np.float32), *geometry)
    return image, labels


def as_image(labels, reference):
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(reference)
    return image


@pytest.mark.parametrize("dims", [2, 3])
def test_seg_nrrd_round_trip_through_slicerio(tmp_path, dims):
    import slicerio

    image, labels = case(dims)
    path = write_seg_nrrd(as_image(labels, image), tmp_path / "a.seg.nrrd", CLASSES, COLORS)
    assert class_names_from(path) == (CLASSES, COLORS)
    seg = slicerio.read_segmentation(str(path))
    assert np.allclose(seg["ijkToLPS"], ijk_to_lps(image))
    assert [s["labelValue"] for s in seg["segments"]] == [1, 2, 3]
    result = load_segmentation(path, CLASSES, image)
    assert np.array_equal(sitk.GetArrayFromImage(result.labelmap), labels)
    assert result.labelmap.GetPixelID() == sitk.sitkUInt8
    assert result.missing == [] and result.overlap_voxels == 0 and result.colors == COLORS
    # classes from the file; names matched ignoring case and _ vs space
    assert load_segmentation(path, None, image).classes == CLASSES
    again = read_segmentation(path, ["Heart", "LEFT LUNG", "Right-Lung"], image)
    assert np.array_equal(sitk.GetArrayFromImage(again), np.array([0, 3, 2, 1], np.uint8)[labels])


def _slicer():
    try:
        import slicer
    except ImportError as exc:
        pytest.skip(f"slicer-core is not installed ({exc})")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("the 'slicer' package found has no MRML; install slicer-core")
    return slicer


@pytest.mark.parametrize("dims", [2, 3])
def test_seg_nrrd_opens_in_slicer_as_a_segmentation(tmp_path, dims):
    slicer = _slicer()
    from vtkmodules.util import numpy_support

    image, labels = case(dims)
    labels[..., 0, 0] = 2  # a lone voxel at the grid's first corner: catches an off-by-one origin
    path = write_seg_nrrd(as_image(labels, image), tmp_path / "a.seg.nrrd", CLASSES, COLORS)

    scene = slicer.vtkMRMLScene()
    app = slicer.vtkMRMLApplicationLogic()
    app.SetMRMLScene(scene)
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLApplicationLogic(app)
    logic.SetMRMLScene(scene)
    app.SetModuleLogic("Segmentations", logic)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node)

    segmentation = node.GetSegmentation()
    segments = [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]
    assert [s.GetName() for s in segments] == CLASSES
    assert np.allclose([s.GetColor() for s in segments], COLORS)
    expected_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ijk_to_lps(image)
    for value, segment in enumerate(segments, start=1):
        oriented = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
        matrix = slicer.vtkMatrix4x4() if hasattr(slicer, "vtkMatrix4x4") else __import__("vtk").vtkMatrix4x4()
        oriented.GetImageToWorldMatrix(matrix)
        world = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        extent = oriented.GetExtent()
        voxels = numpy_support.vtk_to_numpy(oriented.GetPointData().GetScalars()).reshape(
            extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
        assert extent[::2] == (0, 0, 0) and voxels.shape == (labels[np.newaxis] if dims == 2 else labels).shape
        assert np.allclose(world, expected_ras, atol=1e-6)
        mask = voxels == segment.GetLabelValue()
        assert np.array_equal(mask.reshape(labels.shape), labels == value)


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".png", ".mha"])
def test_label_maps_round_trip(tmp_path, suffix):
    image, labels = case(2 if suffix == ".png" else 3)
    path = write_labelmap(as_image(labels, image), tmp_path / f"a{suffix}")
    result = load_segmentation(path, CLASSES, image, reference_path="img.nrrd")
    assert np.array_equal(sitk.GetArrayFromImage(result.labelmap), labels)
    assert load_segmentation(path, None, image).classes == ["label_1", "label_2", "label_3"]
    labels[labels == 2] = 0
    write_labelmap(as_image(labels, image), path, overwrite=True)
    assert load_segmentation(path, CLASSES, image).missing == ["left_lung"]
    with pytest.raises(UserError, match="exists already"):
        write_labelmap(as_image(labels, image), path)


def test_overlapping_segments_go_to_the_later_class(tmp_path):
    import slicerio

    image, _ = case(3)
    a = np.zeros((16, 12, 5), bool)  # slicerio order (i, j, k)
    b = np.zeros_like(a)
    a[2:8, 2:8, 1:3] = True
    b[5:10, 5:10, 1:4] = True
    seg = slicerio.create_segmentation(a.shape, ijk_to_lps(image))
    slicerio.add_segment(seg, a, {"name": "a"})
    slicerio.add_segment(seg, b, {"name": "b"})
    assert seg["voxels"].ndim == 4  # Slicer keeps overlapping segments in separate layers
    slicerio.write_segmentation(str(tmp_path / "o.seg.nrrd"), seg)
    both = (a & b).transpose()
    only_a = (a & ~b).transpose()
    for order in (["a", "b"], ["b", "a"]):
        result = load_segmentation(tmp_path / "o.seg.nrrd", order, image)
        values = sitk.GetArrayFromImage(result.labelmap)
        winner = order[-1]  # the class listed later takes the shared voxels
        assert np.all(values[both] == order.index(winner) + 1) and result.overlap_voxels == both.sum()
        assert np.all(values[only_a] == order.index("a") + 1)
        assert np.array_equal(values > 0, (a | b).transpose())


def test_cropped_seg_nrrd_is_placed_on_the_image_grid(tmp_path):
    import slicerio

    image, labels = case(3)
    crop = labels[1:4, 2:10, 1:14]  # (D, H, W): Slicer stores only the labelled box
    matrix = ijk_to_lps(image)
    matrix[:3, 3] = image.TransformIndexToPhysicalPoint((1, 2, 1))  # ITK order (x, y, z)
    seg = slicerio.create_segmentation(crop.T.shape, matrix)
    for value, name in enumerate(CLASSES, start=1):
        slicerio.add_segment(seg, crop.T == value, {"name": name})
    slicerio.write_segmentation(str(tmp_path / "c.seg.nrrd"), seg)
    expected = np.zeros_like(labels)
    expected[1:4, 2:10, 1:14] = crop
    placed = read_segmentation(tmp_path / "c.seg.nrrd", CLASSES, image)
    assert np.array_equal(sitk.GetArrayFromImage(placed), expected)
    # half a voxel off the grid: an error, never a resample
    matrix[:3, 3] += 0.5 * matrix[:3, 0]
    seg["ijkToLPS"] = matrix
    slicerio.write_segmentation(str(tmp_path / "d.seg.nrrd"), seg)
    with pytest.raises(UserError, match="between the image's voxels"):
        read_segmentation(tmp_path / "d.seg.nrrd", CLASSES, image)


def test_terminology_names_match_classes(tmp_path):
    import slicerio

    image, labels = case(3)
    seg = slicerio.create_segmentation(labels.T.shape, ijk_to_lps(image))
    lung = {"contextName": "x", "category": ["SCT", "123037004", "Anatomical Structure"],
            "type": ["SCT", "39607008", "Lung"], "typeModifier": ["SCT", "24028007", "Right"]}
    slicerio.add_segment(seg, labels.T == 1, {"name": "Segment_1", "terminology": lung})
    slicerio.write_segmentation(str(tmp_path / "t.seg.nrrd"), seg)
    values = sitk.GetArrayFromImage(read_segmentation(tmp_path / "t.seg.nrrd", CLASSES, image))
    assert np.array_equal(values, (labels == 1).astype(np.uint8))


def test_user_errors_name_the_file_and_the_fix(tmp_path):
    image, labels = case(3)
    good = write_seg_nrrd(as_image(labels, image), tmp_path / "a.seg.nrrd", CLASSES, COLORS)
    with pytest.raises(UserError, match=r"Segment 'heart' is not one of the classes \(right_lung, left_lung\)"):
        read_segmentation(good, CLASSES[:2], image)
    with pytest.raises(UserError, match="exists already"):
        write_seg_nrrd(as_image(labels, image), good, CLASSES, COLORS)

    other = with_geometry(sitk.GetArrayFromImage(image), (0.8, 0.6, 3.0), image.GetOrigin(),
                          np.reshape(image.GetDirection(), (3, 3)))
    with pytest.raises(UserError) as err:
        read_segmentation(good, CLASSES, other, reference_path="images/a.nrrd")
    assert "a.seg.nrrd" in str(err.value) and "images/a.nrrd" in str(err.value) and "spacing" in str(err.value)
    assert err.value.fix and "never resampled" in err.value.fix
    labelmap = write_labelmap(as_image(labels, image), tmp_path / "a.nrrd")
    with pytest.raises(UserError, match="does not lie on the voxel grid"):
        read_segmentation(labelmap, CLASSES, other)

    empty = write_seg_nrrd(as_image(np.zeros_like(labels), image), tmp_path / "e.seg.nrrd", CLASSES, COLORS)
    with pytest.raises(UserError, match="Empty label") as err:
        read_segmentation(empty, CLASSES, image)
    assert err.value.path.endswith("e.seg.nrrd")
    assert load_segmentation(empty, CLASSES, image, allow_empty=True).missing == CLASSES

    with pytest.raises(UserError, match="value 3, which has no class"):
        read_segmentation(labelmap, CLASSES[:2], image)
    fractional = with_geometry(labels * 0.5, image.GetSpacing(), image.GetOrigin(),
                               np.reshape(image.GetDirection(), (3, 3)))
    sitk.WriteImage(fractional, str(tmp_path / "f.nrrd"))
    with pytest.raises(UserError, match="value 0.5"):
        read_segmentation(tmp_path / "f.nrrd", CLASSES, image)
    with pytest.raises(UserError, match="label map"):
        class_names_from(labelmap)


def test_overlay_png(tmp_path):
    for dims in (2, 3):
        image, labels = case(dims)
        path = write_overlay_png(image, as_image(labels, image), COLORS, tmp_path / f"o{dims}.png")
        picture = sitk.ReadImage(str(path))
        assert picture.GetNumberOfComponentsPerPixel() == 3 and picture.GetDimension() == 2
        pixels = sitk.GetArrayFromImage(picture)
        assert (np.abs(pixels.astype(int) - np.array(COLORS[2]) * 255).sum(axis=-1) < 2).any()  # an outline
