"""Finding and reading images: any format SimpleITK reads, as one kind of image.

Every image comes back as a ``SimpleITK.Image`` with scalar float32 pixels, dimension
2 or 3, and its geometry (spacing, origin, direction in ITK order ``(x, y[, z])``, LPS
millimetres). Arrays taken from it are ``(H, W)`` or ``(D, H, W)``.

A DICOM volume is a folder holding one series; such a folder is listed and read like a
file. Label files (``.seg.nrrd``) sit beside images but are not images to train on,
so :func:`list_images` leaves them out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from ..errors import UserError
from . import _dicom, _pixels
from ._native import native_stderr_silenced
from ..vocabulary import IMAGE_SUFFIXES, case_map, image_entries, image_suffix, is_image_file
from .suffixes import case_id
from .writing import write_image

__all__ = [
    "IMAGE_SUFFIXES", "ImageInfo", "case_id", "check_same_dims", "is_image_file", "list_images",
    "read_image", "read_image_info", "write_image",
]

_SUPPORTED = " ".join(IMAGE_SUFFIXES) + " or a folder holding one DICOM series"


def _require_exists(path: Path) -> None:
    if not path.exists():
        raise UserError("No such file or folder.", path=path, fix="check the path.")


def _listed_files(folder: Path) -> list[Path]:
    """The folder's image entries; its own loose slices of one DICOM series count as one (the folder)."""
    entries = image_entries(folder)
    dicoms = [p for p in entries if p.is_file() and _dicom.is_dicom_file(p)]
    if not dicoms:
        return entries
    # DICOM files here are either separate pictures (radiographs: one file per series) or
    # the slices of one volume; reading the slices one by one would be silently wrong.
    series = _dicom.series_in(folder)
    if all(len(names) == 1 for names in series.values()):
        return entries
    if len(series) == 1:
        return sorted([p for p in entries if p not in dicoms] + [folder], key=lambda p: p.name)
    raise UserError(f"This folder holds {len(series)} DICOM series, some of several slices.", path=folder,
                    fix="move each series into its own sub-folder.")


def list_images(folder: str | Path) -> list[Path]:
    """Images in ``folder`` (not recursive), sorted by name.

    Entries are image files, plus one entry per sub-folder that holds a DICOM series
    (vocabulary.image_entries). Hidden files and labels (``.seg.nrrd``, ``.mrk.json``) are
    skipped. A file path gives ``[path]``.

    Raises:
        UserError: the path does not exist, holds no supported image, or holds two images
            of one case (vocabulary.case_map).
    """
    folder = Path(folder)
    _require_exists(folder)
    if folder.is_file():
        return [folder]
    found = _listed_files(folder)
    if not found:
        raise UserError("This folder holds no images.", path=folder, fix=f"add images ({_SUPPORTED}).")
    case_map(found, folder)
    return found


def _check_readable_name(path: Path) -> None:
    if path.is_file() and image_suffix(path) is None and not _dicom.is_dicom_file(path):
        raise UserError("This file type is not supported.", path=path, fix=f"convert it to one of {_SUPPORTED}.")


def read_image(path: str | Path) -> sitk.Image:
    """Read an image file or a DICOM series folder as a scalar float32 2D or 3D image.

    Colour (RGB/RGBA) becomes gray by ITU-R 601 luminance; a 3D image of one slice
    becomes 2D (in-plane spacing, origin x, y and direction kept).

    Raises:
        UserError: missing, unsupported, corrupt, 4D, or a vector image that is not
            colour; a folder with no or several DICOM series.
    """
    path = Path(path)
    _require_exists(path)
    _check_readable_name(path)
    try:
        with native_stderr_silenced():  # the failure comes back as the exception below
            if path.is_dir():
                reader = sitk.ImageSeriesReader()
                reader.SetFileNames(_dicom.series_files(path))
                image = reader.Execute()
            else:
                image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise UserError(f"Could not read this image ({_itk_reason(err)}).", path=path,
                        fix="check that the file is complete and in a supported format; "
                            "re-export it if needed.") from err
    return _pixels.to_scalar_float(image, path)


def _itk_reason(err: RuntimeError) -> str:
    """The last line of an ITK exception, which says what failed without the C++ trace."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else "unreadable"


@dataclass(frozen=True)
class ImageInfo:
    """An image's header, after the single-slice rule.

    Attributes:
        dims: 2 or 3.
        size: voxels ``(x, y[, z])``.
        spacing, origin: mm, ``(x, y[, z])``.
        direction: row-major ``dims x dims`` direction cosines.
        components: components per pixel (1 for gray, 3 for RGB).
    """

    dims: int
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    components: int


def _header(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with native_stderr_silenced():
            reader.ReadImageInformation()
    except RuntimeError as err:
        raise UserError(f"Could not read this image's header ({_itk_reason(err)}).", path=path,
                        fix="check that the file is complete and in a supported format.") from err
    return reader


def read_image_info(path: str | Path) -> ImageInfo:
    """An image's geometry from its header only, without reading pixels.

    Fast enough to check a folder of large volumes. For a DICOM series folder the size
    in z is the number of slices and the z spacing comes from the first and last slice.

    Raises:
        UserError: as :func:`read_image`.
    """
    path = Path(path)
    _require_exists(path)
    _check_readable_name(path)
    files = _dicom.series_files(path) if path.is_dir() else [str(path)]
    reader = _header(Path(files[0]))
    size, spacing, origin = list(reader.GetSize()), list(reader.GetSpacing()), list(reader.GetOrigin())
    direction = reader.GetDirection()
    if len(files) > 1:
        last = _header(Path(files[-1]))
        gap = sum((a - b) ** 2 for a, b in zip(last.GetOrigin(), origin)) ** 0.5
        size[2], spacing[2] = len(files), gap / (len(files) - 1)
    _pixels.check_pixels(len(size), reader.GetNumberOfComponents(), reader.GetPixelID(), path)
    if len(size) == 3 and size[2] == 1:
        size = size[:2]
        spacing, origin, direction = _pixels.planar_geometry(spacing, origin, direction)
    return ImageInfo(dims=len(size), size=tuple(size), spacing=tuple(spacing), origin=tuple(origin),
                     direction=tuple(direction), components=reader.GetNumberOfComponents())


def check_same_dims(paths: Iterable[str | Path]) -> int:
    """The dimension (2 or 3) all images share, from headers only.

    Raises:
        UserError: no paths, or 2D and 3D images mixed (one of each is named).
    """
    example: dict[int, Path] = {}
    for path in paths:
        example.setdefault(read_image_info(path).dims, Path(path))
    if not example:
        raise UserError("No images were given.", fix=f"add images ({_SUPPORTED}).")
    if len(example) > 1:
        raise UserError(f"2D and 3D images are mixed: {example[2]} is 2D but {example[3]} is 3D.",
                        fix="keep 2D and 3D images in separate folders; a model is either 2D or 3D.")
    return next(iter(example))
