"""Node <-> file conversions against real MRML (slicer-core): geometry, voxels, names, colours."""

import json
import math

import numpy as np
import pytest

from mrml_helpers import ijk_to_ras, lps_from_ras, make_volume, paint_segment, rotation_ras

sitk = pytest.importorskip("SimpleITK")

CLASSES = ["liver", "spleen", "kidney"]
COLORS = [(0.9, 0.1, 0.1), (0.1, 0.8, 0.2), (0.2, 0.3, 0.9)]

GEOMETRIES = {
    # (z, y, x) shape, spacing (x, y, z), RAS origin, RAS direction
    "3d-oblique": ((5, 6, 7), (0.5, 0.7, 2.0), (10.0, -20.0, 30.0), rotation_ras(0.3, 0.2)),
    "2d-single-slice": ((1, 8, 9), (0.3, 0.4, 1.0), (-5.0, 7.0, 0.0), rotation_ras(-0.5, 0.0)),
}


@pytest.fixture(params=sorted(GEOMETRIES))
def volume(request, mrml):
    shape, spacing, origin, direction = GEOMETRIES[request.param]
    array = (np.arange(np.prod(shape)) % 251 - 40).astype(np.int16).reshape(shape)
    return make_volume(mrml, array, spacing, origin, direction, name="CT chest")


def masks_for(shape):
    """Two painted classes (liver, kidney) and one empty one (spleen)."""
    liver = np.zeros(shape, bool)
    liver[:, 1:4, 2:5] = True
    kidney = np.zeros(shape, bool)
    kidney[-1, -2:, -3:] = True
    return {"liver": liver, "kidney": kidney}


def test_volume_file_has_the_nodes_voxels_and_lps_geometry(mrml, volume, tmp_path):
    from DiffusionSegModuleLib import nodeio

    path = nodeio.write_volume(mrml, volume, tmp_path / "images" / "case_1.nrrd")
    image = sitk.ReadImage(str(path))
    array = nodeio.array_from_volume(volume)
    assert np.array_equal(sitk.GetArrayFromImage(image).reshape(array.shape), array)
    expected = lps_from_ras(ijk_to_ras(volume))
    spacing = np.array(image.GetSpacing() + (1.0,) * (3 - image.GetDimension()))
    assert np.allclose(spacing, volume.GetSpacing())
    assert np.allclose(image.GetOrigin(), expected[:image.GetDimension(), 3])
    direction = np.array(image.GetDirection()).reshape(image.GetDimension(), -1)
    assert np.allclose(direction * spacing[:image.GetDimension()], expected[:image.GetDimension(), :image.GetDimension()])
    assert not list(tmp_path.glob("images/.*partial*"))  # no temporary left behind

    again = nodeio.read_volume(mrml, path, "CT chest")
    assert again.GetName() != volume.GetName()  # a new node, the user's is untouched
    assert np.allclose(ijk_to_ras(again), ijk_to_ras(volume), atol=1e-6)
    assert np.array_equal(nodeio.array_from_volume(again), array)


def test_segmentation_round_trip(mrml, volume, tmp_path):
    from DiffusionSegModuleLib import nodeio

    shape = nodeio.array_from_volume(volume).shape
    annotation = nodeio.new_segmentation(mrml, volume, CLASSES, "CT chest labels", COLORS)
    assert nodeio.segment_names(annotation) == CLASSES
    masks = masks_for(shape)
    for name, mask in masks.items():
        paint_segment(mrml, annotation, name, mask, volume)
    annotation.GetSegmentation().GetSegment("kidney").SetColor(0.5, 0.5, 0.0)  # user changed a colour

    path = nodeio.write_segmentation(mrml, annotation, volume, CLASSES, tmp_path / "labels" / "case_1.seg.nrrd")

    # The file: the image's grid, label value i + 1 for CLASSES[i], names and colours kept.
    import slicerio

    seg = slicerio.read_segmentation(str(path))
    assert [s["name"] for s in seg["segments"]] == CLASSES
    assert [s["labelValue"] for s in seg["segments"]] == [1, 2, 3]
    assert np.allclose(seg["segments"][0]["color"], COLORS[0])
    assert np.allclose(seg["segments"][2]["color"], (0.5, 0.5, 0.0))
    assert np.allclose(seg["ijkToLPS"], lps_from_ras(ijk_to_ras(volume)), atol=1e-6)
    image = sitk.ReadImage(str(path))
    voxels = sitk.GetArrayFromImage(image).reshape(shape)
    expected = np.zeros(shape, np.uint8)
    expected[masks["liver"]] = 1
    expected[masks["kidney"]] = 3
    assert np.array_equal(voxels, expected)

    # Read back as a new node: same voxels per class, same names and colours.
    loaded = nodeio.read_segmentation(mrml, path, "CT chest labels", reference_volume=volume)
    assert loaded.GetID() != annotation.GetID()
    assert nodeio.segment_names(loaded) == CLASSES
    assert np.array_equal(nodeio.label_array(mrml, loaded, volume, CLASSES), expected)
    colors = [loaded.GetSegmentation().GetNthSegment(i).GetColor() for i in range(3)]
    assert np.allclose(colors, [COLORS[0], COLORS[1], (0.5, 0.5, 0.0)])
    assert loaded.GetSegmentation().ContainsRepresentation("Closed surface")  # shows in 3D


