"""DICOM specifics: recognising DICOM files and picking the one series in a folder.

A CT or MR volume in DICOM is a folder of single-slice files; GDCM groups them by
Series Instance UID and sorts them by slice position.
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from ..errors import UserError

# Files of other formats are never probed, so checking a folder of PNGs costs nothing.
_MAX_PROBED = 8


def is_dicom_file(path: Path) -> bool:
    """A ``.dcm`` file, or any file with the DICOM preamble (``DICM`` at byte 128).

    Scanners often write DICOM files with no suffix, hence the look at the bytes.
    DICOMDIR index files hold no pixels and are not counted.
    """
    if not path.is_file() or path.name.startswith(".") or path.name.upper() == "DICOMDIR":
        return False
    if path.name.lower().endswith(".dcm"):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def holds_dicom(folder: Path) -> bool:
    """True when ``folder`` (not its sub-folders) holds a DICOM file among its first few files."""
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]
    return any(is_dicom_file(p) for p in files[:_MAX_PROBED])


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
