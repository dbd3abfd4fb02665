"""DICOM specifics: recognising DICOM files and picking the one series in a folder.

A CT or MR volume in DICOM is a folder of single-slice files; GDCM groups them by
Series Instance UID and sorts them by slice position.
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from ..errors import UserError
from ..vocabulary import holds_dicom, is_dicom_file  # noqa: F401  (the rule is the vocabulary's)


def series_in(folder: Path) -> dict[str, list[str]]:
    """Every DICOM series in ``folder``: series UID -> its files sorted by slice position."""
    reader = sitk.ImageSeriesReader
    return {uid: list(reader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in reader.GetGDCMSeriesIDs(str(folder))}


def series_files(folder: Path) -> list[str]:
    """The files of the single DICOM series in ``folder``, sorted by slice position.

    Raises:
        UserError: the folder holds no DICOM series, or several (we cannot guess which
            one the user means).
    """
    series = series_in(folder)
    if not series:
        raise UserError("This folder holds no readable DICOM series.", path=folder,
                        fix="point at a folder of DICOM slices, or at an image file.")
    if len(series) > 1:
        uids = ", ".join(sorted(series))
        raise UserError(f"This folder holds {len(series)} DICOM series ({uids}).", path=folder,
                        fix="choose one: move each series into its own sub-folder.")
    return next(iter(series.values()))
