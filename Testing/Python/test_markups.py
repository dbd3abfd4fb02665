"""Landmark files: .mrk.json, .fcsv and CSV round trips, RAS/LPS, schema, real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from DiffusionSegLib.errors import UserError
from DiffusionSegLib.landmarks import LOW_CONFIDENCE, Landmarks, read_landmarks, write_csv, write_fcsv, write_mrk_json


def _shared() -> Path:
    env = os.environ.get("DIFFUSIONSEG_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared"


SCHEMA = _shared() / "formats" / "markups-schema-v1.0.3.json"
DATA = Path(os.environ["DIFFUSIONSEG_SHARED_DATA"]) if os.environ.get("DIFFUSIONSEG_SHARED_DATA") else _shared() / "data"


def _validate(path: Path):
    """Validate a written .mrk.json against Slicer's schema (skip if it is not available)."""
    if not SCHEMA.is_file():
        pytest.skip(f"markups schema not found at {SCHEMA}")
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(path.read_text()), json.loads(SCHEMA.read_text()))


@pytest.fixture
def sample() -> Landmarks:
    pts = np.array([[10.5, -20.25, 3.0], [np.nan] * 3, [-1.0, 2.0, 0.0]])
    return Landmarks(["apex", "missing_one", "base"], pts, confidence=np.array([0.87, np.nan, 0.2]),
                     flags=["", "", LOW_CONFIDENCE])


def _same(a: Landmarks, b: Landmarks):
    assert a.names == b.names
    np.testing.assert_allclose(a.points, b.points, atol=1e-9, equal_nan=True)


def test_landmarks_lookup_reorder_missing(sample):
    assert sample.index("base") == 2
    np.testing.assert_array_equal(sample.get("apex"), [10.5, -20.25, 3.0])
    assert sample.is_missing().tolist() == [False, True, False]
    r = sample.reordered(["base", "new", "apex"])
    assert r.names == ["base", "new", "apex"] and r.is_missing().tolist() == [False, True, False]
    assert r.flags == [LOW_CONFIDENCE, "", ""] and r.confidence[2] == pytest.approx(0.87)
    with pytest.raises(KeyError):
        sample.index("nope")
    with pytest.raises(ValueError):
        Landmarks(["a", "a"], np.zeros((2, 3)))
    two_d = Landmarks.from_dict({"a": (1.0, 2.0)})
    np.testing.assert_array_equal(two_d.points, [[1.0, 2.0, 0.0]])


@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_mrk_json_round_trip_and_schema(tmp_path, sample, system):
    path = write_mrk_json(sample, tmp_path / "a.mrk.json", coordinate_system=system)
    _validate(path)
    back = read_landmarks(path)
    _same(sample, back)
    assert back.flags == sample.flags
    np.testing.assert_allclose(back.confidence, [0.87, np.nan, 0.2], atol=1e-3)
    cps = json.loads(path.read_text())["markups"][0]["controlPoints"]
    assert [c["label"] for c in cps] == sample.names  # labels are never decorated
    assert cps[1]["positionStatus"] == "undefined" and "position" not in cps[1]
    assert cps[2]["positionStatus"] == "defined" and cps[2]["selected"] is False  # low confidence
    assert "confidence=0.200" in cps[2]["description"] and "low_confidence" in cps[2]["description"]
    assert cps[0]["selected"] is True and not any(c["locked"] for c in cps)


def test_ras_and_lps_files_give_same_lps_points(tmp_path, sample):
    a = read_landmarks(write_mrk_json(sample, tmp_path / "lps.mrk.json", coordinate_system="LPS"))
    doc = json.loads((tmp_path / "lps.mrk.json").read_text())
    assert doc["markups"][0]["controlPoints"][0]["position"] == [10.5, -20.25, 3.0]
    b = read_landmarks(write_mrk_json(sample, tmp_path / "ras.mrk.json", coordinate_system="RAS"))
    doc = json.loads((tmp_path / "ras.mrk.json").read_text())
    assert doc["markups"][0]["controlPoints"][0]["position"] == [-10.5, 20.25, 3.0]
    _same(a, b)
    # legacy .fcsv: 0 = RAS, 1 = LPS, no header = RAS
    row = "vtkMRMLMarkupsFiducialNode_0,{x},{y},3,0,0,0,1,1,1,0,apex,,\n"
    for header, x, y in [("0", -10.5, 20.25), ("1", 10.5, -20.25), ("RAS", -10.5, 20.25), ("LPS", 10.5, -20.25),
                         (None, -10.5, 20.25)]:
        text = ("" if header is None else f"# Markups fiducial file version = 4.6\n# CoordinateSystem = {header}\n")
        (tmp_path / "f.fcsv").write_text(text + row.format(x=x, y=y))
        np.testing.assert_allclose(read_landmarks(tmp_path / "f.fcsv").get("apex"), [10.5, -20.25, 3.0])


