"""Write the sample dataset (phantoms with real geometry) as a project folder.

Layout written::

    <out_dir>/project.json              task 'segmentation', classes, landmark names, modality
    <out_dir>/images/case_000.nrrd      2D: uint16 radiograph; 3D: int16 volume
    <out_dir>/labels/case_000.nrrd      uint8 label map, same geometry (value i+1 = classes[i])
    <out_dir>/landmarks/case_000.mrk.json   Slicer markups, LPS mm (2D: z = 0)

Geometry: identity direction, a non-zero origin (the image centred near 0 with an
offset, as scanners write it) and, by default, 1.4 mm pixels for 2D 256x256 (the JSRT
geometry) and 1.5 x 1.5 x 3 mm voxels for 3D 64x64x32; other sizes keep the same field
of view. Case ``i`` is drawn from ``np.random.default_rng([seed, i])``, so any case can
be regenerated alone and the dataset is identical on every machine.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from DiffusionSegLib.atomic import write_atomic
from DiffusionSegLib.errors import UserError
from DiffusionSegLib.landmarks import Landmarks, write_mrk_json
from DiffusionSegLib.project import Project
from DiffusionSegLib.sample_data.phantoms import (CHEST_CLASSES, CHEST_COLORS, CHEST_LANDMARKS, VOLUME_CLASSES,
                                                  VOLUME_COLORS, VOLUME_LANDMARKS, chest_phantom, volume_phantom)

GENERATOR = "DiffusionSegLib.sample_data"
GENERATOR_VERSION = 1  # bump when the phantoms change, so old folders are regenerated
DEFAULT_SIZE = {2: (256, 256), 3: (32, 64, 64)}  # numpy order (H, W) / (D, H, W)
FIELD_OF_VIEW_MM = {2: 358.4, 3: 96.0}  # across the larger in-plane side
ORIGIN_OFFSET_MM = (12.5, -20.0, 35.0)  # makes the origin clearly non-zero


def generate_sample_dataset(out_dir: str | Path, dims: int = 2, n_cases: int = 24,
                            size: Sequence[int] | None = None, seed: int = 0,
                            spacing: Sequence[float] | None = None) -> Project:
    """Generate (or complete) the sample dataset in ``out_dir`` and return its Project.

    Args:
        out_dir: an empty or absent folder, or one this function generated before.
        dims: 2 (chest radiograph phantoms, modality 'xray') or 3 (abdominal volumes, 'mri').
        n_cases: number of cases, named case_000, case_001, ...
        size: numpy order (H, W) or (D, H, W); default DEFAULT_SIZE[dims].
        seed: the dataset's seed.
        spacing: ITK order (x, y[, z]) in mm; default keeps the field of view of the defaults.
    Raises:
        UserError: bad arguments, or ``out_dir`` is non-empty and not a sample dataset.
    Calling again with the same arguments writes nothing if every file is present (and
    rewrites only missing ones otherwise); other arguments regenerate all case files.
    """
    out_dir = Path(out_dir)
    if dims not in (2, 3):
        raise UserError(f"dims must be 2 or 3, not {dims!r}.", fix="Use dims=2 or dims=3.")
    size = tuple(int(n) for n in (size or DEFAULT_SIZE[dims]))
    if len(size) != dims or min(size) < (16 if dims == 2 else 8):
        raise UserError(f"size {size} must give {dims} sides of at least {16 if dims == 2 else 8} pixels "
                        f"(numpy order {'(H, W)' if dims == 2 else '(D, H, W)'}).")
    if n_cases < 1:
        raise UserError(f"n_cases must be at least 1, not {n_cases}.")
    spacing = _default_spacing(dims, size) if spacing is None else [float(s) for s in spacing]
    if len(spacing) != dims or min(spacing) <= 0:
        raise UserError(f"spacing {spacing} must give {dims} positive values in mm, ITK order (x, y[, z]).")
    recipe = {"generator": GENERATOR, "generator_version": GENERATOR_VERSION, "dims": dims, "n_cases": int(n_cases),
              "size": list(size), "seed": int(seed), "spacing": spacing}

    previous = _previous_recipe(out_dir)
    if previous is None:
        classes, colors, names = _anatomy(dims)
        project = Project.create(out_dir, "segmentation", dims, classes=list(classes), class_colors=list(colors),
                                 landmark_names=list(names), modality="xray" if dims == 2 else "mri",
                                 extra={"sample_data": recipe}, overwrite=True)
    else:
        project = Project.load(out_dir)
        if previous != recipe:  # made with other arguments: start the case files afresh
            _remove_cases(out_dir)
            project = _reset(project, dims, recipe)
    landmarks_dir = out_dir / "landmarks"
    landmarks_dir.mkdir(exist_ok=True)

    origin = _origin(size, spacing)
    for i in range(n_cases):
        case = f"case_{i:03d}"
        paths = (project.images_dir / f"{case}.nrrd", project.labels_dir / f"{case}.nrrd",
                 landmarks_dir / f"{case}.mrk.json")
        if all(p.is_file() for p in paths):
            continue
        rng = np.random.default_rng([int(seed), i])
        if dims == 2:
            image, labelmap, points = chest_phantom(rng, size)
            pixels = np.round(image * 4095).astype(np.uint16)  # a 12-bit detector
        else:
            image, labelmap, points = volume_phantom(rng, size)
            pixels = np.round(image * 1000).astype(np.int16)
        img = _with_geometry(pixels, spacing, origin)
        _write_image(img, paths[0])
        _write_image(_with_geometry(labelmap, spacing, origin), paths[1])
        # index (array order) -> continuous ITK index (x, y[, z]) -> LPS mm
        lps = {n: img.TransformContinuousIndexToPhysicalPoint([float(c) for c in reversed(idx)])
               for n, idx in points.items()}
        write_mrk_json(Landmarks.from_dict(lps), paths[2], overwrite=True)
    return project


def _anatomy(dims: int):
    """(classes, class colours, landmark names) of the 2D or 3D phantom."""
    if dims == 2:
        return CHEST_CLASSES, CHEST_COLORS, CHEST_LANDMARKS
    return VOLUME_CLASSES, VOLUME_COLORS, VOLUME_LANDMARKS


def _default_spacing(dims: int, size: tuple[int, ...]) -> list[float]:
    inplane = FIELD_OF_VIEW_MM[dims] / max(size[-2:])
    return [inplane, inplane] if dims == 2 else [inplane, inplane, 2 * inplane]


def _origin(size, spacing) -> list[float]:
    """Centre the image near the physical origin, then shift it so the origin is not 0."""
    extent = [(n - 1) * s for n, s in zip(reversed(size), spacing)]  # ITK order
    return [-e / 2 + off for e, off in zip(extent, ORIGIN_OFFSET_MM)]


def _with_geometry(array: np.ndarray, spacing, origin) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(o) for o in origin])
    return img


def _write_image(img: sitk.Image, path: Path) -> None:
    """Write compressed NRRD atomically (the temporary name keeps the .nrrd suffix so
    SimpleITK picks the NRRD writer)."""
    write_atomic(path, lambda tmp: sitk.WriteImage(img, str(tmp), useCompression=True), suffix=".nrrd")


def _previous_recipe(out_dir: Path) -> dict | None:
    """The recipe of a sample dataset already in ``out_dir``; None if the folder is absent
    or empty; UserError if it holds anything else."""
    if not out_dir.exists() or not any(p for p in out_dir.iterdir() if not p.name.startswith(".")):
        return None
    if not out_dir.is_dir():
        raise UserError("is a file, not a folder.", path=out_dir, fix="Choose a folder for the sample data.")
    recipe = None
    if (out_dir / "project.json").is_file():
        try:
            recipe = Project.load(out_dir).extra.get("sample_data")
        except UserError:
            recipe = None
    if not isinstance(recipe, dict) or recipe.get("generator") != GENERATOR:
        raise UserError("folder is not empty and is not a generated sample dataset; refusing to write into it.",
                        path=out_dir, fix="Choose an empty or new folder for the sample data.")
    return recipe


def _remove_cases(out_dir: Path) -> None:
    """Delete the case files this generator writes (and nothing else)."""
    for sub, suffix in (("images", ".nrrd"), ("labels", ".nrrd"), ("landmarks", ".mrk.json")):
        for p in (out_dir / sub).glob(f"case_*{suffix}"):
            if re.fullmatch(r"case_\d+" + re.escape(suffix), p.name):
                p.unlink()


def _reset(project: Project, dims: int, recipe: dict) -> Project:
    classes, colors, names = _anatomy(dims)
    project.dims, project.classes, project.class_colors = dims, list(classes), list(colors)
    project.landmark_names, project.modality = list(names), "xray" if dims == 2 else "mri"
    project.task = "segmentation"
    project.extra["sample_data"] = recipe
    project.save()
    return project
