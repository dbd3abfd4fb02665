"""The preprocessing a new network gets from the user's options.

Pretraining chooses it once and records it in the model folder; every later step
(fine-tuning, prediction) reads it from there. Fine-tuning from random initialisation
(no pretrained model) chooses it by the same rules, here, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import SimpleITK as sitk

from ..errors import UserError
from ..imageio import normalisation_for, read_image, read_image_info
from ..nets import NetworkConfig, check_fits
from .coordinates import NONE, coordinate_channels
from .preprocess import Preprocessing

#: A radiograph's network size when --image-size is not given: this many pixels across its shorter
#: side, the longer side in proportion (rounded to the network's downsampling factor), so the
#: anatomy keeps its shape (ISBI's 1935x2400 cephalograms: 64 x 80; JSRT: 64 x 64). Why 64: the
#: size every JSRT and ISBI benchmark ran; on JSRT validation the small preset at 64x64 beat the
#: tiny one at 128x128 (RESULTS.md, session 12).
DEFAULT_SHORT_SIDE_2D = 64
DEFAULT_PATCH_SIZE_3D = [64, 64, 32]


def default_image_size(first_image: Path, factor: int) -> list[int]:
    """(x, y) for a 2D network: ``DEFAULT_SHORT_SIDE_2D`` across the shorter side of ``first_image``
    (a multiple of ``factor``), the longer side in proportion, rounded to ``factor``. Reads the header only."""
    size = read_image_info(first_image).size[:2]
    short = max(factor, DEFAULT_SHORT_SIDE_2D // factor * factor)
    return [max(short, int(round(short * s / min(size) / factor)) * factor) for s in size]


def guess_modality(path: Path, dims: int) -> str:
    """X-ray for 2D; for 3D, CT when the image holds Hounsfield units (air near -1000), else MRI."""
    if dims == 2:
        return "xray"
    minimum = float(sitk.GetArrayViewFromImage(read_image(path)).min())
    return "ct" if minimum < -500 else "mri"


def choose_preprocessing(dims: int, first_image: Path, net: NetworkConfig, *, modality: str = "auto",
                         image_size: Sequence[int] | None = None, spacing: Sequence[float] | None = None,
                         patch_size: Sequence[int] | None = None, coordinates: str | None = None) -> Preprocessing:
    """Preprocessing from the options (sizes in x, y[, z] order, as ``--image-size``, ``--spacing``,
    ``--patch-size`` give them): modality (guessed from ``first_image`` if auto), size or spacing, patch.

    Raises:
        UserError: options that exclude each other, have the wrong length, or a patch the network cannot take.
    """
    modality = modality if modality != "auto" else guess_modality(first_image, dims)
    normalisation = normalisation_for(modality).to_dict()
    if image_size is not None and spacing is not None:
        raise UserError("--image-size and --spacing exclude each other.",
                        fix="resize whole images (--image-size, radiographs) or resample to a spacing "
                            "(--spacing, CT/MRI).")
    for name, value in (("--image-size", image_size), ("--spacing", spacing), ("--patch-size", patch_size)):
        if value is not None and len(value) != dims:
            raise UserError(f"{name} needs {dims} numbers for {dims}D images, got {list(value)}.",
                            fix=f"give {name} as {' '.join(['N'] * dims)}.")
    if dims == 2 and image_size is None and spacing is None:
        image_size = default_image_size(first_image, net.downsampling_factor)
    # At most one header read: the fallback below runs only when no image size was given or chosen.
    patch = patch_size or (image_size if dims == 2 and image_size else None) or (
        DEFAULT_PATCH_SIZE_3D if dims == 3 else default_image_size(first_image, net.downsampling_factor))
    check_fits(net, patch, option="--patch-size" if patch_size or dims == 3 else "--image-size")
    coordinate_channels(coordinates, dims)  # an unknown source fails here, before any work
    return Preprocessing(dims=dims, normalisation=normalisation, image_size=list(image_size) if image_size else None,
                         spacing=list(spacing) if spacing else None, patch_size=list(patch),
                         coordinates=None if coordinates in NONE else coordinates)
