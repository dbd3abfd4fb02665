"""Pairing images with their annotations by case name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..imageio import list_images
from ..vocabulary import LANDMARK_LABEL_SUFFIXES as LANDMARK_SUFFIXES  # noqa: F401  (re-exported)
from ..vocabulary import SEGMENTATION_LABEL_SUFFIXES as SEGMENTATION_SUFFIXES  # noqa: F401  (re-exported)
from ..vocabulary import case_files, case_map


@dataclass
class Case:
    name: str
    image: Path
    annotation: Path


def annotation_files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """``case name -> file`` for the annotation files in ``folder`` (the first suffix in ``suffixes`` wins)."""
    if not folder.is_dir():
        raise UserError("the annotation folder does not exist.", path=folder, fix="pass the folder of label files.")
    return case_files(folder, suffixes)


def labeled_cases(images: Path, annotations: Path, suffixes: tuple[str, ...]) -> list[Case]:
    """Every image that has an annotation; images without one are simply unlabeled.

    An annotation without an image is an error (it would otherwise be silently unused).
    """
    image_paths = case_map(list_images(images), images)
    files = annotation_files(annotations, suffixes)
    orphans = sorted(set(files) - set(image_paths))
    if orphans:
        raise UserError(f"annotations without a matching image: {', '.join(orphans[:5])}"
                        f"{' ...' if len(orphans) > 5 else ''}.", path=annotations,
                        fix=f"name each annotation like its image (case_001.nrrd -> case_001{suffixes[0]}), "
                            f"or add the images to {images}.")
    cases = [Case(name, image_paths[name], files[name]) for name in sorted(files)]
    if not cases:
        raise UserError(f"no annotated case: no file ending in {', '.join(suffixes)} matches an image.",
                        path=annotations, fix=f"save at least one annotation named after its image in {images}.")
    return cases