def test_fcsv_and_csv_round_trip(tmp_path, sample):
    f = read_landmarks(write_fcsv(sample, tmp_path / "a.fcsv"), names=sample.names)
    _same(sample, f)
    assert f.flags is None  # fcsv desc is only written, flags come back from .mrk.json / CSV
    c = read_landmarks(write_csv(sample, tmp_path / "a.csv"))
    _same(sample, c)
    assert c.flags == sample.flags
    np.testing.assert_allclose(c.confidence, [0.87, np.nan, 0.2], atol=1e-4)
    (tmp_path / "b.csv").write_text("name,x,y\nA,1.5,2\nB,,\n")  # 2D CSV: z optional
    b = read_landmarks(tmp_path / "b.csv")
    np.testing.assert_allclose(b.points, [[1.5, 2.0, 0.0], [np.nan] * 3])


def test_writes_never_overwrite(tmp_path, sample):
    for write, name in [(write_mrk_json, "a.mrk.json"), (write_fcsv, "a.fcsv"), (write_csv, "a.csv")]:
        path = write(sample, tmp_path / name)
        before = path.read_text()
        with pytest.raises(UserError, match="exists"):
            write(sample.reordered(["apex"]), path)
        assert path.read_text() == before
        write(sample.reordered(["apex"]), path, overwrite=True)
        assert read_landmarks(path).names == ["apex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.fcsv", "a.mrk.json"]  # no temp files left


def test_missing_landmarks_by_status(tmp_path):
    doc = {"@schema": "x", "markups": [
        {"type": "Line", "controlPoints": [{"label": "l", "position": [0, 0, 0]}]},
        {"type": "Fiducial", "coordinateSystem": "RAS", "controlPoints": [
            {"label": "a", "position": [1, 2, 3]},  # no positionStatus: defined
            {"label": "b", "position": "", "positionStatus": "undefined"},
            {"label": "c", "positionStatus": "missing"},
        ]}]}
    (tmp_path / "m.mrk.json").write_text(json.dumps(doc))
    lm = read_landmarks(tmp_path / "m.mrk.json", names=["c", "a", "z"])
    assert lm.is_missing().tolist() == [True, False, True]
    np.testing.assert_array_equal(lm.get("a"), [-1.0, -2.0, 3.0])


@pytest.mark.parametrize("name,text,match", [
    ("bad.mrk.json", "{not json", "not valid JSON"),
    ("nolist.mrk.json", '{"a": 1}', "markups"),
    ("line.mrk.json", '{"markups": [{"type": "Line"}]}', "no point list"),
    ("pos.mrk.json", '{"markups": [{"type": "Fiducial", "controlPoints": [{"label": "a", "position": [1, 2]}]}]}',
     "position"),
    ("nolabel.mrk.json", '{"markups": [{"type": "Fiducial", "controlPoints": [{"position": [1, 2, 3]}]}]}', "label"),
    ("sys.mrk.json", '{"markups": [{"type": "Fiducial", "coordinateSystem": "XYZ"}]}', "coordinateSystem"),
    ("dup.mrk.json", '{"markups": [{"type": "Fiducial", "controlPoints": [{"label": "a", "position": [1, 2, 3]},'
                     '{"label": "a", "position": [1, 2, 3]}]}]}', "duplicated"),
    ("short.fcsv", "# CoordinateSystem = LPS\n1,2,3\n", "columns"),
    ("nan.fcsv", "# CoordinateSystem = LPS\nid,x,y,z,0,0,0,1,1,1,0,a,,\n", "not numbers"),
    ("dup.fcsv", "1,1,2,3,0,0,0,1,1,1,0,a,,\n2,1,2,3,0,0,0,1,1,1,0,a,,\n", "duplicated"),
    ("hdr.csv", "label,x,y\na,1,2\n", "name"),
    ("num.csv", "name,x,y,z\na,one,2,3\n", "not a number"),
    ("empty.csv", "", "empty"),
    ("dup.csv", "name,x,y\na,1,2\na,3,4\n", "duplicated"),
    ("points.txt", "a 1 2 3", "unknown landmark file type"),
])
def test_malformed_files_raise_user_error(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UserError, match=match) as err:
        read_landmarks(path)
    assert err.value.path == str(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_landmarks(tmp_path / "nope.mrk.json")


def test_real_isbi_markups(tmp_path):
    folder = DATA / "isbi-ceph" / "landmarks"
    files = sorted(folder.glob("*.mrk.json"))[:1] if folder.is_dir() else []
    if not files:
        pytest.skip(f"ISBI cephalometric data not found under {DATA}")
    lm = read_landmarks(files[0])
    assert len(lm) == 19 and lm.names[0] == "sella" and not lm.is_missing().any()
    assert np.all(lm.points[:, 2] == 0.0)
    raw = json.loads(files[0].read_text())["markups"][0]["controlPoints"][0]["position"]
    np.testing.assert_allclose(lm.points[0], raw)  # the file is LPS: no sign change
    csv_file = DATA / "isbi-ceph" / "landmarks_mm.csv"
    if csv_file.is_file():  # the same numbers in the wide CSV
        import csv
        row = next(r for r in csv.DictReader(csv_file.open()) if r["image"] == files[0].name.split(".")[0])
        np.testing.assert_allclose(lm.get("sella")[:2], [float(row["sella_x"]), float(row["sella_y"])], atol=1e-6)
    _validate(write_mrk_json(lm, tmp_path / "copy.mrk.json"))
    _same(lm, read_landmarks(tmp_path / "copy.mrk.json"))
