"""Tests for DiffusionSegLib.imageio: formats, geometry, listing, normalisation, resampling.

Images are a few voxels wide so every test runs in milliseconds.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk

from DiffusionSegLib.errors import UserError
from DiffusionSegLib.imageio import (
    IMAGE_SUFFIXES,
    MODALITIES,
    Normalisation,
    case_id,
    check_same_dims,
    is_image_file,
    list_images,
    normalisation_for,
    read_image,
    read_image_info,
    resample_like,
    resample_to_size,
    resample_to_spacing,
    write_image,
)

# A geometry no format gets right by accident: anisotropic, shifted, rotated/flipped axes.
GEOMETRY = {
    2: dict(spacing=(0.5, 0.7), origin=(10.0, -20.0), direction=(0.0, 1.0, 1.0, 0.0)),
    3: dict(spacing=(0.5, 0.7, 1.5), origin=(10.0, -20.0, 5.0),
             direction=(0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)),
}
SHAPE = {2: (5, 6), 3: (4, 5, 6)}  # numpy order (H, W) / (D, H, W)


def make_image(dims: int, dtype=np.float32, geometry: bool = True, scale: float = 1.0) -> sitk.Image:
    """A ramp image with distinct values, ``(H, W)`` = (5, 6) or ``(D, H, W)`` = (4, 5, 6)."""
    pixels = (np.arange(np.prod(SHAPE[dims])).reshape(SHAPE[dims]) * scale).astype(dtype)
    image = sitk.GetImageFromArray(pixels)
    if geometry:
        image.SetSpacing(GEOMETRY[dims]["spacing"])
        image.SetOrigin(GEOMETRY[dims]["origin"])
        image.SetDirection(GEOMETRY[dims]["direction"])
    return image


def assert_geometry(image: sitk.Image, reference: sitk.Image, *, origin=True, direction=True, spacing_axes=None):
    assert image.GetSize() == reference.GetSize()
    axes = slice(None) if spacing_axes is None else slice(0, spacing_axes)
    np.testing.assert_allclose(image.GetSpacing()[axes], reference.GetSpacing()[axes], rtol=1e-5)
    if origin:
        np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-5)
    if direction:
        np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=1e-6)


def pixels(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def write_dicom_series(volume: sitk.Image, folder, series_uid="1.2.826.0.1.3680043.2.1125.1") -> None:
    """Write ``volume`` (int16) as one DICOM file per slice, with the tags that place each slice."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()  # otherwise each file gets new UIDs and the series falls apart
    d = volume.GetDirection()
    orientation = "\\".join(str(v) for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    for k in range(volume.GetDepth()):
        slice_k = volume[:, :, k]
        position = volume.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in {
            "0008|0060": "CT", "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.0", "0020|000e": series_uid,
            "0008|0018": f"{series_uid}.{k + 1}", "0020|0013": str(k + 1),
            "0020|0037": orientation, "0020|0032": "\\".join(str(v) for v in position),
            "0018|0050": str(volume.GetSpacing()[2]),
        }.items():
            slice_k.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(slice_k)


# --- round trips ---------------------------------------------------------------------

@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd"])
def test_round_trip_keeps_values_and_geometry(tmp_path, suffix, dims):
    image = make_image(dims, scale=0.25)
    path = tmp_path / f"case{suffix}"
    write_image(image, path)
    back = read_image(path)
    assert back.GetPixelID() == sitk.sitkFloat32 and back.GetDimension() == dims
    assert_geometry(back, image)
    np.testing.assert_array_equal(pixels(back), pixels(image))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


@pytest.mark.parametrize("dims", [2, 3])
def test_round_trip_tiff_keeps_values_and_in_plane_spacing(tmp_path, dims):
    image = make_image(dims, scale=0.25)
    write_image(image, tmp_path / "case.tif")
    back = read_image(tmp_path / "case.tif")
    # TIFF stores a resolution (x, y) but no origin, direction or slice spacing.
    assert_geometry(back, image, origin=False, direction=False, spacing_axes=2)
    np.testing.assert_array_equal(pixels(back), pixels(image))


@pytest.mark.parametrize("suffix, scale, tolerance", [(".png", 7.0, 0), (".png", 2000.0, 0), (".bmp", 7.0, 0),
                                                      (".jpg", 7.0, 4), (".jpeg", 7.0, 4)])
def test_round_trip_2d_pictures(tmp_path, suffix, scale, tolerance):
    image = make_image(2, scale=scale)  # float32; 2000 * 29 needs 16-bit PNG
    write_image(image, tmp_path / f"x{suffix}")
    back = read_image(tmp_path / f"x{suffix}")
    assert back.GetSize() == image.GetSize() and back.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(pixels(back), pixels(image), atol=tolerance)  # JPEG is lossy
    if suffix == ".png":
        np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), rtol=1e-3)  # PNG keeps spacing (pHYs)


