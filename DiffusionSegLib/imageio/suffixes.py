"""File-name rules: which files are images, and which case a file belongs to.

Suffixes are matched case-insensitively and compound suffixes (``.nii.gz``,
``.seg.nrrd``) count as one, so ``Knee.NII.GZ`` is a NIfTI image of case ``Knee``.
"""

from __future__ import annotations

from pathlib import Path

#: Suffixes SimpleITK reads for us; the order is irrelevant (matching takes the longest).
IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff",
    ".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd", ".dcm",
)

#: Formats that hold one 2D picture of 8 (or, for PNG, 16) bit integers.
PICTURE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")

#: Suffixes of label and markup files, stripped by :func:`case_id` so that an image and
#: its annotation (``a.nii.gz``, ``a.seg.nrrd``, ``a.mrk.json``) share one case id.
ANNOTATION_SUFFIXES: tuple[str, ...] = (
    ".seg.nrrd", ".seg.nhdr", ".seg.nii.gz", ".seg.nii", ".mrk.json", ".fcsv", ".csv",
)

LABEL_SUFFIX = ".seg.nrrd"


def _longest_match(name: str, suffixes: tuple[str, ...]) -> str | None:
    lower = name.lower()
    matches = [s for s in suffixes if lower.endswith(s) and len(lower) > len(s)]
    return max(matches, key=len) if matches else None


def image_suffix(path: str | Path) -> str | None:
    """The image suffix of ``path`` in lower case (``'.nii.gz'``), or None if unsupported."""
    return _longest_match(Path(path).name, IMAGE_SUFFIXES)


def is_image_file(path: str | Path) -> bool:
    """True when the name ends in one of :data:`IMAGE_SUFFIXES` (the file is not opened).

    Label files (``.seg.nrrd``) are image files too; :func:`~.images.list_images` is
    the place that leaves them out.
    """
    return image_suffix(path) is not None


def is_label_file(path: str | Path) -> bool:
    return Path(path).name.lower().endswith(LABEL_SUFFIX)


def case_id(path: str | Path) -> str:
    """The case a file or DICOM series folder belongs to.

    ``'a.nii.gz' -> 'a'``, ``'a.seg.nrrd' -> 'a'``, ``'a.mrk.json' -> 'a'``, a folder
    ``'.../case7/'`` -> ``'case7'``. A name with an unknown suffix is returned whole:
    DICOM files are often named by UID (``1.2.840.113619.2.55``), and cutting at the
    last dot would give two files of one folder the same case id.
    """
    path = Path(path)
    if path.is_dir():
        return path.name
    suffix = _longest_match(path.name, ANNOTATION_SUFFIXES + IMAGE_SUFFIXES)
    return path.name[: -len(suffix)] if suffix else path.name