def test_segmentation_with_unknown_segment_is_refused(mrml, volume, tmp_path):
    from DiffusionSegModuleLib import nodeio

    annotation = nodeio.new_segmentation(mrml, volume, CLASSES, "labels")
    annotation.GetSegmentation().AddEmptySegment("tumour", "tumour")
    with pytest.raises(ValueError, match="'tumour' are not classes of this project"):
        nodeio.write_segmentation(mrml, annotation, volume, CLASSES, tmp_path / "x.seg.nrrd")
    assert not list(tmp_path.iterdir())


def test_transformed_volume_is_refused(mrml, volume, tmp_path):
    from DiffusionSegModuleLib import nodeio

    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    volume.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(ValueError, match="Harden the transform"):
        nodeio.write_volume(mrml, volume, tmp_path / "x.nrrd")


def test_markups_round_trip(mrml, volume, tmp_path):
    from DiffusionSegModuleLib import nodeio

    names = ["nasion", "sella", "menton"]
    points = nodeio.new_markups(mrml, names, "CT chest landmarks")
    assert points.GetNumberOfControlPoints() == 3
    assert all(points.GetNthControlPointPositionStatus(i) == points.PositionUndefined for i in range(3))
    ras = {"nasion": (1.5, -2.25, 30.125), "menton": (-4.0, 5.5, 0.0)}
    points.SetNthControlPointPosition(0, *ras["nasion"])
    points.SetNthControlPointPosition(2, *ras["menton"])

    path = tmp_path / "labels" / "case_1.mrk.json"
    missing = nodeio.write_markups(mrml, points, names, path)
    assert missing == ["sella"]
    doc = json.loads(path.read_text())["markups"][0]
    assert doc["coordinateSystem"] == "LPS"
    assert [(p["label"], p["position"]) for p in doc["controlPoints"]] == [
        ("nasion", [-1.5, 2.25, 30.125]), ("menton", [4.0, -5.5, 0.0])]

    # The backend reads the same names and LPS coordinates.
    from DiffusionSegLib.landmarks import read_landmarks

    landmarks = read_landmarks(path)
    assert landmarks.names == ["nasion", "menton"]
    assert np.allclose(landmarks.points, [[-1.5, 2.25, 30.125], [4.0, -5.5, 0.0]])

    loaded = nodeio.read_markups(mrml, path, "CT chest landmarks")
    assert loaded.GetID() != points.GetID() and loaded.GetName() != points.GetName()
    assert {k: np.round(v, 6).tolist() for k, v in nodeio.defined_points(loaded).items()} == {
        k: list(v) for k, v in ras.items()}


def test_markups_with_transform_are_saved_in_world_coordinates(mrml, tmp_path):
    import vtk
    from DiffusionSegModuleLib import nodeio

    points = nodeio.new_markups(mrml, ["a"], "pts")
    points.SetNthControlPointPosition(0, 1.0, 2.0, 3.0)
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 10.0)
    transform.SetMatrixTransformToParent(matrix)
    points.SetAndObserveTransformNodeID(transform.GetID())
    nodeio.write_markups(mrml, points, ["a"], tmp_path / "a.mrk.json")
    doc = json.loads((tmp_path / "a.mrk.json").read_text())["markups"][0]
    assert doc["controlPoints"][0]["position"] == [-11.0, -2.0, 3.0]


def test_markups_errors(mrml, tmp_path):
    from DiffusionSegModuleLib import nodeio

    points = nodeio.new_markups(mrml, ["a", "b"], "pts")
    with pytest.raises(ValueError, match="No landmark is placed"):
        nodeio.write_markups(mrml, points, ["a", "b"], tmp_path / "x.mrk.json")
    points.SetNthControlPointPosition(0, 0, 0, 0)
    points.SetNthControlPointLabel(0, "c")
    with pytest.raises(ValueError, match="'c' are not landmarks"):
        nodeio.write_markups(mrml, points, ["a", "b"], tmp_path / "x.mrk.json")


