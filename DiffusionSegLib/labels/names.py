"""Matching the segments of a file to a project's classes by name.

Slicer users name segments freely ("Right lung", "right_lung") or pick a terminology
entry, whose name is the type with its modifier ("Lung" + "Right"). A segment matches
a class when one of its names equals the class name exactly, else ignoring case, else
also ignoring ``_``/``-``/spaces; the first of these that finds a single class wins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def _casefold(name: str) -> str:
    return name.casefold()


def _loose(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.casefold()).strip()


_LEVELS = (str, _casefold, _loose)


def segment_names(segment: dict) -> list[str]:
    """The names a slicerio segment dict goes by: its name, then its terminology's
    ``modifier type`` (e.g. ``Right Lung``), ``type`` and anatomic region."""
    names = [segment.get("name", "")]
    terminology = segment.get("terminology") or {}

    def meaning(key):
        code = terminology.get(key)
        return code[2] if code and len(code) > 2 and code[2] else ""

    kind, modifier = meaning("type"), meaning("typeModifier")
    region, region_modifier = meaning("anatomicRegion"), meaning("anatomicRegionModifier")
    if kind and modifier:
        names += [f"{modifier} {kind}", f"{kind} {modifier}"]
    if region and region_modifier:
        names += [f"{region_modifier} {region}"]
    names += [kind, region]
    return [n for n in names if n]


def match_class(names: Sequence[str], classes: Sequence[str]) -> int | None:
    """Index of the class that one of ``names`` (best first) denotes, or None.

    Raises:
        ValueError: a name denotes several classes equally well (e.g. classes
            ``Heart`` and ``heart`` and a segment ``HEART``).
    """
    for level in _LEVELS:
        keys = [level(c) for c in classes]
        for name in names:
            hits = [i for i, key in enumerate(keys) if key == level(name)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise ValueError(f"segment name {name!r} fits several classes: "
                                 + ", ".join(classes[i] for i in hits))
    return None
