"""Writing images atomically, in any format SimpleITK writes except DICOM.

A reader never sees half a file: SimpleITK writes into a hidden temporary folder beside
the target, under the target's own name (so it picks the format from the suffix and a
detached header such as ``.nhdr`` names the right data file), and each file is then
moved into place with ``os.replace``, the header last.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..atomic import fsync_dir, fsync_file
from ..errors import UserError
from .suffixes import IMAGE_SUFFIXES, PICTURE_SUFFIXES, image_suffix

# Formats whose writers compress losslessly (zlib); the others ignore the flag or, for
# JPEG, would read it as a quality setting.
_COMPRESSED = (".nrrd", ".nhdr", ".nii.gz", ".mha", ".mhd")
_KEEPS_ANY_TYPE = "write .nrrd, .nii.gz or .mha, which keep any pixel type and the geometry"


def write_image(image: sitk.Image, path: str | Path, *, overwrite: bool = False) -> None:
    """Write ``image`` to ``path``; the suffix picks the format.

    NRRD, NIfTI and MetaImage keep the pixel type and geometry and are compressed. PNG,
    JPEG and BMP hold 2D pictures of 8-bit integers (PNG also 16-bit): pixels are
    rounded to uint8, or uint16 for PNG when values exceed 255; origin and direction
    are lost there. Parent folders are created.

    Raises:
        UserError: the file exists and ``overwrite`` is False; the suffix is not
            writable; a 3D image or out-of-range values for a picture format.
    """
    path = Path(path)
    suffix = image_suffix(path)
    if suffix is None or suffix == ".dcm":
        raise UserError("Cannot write an image with this suffix.", path=path,
                        fix=f"use one of {' '.join(s for s in IMAGE_SUFFIXES if s != '.dcm')}.")
    if path.exists() and not overwrite:
        raise UserError("This file exists already and is not overwritten.", path=path,
                        fix="choose another name, or remove the file first.")
    if suffix in PICTURE_SUFFIXES:
        image = _as_picture(image, suffix, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        try:
            sitk.WriteImage(image, str(staging / path.name), suffix in _COMPRESSED)
        except RuntimeError as err:
            raise UserError(f"Could not write this image ({str(err).strip().splitlines()[-1]}).", path=path,
                            fix=f"check the folder is writable and has space, or {_KEEPS_ANY_TYPE}.") from err
        # Data files first, header (the file named like the target) last.
        written = sorted(staging.iterdir(), key=lambda p: p.name == path.name)
        clash = [path.parent / p.name for p in written if p.name != path.name and (path.parent / p.name).exists()]
        if clash and not overwrite:
            raise UserError("Writing this image would overwrite its existing data file.", path=clash[0],
                            fix="choose another name, or remove the file first.")
        for p in written:
            fsync_file(p)
        for p in written:
            os.replace(p, path.parent / p.name)
        fsync_dir(path.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _as_picture(image: sitk.Image, suffix: str, path: Path) -> sitk.Image:
    """``image`` as uint8 (uint16 for PNG when needed) for a 2D picture format."""
    if image.GetDimension() != 2:
        raise UserError(f"{suffix.upper()[1:]} holds 2D images only; this image is {image.GetDimension()}D.",
                        path=path, fix=_KEEPS_ANY_TYPE + ".")
    if image.GetPixelID() in (sitk.sitkUInt8, sitk.sitkVectorUInt8):
        return image
    pixels = sitk.GetArrayViewFromImage(image)
    if not np.all(np.isfinite(pixels)):
        raise UserError("The image has NaN or infinite values, which a picture cannot hold.", path=path,
                        fix=_KEEPS_ANY_TYPE + ".")
    low, high = float(pixels.min()), float(pixels.max())
    limit = 65535 if suffix == ".png" else 255
    if low < -0.5 or high >= limit + 0.5:
        raise UserError(f"Values {low:g}..{high:g} do not fit {suffix.upper()[1:]} (0..{limit}).", path=path,
                        fix=f"rescale the intensities to 0..{limit} first, or {_KEEPS_ANY_TYPE}.")
    dtype = np.uint8 if high < 255.5 else np.uint16
    result = sitk.GetImageFromArray(np.rint(pixels).astype(dtype), isVector=image.GetNumberOfComponentsPerPixel() > 1)
    result.CopyInformation(image)
    return result