def test_backend_style_predictions_load_with_the_images_geometry(mrml, volume, tmp_path):
    """Prediction files as the backend writes them (slicerio .seg.nrrd, a plain label map,
    a DiffusionSegLib .mrk.json) become new nodes on the image's grid."""
    import slicerio
    from DiffusionSegModuleLib import nodeio

    shape = nodeio.array_from_volume(volume).shape
    labels = np.zeros(shape, np.uint8)
    for value, mask in enumerate(masks_for(shape).values(), start=1):
        labels[mask] = value * 2 - 1  # liver -> 1, kidney -> 3
    ijk_to_lps = lps_from_ras(ijk_to_ras(volume))

    # 1. slicerio (what DiffusionSegLib.labels writes): voxels in (x, y, z) order, LPS geometry.
    segmentation = {
        "voxels": np.transpose(labels, (2, 1, 0)).copy(),
        "ijkToLPS": ijk_to_lps,
        "encoding": "gzip",
        "segments": [{"id": n, "name": n, "labelValue": i + 1, "layer": 0, "color": list(COLORS[i])}
                     for i, n in enumerate(CLASSES)],
    }
    slicerio_path = tmp_path / "pred" / "case_1.seg.nrrd"
    slicerio_path.parent.mkdir()
    slicerio.write_segmentation(str(slicerio_path), segmentation)
    node = nodeio.read_segmentation(mrml, slicerio_path, "case_1 prediction", reference_volume=volume)
    assert nodeio.segment_names(node) == CLASSES
    assert np.array_equal(nodeio.label_array(mrml, node, volume, CLASSES), labels)
    assert node.GetSegmentation().ContainsRepresentation("Closed surface")

    # 2. A plain label map (SimpleITK), 2D files stay 2D: segments named from the classes.
    image = sitk.GetImageFromArray(labels[0] if shape[0] == 1 else labels)
    dim = image.GetDimension()
    spacing = np.array(volume.GetSpacing())[:dim]
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(ijk_to_lps[:dim, 3].tolist())
    image.SetDirection((ijk_to_lps[:dim, :dim] / spacing).ravel().tolist())
    plain_path = tmp_path / "pred" / "case_1_plain.nrrd"
    sitk.WriteImage(image, str(plain_path))
    node = nodeio.read_segmentation(mrml, plain_path, "plain", reference_volume=volume, class_names=CLASSES)
    assert set(nodeio.segment_names(node)) == {"liver", "kidney"}
    assert np.array_equal(nodeio.label_array(mrml, node, volume, CLASSES), labels)

    # 3. Landmarks from DiffusionSegLib, with a missing point.
    from DiffusionSegLib.landmarks import Landmarks, write_mrk_json

    lps = np.array([[1.0, 2.0, 3.0], [np.nan] * 3])
    mrk_path = write_mrk_json(Landmarks(["nasion", "sella"], lps, confidence=[0.9, math.nan]),
                              tmp_path / "pred" / "case_1.mrk.json")
    node = nodeio.read_markups(mrml, mrk_path, "case_1 prediction")
    assert node.GetName().startswith("case_1 prediction")
    assert [node.GetNthControlPointLabel(i) for i in range(2)] == ["nasion", "sella"]
    assert np.allclose(nodeio.defined_points(node)["nasion"], (-1.0, -2.0, 3.0))
    assert node.GetNthControlPointPositionStatus(1) == node.PositionUndefined


def test_backend_reads_what_the_module_writes_and_vice_versa(mrml, volume, tmp_path):
    """The contract both ways: the module's .nrrd + .seg.nrrd read by DiffusionSegLib give the
    painted labels on the image grid; DiffusionSegLib's write_seg_nrrd loads as the same node."""
    imageio = pytest.importorskip("DiffusionSegLib.imageio")
    labels_lib = pytest.importorskip("DiffusionSegLib.labels")
    from DiffusionSegModuleLib import nodeio

    shape = nodeio.array_from_volume(volume).shape
    annotation = nodeio.new_segmentation(mrml, volume, CLASSES, "labels", COLORS)
    for name, mask in masks_for(shape).items():
        paint_segment(mrml, annotation, name, mask, volume)
    image_path = nodeio.write_volume(mrml, volume, tmp_path / "images" / "c.nrrd")
    label_path = nodeio.write_segmentation(mrml, annotation, volume, CLASSES, tmp_path / "labels" / "c.seg.nrrd")
    expected = nodeio.label_array(mrml, annotation, volume, CLASSES)

    image = imageio.read_image(image_path)  # a one-slice volume comes back 2D
    read = labels_lib.load_segmentation(label_path, CLASSES, image, reference_path=image_path)
    assert read.classes == CLASSES and read.missing == ["spleen"] and read.overlap_voxels == 0
    assert np.allclose(read.colors, COLORS)
    assert np.array_equal(sitk.GetArrayFromImage(read.labelmap).reshape(shape), expected)

    predicted = labels_lib.write_seg_nrrd(read.labelmap, tmp_path / "pred" / "c.seg.nrrd", CLASSES, COLORS)
    node = nodeio.read_segmentation(mrml, predicted, "c prediction", reference_volume=volume)
    assert nodeio.segment_names(node) == CLASSES
    assert np.array_equal(nodeio.label_array(mrml, node, volume, CLASSES), expected)


def test_read_volume_reads_one_file_not_the_numbered_series(mrml, tmp_path):
    """Project images are often case_000.nrrd, case_001.nrrd...: loading one must not stack them all."""
    from DiffusionSegModuleLib import nodeio

    for i in range(3):
        image = sitk.GetImageFromArray(np.full((6, 5), i, np.uint16))
        image.SetSpacing((0.5, 0.5))
        sitk.WriteImage(image, str(tmp_path / f"case_{i:03d}.nrrd"))
    node = nodeio.read_volume(mrml, tmp_path / "case_001.nrrd", "case_001")
    assert node.GetImageData().GetDimensions() == (5, 6, 1)
    assert np.all(nodeio.array_from_volume(node) == 1)