def test_pictures_refuse_3d_and_out_of_range_values(tmp_path):
    with pytest.raises(UserError, match="2D images only"):
        write_image(make_image(3), tmp_path / "x.png")
    with pytest.raises(UserError, match=r"0\.\.255"):
        write_image(make_image(2, scale=100.0), tmp_path / "x.jpg")
    with pytest.raises(UserError, match="x.png"):
        write_image(make_image(2, scale=-1.0), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_single_dicom_file_reads_as_2d_with_geometry(tmp_path):
    # Scanners store a radiograph as a one-slice volume.
    volume = sitk.JoinSeries(make_image(2, dtype=np.int16, geometry=False))
    volume.SetSpacing((0.5, 0.7, 2.0))
    volume.SetOrigin((10.0, -20.0, 3.0))
    volume.SetDirection((0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    write_dicom_series(volume, tmp_path)  # one file, with the position and orientation tags
    (tmp_path / "slice000.dcm").rename(tmp_path / "xray.dcm")
    back = read_image(tmp_path / "xray.dcm")
    assert back.GetDimension() == 2
    np.testing.assert_allclose(back.GetSpacing(), (0.5, 0.7))
    np.testing.assert_allclose(back.GetOrigin(), (10.0, -20.0))
    np.testing.assert_allclose(back.GetDirection(), (0.0, -1.0, 1.0, 0.0), atol=1e-6)
    np.testing.assert_array_equal(pixels(back), pixels(volume)[0])
    assert read_image_info(tmp_path / "xray.dcm").dims == 2


def test_dicom_series_folder_reads_as_volume(tmp_path):
    volume = make_image(3, dtype=np.int16)
    volume.SetDirection((1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0))  # coronal slices
    write_dicom_series(volume, tmp_path / "ct")
    back = read_image(tmp_path / "ct")
    assert_geometry(back, volume)
    np.testing.assert_array_equal(pixels(back), pixels(volume))
    info = read_image_info(tmp_path / "ct")
    assert info.dims == 3 and info.size == volume.GetSize()
    np.testing.assert_allclose(info.spacing, volume.GetSpacing(), rtol=1e-5)
    assert case_id(tmp_path / "ct") == "ct"


def test_folder_with_two_dicom_series_asks_to_choose_one(tmp_path):
    write_dicom_series(make_image(3, dtype=np.int16), tmp_path / "mixed", series_uid="1.2.3.1")
    write_dicom_series(make_image(3, dtype=np.int16), tmp_path / "other", series_uid="1.2.3.2")
    for p in (tmp_path / "other").iterdir():
        os.replace(p, tmp_path / "mixed" / f"b_{p.name}")
    with pytest.raises(UserError, match="2 DICOM series") as err:
        read_image(tmp_path / "mixed")
    assert "mixed" in str(err.value) and "own sub-folder" in str(err.value)


# --- conversions ---------------------------------------------------------------------

def test_rgb_and_rgba_become_gray(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 50, 200
    rgb[1, 2] = (255, 255, 255)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "rgb.png"))
    rgba = np.concatenate([rgb, np.full((2, 3, 1), 7, np.uint8)], axis=-1)
    sitk.WriteImage(sitk.GetImageFromArray(rgba, isVector=True), str(tmp_path / "rgba.png"))
    for name in ("rgb.png", "rgba.png"):
        gray = read_image(tmp_path / name)
        assert gray.GetNumberOfComponentsPerPixel() == 1 and gray.GetPixelID() == sitk.sitkFloat32
        np.testing.assert_allclose(pixels(gray)[0, 0], 0.299 * 100 + 0.587 * 50 + 0.114 * 200, rtol=1e-6)
        np.testing.assert_allclose(pixels(gray)[1, 2], 255.0, rtol=1e-6)
    assert read_image_info(tmp_path / "rgb.png").components == 3


def test_single_slice_volume_becomes_2d_with_geometry(tmp_path):
    volume = sitk.JoinSeries(make_image(2, geometry=False))
    volume.SetSpacing((0.3, 0.4, 5.0))
    volume.SetOrigin((1.0, 2.0, 3.0))
    volume.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))  # Slicer's LPS flip of RAS
    sitk.WriteImage(volume, str(tmp_path / "slice.nrrd"))
    image = read_image(tmp_path / "slice.nrrd")
    assert image.GetDimension() == 2
    assert image.GetSpacing() == (0.3, 0.4) and image.GetOrigin() == (1.0, 2.0)
    assert image.GetDirection() == (-1.0, 0.0, 0.0, -1.0)
    np.testing.assert_array_equal(pixels(image), pixels(volume)[0])
    info = read_image_info(tmp_path / "slice.nrrd")
    assert (info.dims, info.size, info.spacing, info.origin) == (2, (6, 5), (0.3, 0.4), (1.0, 2.0))


