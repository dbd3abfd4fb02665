"""Landmark point sets in physical millimetres, and the files Slicer keeps them in.

Conventions:
- Points are ``(N, 3)`` float64 arrays in **LPS millimetres** (the ITK / DICOM patient
  frame, as SimpleITK and Slicer's files use). 2D images put their landmarks at z = 0.
- A landmark that is not placed (or was not found) is a row of NaN; names keep their
  order, so ``points[i]`` always belongs to ``names[i]``.
- Files: Slicer markups JSON (``.mrk.json``), legacy Slicer fiducial lists (``.fcsv``)
  and plain CSV (``name,x,y,z``, LPS). RAS files are converted on reading by negating
  x and y; everything in memory is LPS.

How predictions appear in Slicer (the convention :func:`write_mrk_json` follows):
- the label is the landmark name, never decorated, so files round-trip by name;
- the point's ``description`` carries ``confidence=0.870`` and, for a flagged point,
  ``; flag=low_confidence`` (shown in the Markups module's control point table);
- a flagged point is written with ``selected: false`` so Slicer draws it in the list's
  *unselected* colour, distinct from the confident ones, while ``positionStatus`` stays
  ``defined`` (the point is still shown and still counts);
- every point is ``locked: false`` so the user can drag a wrong prediction into place.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from DiffusionSegLib.errors import UserError

LOW_CONFIDENCE = "low_confidence"

# The schema id Slicer 5 writes (Slicer accepts any markups-schema-v1.x.y id on reading).
MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
    "Resources/Schema/markups-schema-v1.0.3.json#"
)
FCSV_COLUMNS = "id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID"
_POINT_LIST_TYPES = {"Fiducial", "PointList", "Point list"}
_RESAVE = ("Save the landmarks again from Slicer's Markups module (a point list), or write a CSV with the "
           "columns name,x,y,z in LPS millimetres.")
_NOT_PLACED = {"undefined", "missing", "preview"}  # preview = still being placed


@dataclass
class Landmarks:
    """Named points in LPS millimetres.

    Attributes:
        names: N unique landmark names.
        points: (N, 3) float64, LPS mm; a NaN row is a landmark that is not placed.
        confidence: (N,) float64 in [0, 1] (NaN where unknown), or None for annotations.
        flags: N strings, '' for none (e.g. ``LOW_CONFIDENCE``), or None.
    """

    names: list[str]
    points: np.ndarray
    confidence: np.ndarray | None = None
    flags: list[str] | None = None

    def __post_init__(self):
        self.names = [str(n) for n in self.names]
        pts = np.asarray(self.points, dtype=np.float64)
        if pts.size == 0:
            pts = pts.reshape(0, 3)
        if pts.ndim == 2 and pts.shape[1] == 2:  # 2D points: z = 0
            pts = np.concatenate([pts, np.where(np.isnan(pts[:, :1]), np.nan, 0.0)], axis=1)
        if pts.shape != (len(self.names), 3):
            raise ValueError(f"points must have shape ({len(self.names)}, 3), got {pts.shape}")
        self.points = pts
        if self.confidence is not None:
            self.confidence = np.asarray(self.confidence, dtype=np.float64).reshape(-1)
            if self.confidence.shape != (len(self.names),):
                raise ValueError(f"confidence must have shape ({len(self.names)},)")
        if self.flags is not None:
            self.flags = ["" if f is None else str(f) for f in self.flags]
            if len(self.flags) != len(self.names):
                raise ValueError(f"flags must have {len(self.names)} entries")
        dup = _duplicates(self.names)
        if dup:
            raise ValueError(f"duplicated landmark names: {', '.join(dup)}")

    @classmethod
    def from_dict(cls, points: dict[str, Sequence[float]], **kwargs) -> "Landmarks":
        """Build from ``{name: (x, y[, z])}`` in LPS mm (insertion order kept)."""
        rows = [list(map(float, p)) + [0.0] * (3 - len(p)) for p in points.values()]
        return cls(list(points), np.asarray(rows, dtype=np.float64).reshape(-1, 3), **kwargs)

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Row of ``name``; KeyError if absent."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(name) from None

    def get(self, name: str) -> np.ndarray:
        """(3,) LPS mm of ``name`` (NaN if not placed); KeyError if absent."""
        return self.points[self.index(name)].copy()

    def is_missing(self) -> np.ndarray:
        """(N,) bool: True where the landmark is not placed (any coordinate NaN)."""
        return np.isnan(self.points).any(axis=1)

    def reordered(self, names: Iterable[str]) -> "Landmarks":
        """Same points in the order of ``names``; names absent here become NaN rows,
        names here but not in ``names`` are dropped."""
        names = list(names)
        rows = [self.names.index(n) if n in self.names else -1 for n in names]
        pts = np.full((len(names), 3), np.nan)
        conf = None if self.confidence is None else np.full(len(names), np.nan)
        flags = None if self.flags is None else [""] * len(names)
        for i, r in enumerate(rows):
            if r >= 0:
                pts[i] = self.points[r]
                if conf is not None:
                    conf[i] = self.confidence[r]
                if flags is not None:
                    flags[i] = self.flags[r]
        return Landmarks(names, pts, conf, flags)


# ----------------------------------------------------------------------------- reading


def read_landmarks(path: str | Path, names: Sequence[str] | None = None) -> Landmarks:
    """Read ``.mrk.json`` / ``.json``, ``.fcsv`` or ``.csv`` into LPS mm.

    Args:
        path: the file; the format is chosen by its suffix.
        names: if given, the result is reordered to these names (absent ones NaN).
    Raises:
        UserError: unknown suffix, unreadable or malformed file, duplicated names.
    """
    path = Path(path)
    lower = path.name.lower()
    if not path.is_file():
        raise UserError("landmark file not found.", path=path, fix="Check the path.")
    readers = {".json": _read_mrk_json, ".fcsv": _read_fcsv, ".csv": _read_csv}
    reader = next((r for suffix, r in readers.items() if lower.endswith(suffix)), None)
    if reader is None:
        raise UserError(
            "unknown landmark file type.", path=path,
            fix="Use a Slicer markups file (.mrk.json), a .fcsv file or a CSV with columns name,x,y,z.",
        )
    try:
        lm = reader(path)
    except UserError as err:
        if err.fix:
            raise
        raise UserError(err.message, path=err.path, fix=_RESAVE) from None
    return lm if names is None else lm.reordered(names)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read landmark file ({e}).", path=path) from e


def _read_mrk_json(path: Path) -> Landmarks:
    try:
        doc = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON ({e}).", path=path, fix="Re-save the markups from Slicer.") from e
    markups = doc.get("markups") if isinstance(doc, dict) else None
    if not isinstance(markups, list):
        raise UserError("no 'markups' list; not a Slicer markups file.", path=path)
    markup = next((m for m in markups if isinstance(m, dict) and _text(m.get("type")) in _POINT_LIST_TYPES), None)
    if markup is None:
        raise UserError("holds no point list (markups of type 'Fiducial').", path=path,
                        fix="Save a Point List markups node, not a line, curve or ROI.")
    system = markup.get("coordinateSystem", "LPS")
    if _text(system) not in ("LPS", "RAS"):
        raise UserError(f"unknown coordinateSystem {system!r}.", path=path, fix="Use 'LPS' or 'RAS'.")
    units = markup.get("coordinateUnits", "mm")
    units = units[0] if isinstance(units, list) and units else units
    scale = {"mm": 1.0, "um": 1e-3}.get(_text(units))
    if scale is None:
        raise UserError(f"unknown coordinateUnits {units!r}.", path=path, fix="Use 'mm'.")
    cps = markup.get("controlPoints", [])
    if not isinstance(cps, list):
        raise UserError("'controlPoints' is not a list.", path=path)
    names, pts, conf, flags = [], [], [], []
    for k, cp in enumerate(cps, start=1):
        where = f"control point {k}"
        if not isinstance(cp, dict):
            raise UserError(f"{where} is not an object.", path=path)
        label = str(cp.get("label", "")).strip()
        if not label:
            raise UserError(f"{where} has no label (the landmark name).", path=path,
                            fix="Name every control point in Slicer's Markups module.")
        status = _text(cp.get("positionStatus", "defined"))
        if status in _NOT_PLACED:
            xyz = [math.nan] * 3
        else:
            xyz = cp.get("position")
            if not (isinstance(xyz, list) and len(xyz) == 3 and all(_is_number(v) for v in xyz)):
                raise UserError(f"{where} ({label!r}) has no valid 3-number 'position'.", path=path,
                                fix="Place the point again in Slicer's Markups module, or mark it as not placed.")
            xyz = [float(v) * scale for v in xyz]
            if not all(math.isfinite(v) for v in xyz):
                raise UserError(f"{where} ({label!r}) is placed but its position {xyz} is not finite.", path=path,
                                fix="Place the point again in Slicer's Markups module, or set its positionStatus "
                                    "to 'undefined' if it is not visible.")
        names.append(label)
        pts.append(xyz)
        c, f = _parse_description(str(cp.get("description", "")))
        conf.append(c)
        flags.append(f)
    return _build(path, names, pts, conf, flags, ras=(system == "RAS"))


def _read_fcsv(path: Path) -> Landmarks:
    text = _read_text(path)
    ras = True  # Slicer before 4.11 wrote no CoordinateSystem line and meant RAS
    names, pts = [], []
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip():
            continue
        if row[0].startswith("#"):
            m = re.match(r"#\s*CoordinateSystem\s*=\s*(\S+)", ",".join(row))
            if m:
                value = m.group(1).upper()
                if value not in ("0", "1", "RAS", "LPS"):
                    raise UserError(f"line {lineno}: unknown CoordinateSystem {m.group(1)!r}.", path=path)
                ras = value in ("0", "RAS")
            continue
        if len(row) < 12:
            raise UserError(f"line {lineno}: expected {FCSV_COLUMNS.count(',') + 1} columns ({FCSV_COLUMNS}), got {len(row)}.",
                            path=path)
        label = row[11].strip()
        if not label:
            raise UserError(f"line {lineno}: empty label (the landmark name).", path=path)
        try:
            xyz = [float(v) if v.strip() else math.nan for v in row[1:4]]
        except ValueError:
            raise UserError(f"line {lineno}: x, y, z are not numbers: {row[1:4]}.", path=path) from None
        names.append(label)
        pts.append(xyz)
    return _build(path, names, pts, None, None, ras=ras)


def _read_csv(path: Path) -> Landmarks:
    rows = list(csv.reader(io.StringIO(_read_text(path))))
    rows = [r for r in rows if r and "".join(r).strip()]
    if not rows:
        raise UserError("empty CSV.", path=path, fix="Write a header name,x,y,z and one row per landmark.")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in ("name", "x", "y") if c not in header]
    if missing:
        raise UserError(f"CSV header lacks column(s) {', '.join(missing)} (found {', '.join(header)}).", path=path,
                        fix="Use the header name,x,y,z (LPS millimetres; z may be left out for 2D).")
    col = {h: i for i, h in enumerate(header)}
    names, pts, conf, flags = [], [], [], []
    for lineno, row in enumerate(rows[1:], start=2):
        cell = lambda c: row[col[c]].strip() if c in col and col[c] < len(row) else ""  # noqa: E731
        if not cell("name"):
            raise UserError(f"line {lineno}: empty name.", path=path)
        try:
            xyz = [float(cell(c)) if cell(c) else (0.0 if c == "z" and "z" not in col else math.nan)
                   for c in ("x", "y", "z")]
            conf.append(float(cell("confidence")) if cell("confidence") else math.nan)
        except ValueError:
            raise UserError(f"line {lineno}: a coordinate or confidence is not a number.", path=path) from None
        if "z" not in col and math.isnan(xyz[0]):
            xyz[2] = math.nan
        names.append(cell("name"))
        pts.append(xyz)
        flags.append(cell("flag"))
    return _build(path, names, pts, conf if "confidence" in col else None, flags if "flag" in col else None, ras=False)


def _build(path, names, pts, conf, flags, ras: bool) -> Landmarks:
    dup = _duplicates(names)
    if dup:
        raise UserError(f"duplicated landmark name(s): {', '.join(dup)}.", path=path,
                        fix="Give every landmark a unique label.")
    points = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
    if np.isinf(points).any():
        bad = names[int(np.nonzero(np.isinf(points).any(axis=1))[0][0])]
        raise UserError(f"landmark {bad!r} has an infinite coordinate.", path=path,
                        fix="Give its position in millimetres, or leave its cells empty if it is not placed.")
    if ras:  # RAS -> LPS: flip the two in-plane axes
        points[:, :2] *= -1.0
    if conf is not None and all(math.isnan(c) for c in conf):
        conf = None
    if flags is not None and not any(flags):
        flags = None
    return Landmarks(names, points, None if conf is None else np.asarray(conf), flags)


def _parse_description(text: str) -> tuple[float, str]:
    """'confidence=0.87; flag=low_confidence' -> (0.87, 'low_confidence'); else (nan, '')."""
    conf, flag = math.nan, ""
    m = re.search(r"confidence\s*=\s*([-+0-9.eE]+|nan)", text)
    if m:
        try:
            conf = float(m.group(1))
        except ValueError:
            pass
    m = re.search(r"flag\s*=\s*([A-Za-z0-9_]+)", text)
    if m:
        flag = m.group(1)
    return conf, flag


def _text(v) -> str | None:
    """``v`` if it is a string (so it can be looked up in a set), else None."""
    return v if isinstance(v, str) else None


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _duplicates(names: Sequence[str]) -> list[str]:
    seen, dup = set(), []
    for n in names:
        if n in seen and n not in dup:
            dup.append(n)
        seen.add(n)
    return dup


# ----------------------------------------------------------------------------- writing


def write_mrk_json(landmarks: Landmarks, path: str | Path, coordinate_system: str = "LPS",
                   overwrite: bool = False) -> Path:
    """Write a Slicer 5 markups point list (validates against markups-schema-v1.0.3).

    Missing landmarks are written with ``positionStatus: "undefined"`` and no position
    (Slicer shows them as unplaced rows the user can place). Confidence and flags go
    into ``description``, and flagged points are ``selected: false`` (see module doc).
    """
    if coordinate_system not in ("LPS", "RAS"):
        raise ValueError("coordinate_system must be 'LPS' or 'RAS'")
    sign = np.array([-1.0, -1.0, 1.0]) if coordinate_system == "RAS" else np.ones(3)
    # The identity orientation of Slicer's RAS world, expressed in the file's frame.
    orientation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    if coordinate_system == "LPS":
        orientation = [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0]
    missing = landmarks.is_missing()
    cps = []
    for i, name in enumerate(landmarks.names):
        flag = landmarks.flags[i] if landmarks.flags else ""
        cp = {"id": str(i + 1), "label": name, "description": _description(landmarks, i),
              "associatedNodeID": ""}
        if not missing[i]:
            cp["position"] = [float(v) for v in landmarks.points[i] * sign]
        cp.update({"orientation": orientation, "selected": not flag, "locked": False, "visibility": True,
                   "positionStatus": "undefined" if missing[i] else "defined"})
        cps.append(cp)
    doc = {"@schema": MARKUPS_SCHEMA, "markups": [{
        "type": "Fiducial", "coordinateSystem": coordinate_system, "coordinateUnits": "mm",
        "locked": False, "fixedNumberOfControlPoints": False, "labelFormat": "%N-%d",
        "lastUsedControlPointNumber": len(cps), "controlPoints": cps, "measurements": [],
    }]}
    return _atomic_write(path, json.dumps(doc, indent=4) + "\n", overwrite)


def write_fcsv(landmarks: Landmarks, path: str | Path, overwrite: bool = False) -> Path:
    """Write a legacy Slicer fiducial list (LPS, format 4.11).

    The format cannot mark a point as unplaced, so missing landmarks are left out
    (read back with ``names=`` to get their NaN rows); confidence and flags go into
    the ``desc`` column as in :func:`write_mrk_json`.
    """
    buf = io.StringIO()
    buf.write("# Markups fiducial file version = 4.11\n# CoordinateSystem = LPS\n")
    buf.write(f"# columns = {FCSV_COLUMNS}\n")
    writer = csv.writer(buf, lineterminator="\n")
    missing = landmarks.is_missing()
    for i, name in enumerate(landmarks.names):
        if missing[i]:
            continue
        flag = landmarks.flags[i] if landmarks.flags else ""
        x, y, z = (repr(float(v)) for v in landmarks.points[i])
        writer.writerow([i + 1, x, y, z, 0, 0, 0, 1, 1, 0 if flag else 1, 0, name, _description(landmarks, i), ""])
    return _atomic_write(path, buf.getvalue(), overwrite)


def write_csv(landmarks: Landmarks, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``name,x,y,z,confidence,flag`` (LPS mm; empty cells for missing / unknown)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", "x", "y", "z", "confidence", "flag"])
    missing = landmarks.is_missing()
    for i, name in enumerate(landmarks.names):
        xyz = [""] * 3 if missing[i] else [repr(float(v)) for v in landmarks.points[i]]
        c = landmarks.confidence[i] if landmarks.confidence is not None else math.nan
        flag = landmarks.flags[i] if landmarks.flags else ""
        writer.writerow([name, *xyz, "" if math.isnan(c) else f"{c:.4f}", flag])
    return _atomic_write(path, buf.getvalue(), overwrite)


def _description(landmarks: Landmarks, i: int) -> str:
    parts = []
    if landmarks.confidence is not None and not math.isnan(landmarks.confidence[i]):
        parts.append(f"confidence={landmarks.confidence[i]:.3f}")
    if landmarks.flags and landmarks.flags[i]:
        parts.append(f"flag={landmarks.flags[i]}")
    return "; ".join(parts)


def _atomic_write(path: str | Path, text: str, overwrite: bool) -> Path:
    """Write ``text`` under a temporary name beside ``path``, then move it in place.

    Without ``overwrite`` the final step is a hard link, which fails if ``path``
    appeared meanwhile, so an existing file (a user's annotation) is never replaced.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError("file exists; not overwriting it.", path=path,
                        fix="Choose another output path or pass overwrite=True.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:  # a full disk: name the file being written
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary shared files
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise UserError("file exists; not overwriting it.", path=path,
                                fix="Choose another output path or pass overwrite=True.") from None
            except OSError:  # file systems without hard links
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
