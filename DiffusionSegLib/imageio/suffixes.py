"""File-name rules for images: re-exported from :mod:`DiffusionSegLib.vocabulary`, where
the case-naming rule and every file role's suffixes are stated once."""

from __future__ import annotations

from ..vocabulary import IMAGE_SUFFIXES, PICTURE_SUFFIXES, case_name, image_suffix, is_image_file

__all__ = ["IMAGE_SUFFIXES", "PICTURE_SUFFIXES", "case_id", "image_suffix", "is_image_file"]

#: The case a file or DICOM series folder belongs to (the vocabulary's rule).
case_id = case_name