def test_4d_and_non_colour_vector_images_are_refused(tmp_path):
    sitk.WriteImage(sitk.Image([4, 3, 2, 2], sitk.sitkFloat32), str(tmp_path / "t.nrrd"))
    with pytest.raises(UserError, match="4D"):
        read_image(tmp_path / "t.nrrd")
    field = sitk.GetImageFromArray(np.zeros((3, 4, 2), np.float32), isVector=True)
    sitk.WriteImage(field, str(tmp_path / "field.nrrd"))
    with pytest.raises(UserError, match="2 components"):
        read_image(tmp_path / "field.nrrd")
    with pytest.raises(UserError, match="2 components"):
        read_image_info(tmp_path / "field.nrrd")


# --- listing and checking folders ----------------------------------------------------

def test_list_images_mixed_folder(tmp_path):
    write_image(make_image(2, scale=3.0), tmp_path / "b.png")
    write_image(make_image(3), tmp_path / "a.nii.gz")
    write_image(make_image(3), tmp_path / "a.seg.nrrd")  # a label, not an image
    write_image(make_image(3), tmp_path / ".hidden.nrrd")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    write_dicom_series(make_image(3, dtype=np.int16), tmp_path / "series")
    found = list_images(tmp_path)
    assert [p.name for p in found] == ["a.nii.gz", "b.png", "series"]
    assert list_images(tmp_path / "b.png") == [tmp_path / "b.png"]
    # A folder of slices is one image, not one per slice.
    assert list_images(tmp_path / "series") == [tmp_path / "series"]


def test_list_images_separate_dicom_radiographs(tmp_path):
    # One-file series side by side are separate images; a suffixless file is found by its preamble.
    for k in (1, 2):
        write_dicom_series(sitk.JoinSeries(make_image(2, dtype=np.int16)), tmp_path / f"s{k}", series_uid=f"1.2.3.{k}")
        (tmp_path / f"s{k}" / "slice000.dcm").rename(tmp_path / ("IM1.dcm" if k == 1 else "1.2.840.5"))
    found = list_images(tmp_path)
    assert [p.name for p in found] == ["1.2.840.5", "IM1.dcm"]  # s1, s2 are empty now
    assert read_image(tmp_path / "1.2.840.5").GetDimension() == 2


def test_list_images_errors_name_the_folder(tmp_path):
    with pytest.raises(UserError, match="holds no images") as err:
        list_images(tmp_path)
    assert str(tmp_path) in str(err.value) and ".nii.gz" in str(err.value)
    with pytest.raises(UserError, match="No such file"):
        list_images(tmp_path / "missing")


def test_suffix_rules():
    assert set(IMAGE_SUFFIXES) >= {".png", ".nii.gz", ".nhdr", ".dcm", ".tiff"}
    assert is_image_file("A.NII.GZ") and is_image_file("x.jpeg") and not is_image_file("x.txt")
    assert case_id("a.nii.gz") == "a" and case_id("a.seg.nrrd") == "a" and case_id("a.mrk.json") == "a"
    assert case_id("knee.v2.nrrd") == "knee.v2" and case_id("1.2.840.113619") == "1.2.840.113619"


def test_check_same_dims(tmp_path):
    write_image(make_image(2), tmp_path / "flat.nrrd")
    write_image(make_image(3), tmp_path / "vol.nrrd")
    assert check_same_dims([tmp_path / "flat.nrrd"]) == 2
    assert check_same_dims([tmp_path / "vol.nrrd"]) == 3
    with pytest.raises(UserError, match="mixed") as err:
        check_same_dims(list_images(tmp_path))
    assert "flat.nrrd" in str(err.value) and "vol.nrrd" in str(err.value)


# --- writing safely and failing clearly ----------------------------------------------

def test_write_refuses_to_overwrite(tmp_path):
    path = tmp_path / "deep" / "er" / "x.nrrd"
    write_image(make_image(2), path)
    with pytest.raises(UserError, match="exists") as err:
        write_image(make_image(2, scale=2.0), path)
    assert str(path) in str(err.value)
    np.testing.assert_array_equal(pixels(read_image(path)), pixels(make_image(2)))
    write_image(make_image(2, scale=2.0), path, overwrite=True)
    np.testing.assert_array_equal(pixels(read_image(path)), pixels(make_image(2, scale=2.0)))
    assert [p.name for p in path.parent.iterdir()] == ["x.nrrd"]


def test_detached_header_names_its_data_file(tmp_path):
    write_image(make_image(3), tmp_path / "v.nhdr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.nhdr", "v.raw.gz"]
    assert "v.raw.gz" in (tmp_path / "v.nhdr").read_text(errors="replace")


def test_corrupt_and_unsupported_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.nrrd"
    bad.write_bytes(np.random.default_rng(0).bytes(300))
    for read in (read_image, read_image_info):
        with pytest.raises(UserError) as err:
            read(bad)
        assert str(bad) in str(err.value)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(UserError, match="not supported"):
        read_image(tmp_path / "x.txt")
    with pytest.raises(UserError, match="Cannot write"):
        write_image(make_image(2), tmp_path / "x.txt")


# --- normalisation -------------------------------------------------------------------

def test_ct_window():
    norm = normalisation_for("ct")
    assert (norm.method, norm.low, norm.high, norm.modality) == ("window", -1000.0, 1000.0, "ct")
    out = norm.apply(np.array([-2000.0, -1000.0, 0.0, 500.0, 3000.0]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [-1.0, -1.0, 0.0, 0.5, 1.0], atol=1e-6)
    assert normalisation_for("CT", low=-200, high=300).apply(np.array([50.0]))[0] == pytest.approx(0.0)


@pytest.mark.parametrize("modality", ["xray", "mri", "other"])
def test_percentile_scaling_per_image(modality):
    norm = normalisation_for(modality)
    assert (norm.method, norm.low, norm.high) == ("percentile", 0.5, 99.5)
    image = np.linspace(0.0, 1000.0, 1001)
    out = norm.apply(image)
    assert out.min() == -1.0 and out.max() == 1.0 and out[500] == pytest.approx(0.0, abs=1e-6)
    # Intensity scale does not matter: each image is scaled by its own percentiles.
    np.testing.assert_allclose(norm.apply(image * 37.0 + 5.0), out, atol=1e-5)
    with_nan = image.copy()
    with_nan[:10] = np.nan
    out_nan = norm.apply(with_nan)
    assert np.isfinite(out_nan).all() and (out_nan[:10] == -1.0).all()
    np.testing.assert_array_equal(norm.apply(np.full((4, 4), 42.0)), np.zeros((4, 4), np.float32))


def test_normalisation_dict_round_trip_and_validation():
    for modality in MODALITIES:
        norm = normalisation_for(modality)
        assert Normalisation.from_dict(norm.to_dict()) == norm
    with pytest.raises(UserError, match="method"):
        Normalisation.from_dict({"method": "zscore", "low": 0, "high": 1, "modality": "mri"})
    with pytest.raises(UserError, match="missing"):
        Normalisation.from_dict({"method": "window", "low": 0})
    with pytest.raises(UserError, match="low < high"):
        Normalisation("window", 10, -10, "ct")
    with pytest.raises(UserError, match="xray, ct, mri"):
        normalisation_for("pet")


# --- resampling ----------------------------------------------------------------------

def corners(image: sitk.Image) -> np.ndarray:
    """Physical positions of the outer corners (voxel edges, not centres) of the field of view."""
    size = np.array(image.GetSize())
    lows = -0.5 * np.ones_like(size, dtype=float)
    points = [lows, lows + size]
    return np.array([image.TransformContinuousIndexToPhysicalPoint(list(p)) for p in points])


@pytest.mark.parametrize("dims", [2, 3])
def test_resample_to_size_keeps_field_of_view(dims):
    image = make_image(dims)
    size = (12, 8) if dims == 2 else (12, 8, 3)
    resized = resample_to_size(image, size)
    assert resized.GetSize() == size and resized.GetDirection() == image.GetDirection()
    np.testing.assert_allclose(corners(resized), corners(image), atol=1e-9)
    at_spacing = resample_to_spacing(image, [1.0] * dims)
    expected = np.round(np.array(image.GetSize()) * image.GetSpacing()).astype(int)
    assert at_spacing.GetSize() == tuple(int(v) for v in expected)
    np.testing.assert_allclose(corners(at_spacing)[0], corners(image)[0], atol=1e-9)


def test_resample_like_maps_back_onto_the_original_grid():
    labels = make_image(2, dtype=np.uint8)
    up = resample_to_size(labels, (12, 10), interpolator="nearest")
    back = resample_like(up, labels, interpolator="nearest")
    assert_geometry(back, labels)
    np.testing.assert_array_equal(pixels(back), pixels(labels))
    # Linear interpolation reproduces a ramp exactly inside the image.
    ramp = make_image(2)
    back = resample_like(resample_to_size(ramp, (12, 10)), ramp)
    np.testing.assert_allclose(pixels(back)[1:-1, 1:-1], pixels(ramp)[1:-1, 1:-1], atol=1e-4)
    # Outside the source image the default is used.
    shifted = make_image(2)
    shifted.SetOrigin((1000.0, 1000.0))
    assert (pixels(resample_like(ramp, shifted, default=-5.0)) == -5.0).all()


def test_resample_vector_image_per_component():
    scalar = make_image(2)
    vector = sitk.Compose([scalar, scalar * 2.0])
    up = resample_to_size(vector, (12, 10), interpolator="bspline")
    assert up.GetNumberOfComponentsPerPixel() == 2
    np.testing.assert_allclose(pixels(up)[..., 1], 2.0 * pixels(up)[..., 0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(pixels(up)[..., 0], pixels(resample_to_size(scalar, (12, 10), "bspline")))


def test_unknown_interpolator_names_the_argument():
    with pytest.raises(ValueError, match="interpolator='cubic'"):
        resample_to_size(make_image(2), (3, 3), interpolator="cubic")
    with pytest.raises(ValueError, match="size_xyz"):
        resample_to_size(make_image(2), (3, 3, 3))
