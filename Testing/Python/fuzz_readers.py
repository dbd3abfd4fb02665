"""Fuzz the annotation readers: .mrk.json, .fcsv, CSV and .seg.nrrd (header, and voxels onto an image).

A seeded mutator (no hypothesis needed) takes valid files as Slicer writes them and
damages them: byte flips, truncations, inserted and deleted bytes, repeated chunks,
and, for JSON, structural edits (a value replaced by another type, a key removed or
added, a list emptied or nested). Each mutant is read; anything other than a return
value or the project's UserError is a crash.

    .venv/bin/python Testing/Python/fuzz_readers.py --count 5000 [--seed 0] [--out results.json]

test_fuzz_readers.py runs a few hundred of the same mutants in CI.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from DiffusionSegLib.errors import UserError  # noqa: E402
from DiffusionSegLib.labels import class_names_from, is_seg_nrrd, load_segmentation, write_seg_nrrd  # noqa: E402
from DiffusionSegLib.landmarks import Landmarks, read_landmarks, write_csv, write_fcsv, write_mrk_json  # noqa: E402

KINDS = ("mrk.json", "fcsv", "csv", "seg.nrrd")
_VALUES = [None, True, 0, -1, 1e308, float("nan"), "", "x", "LPS", "RAS", "mm", [], [1, 2], [1, 2, 3, 4],
           {}, {"a": 1}, [[1, 2, 3]], "defined", "undefined", 3.5, ["mm"], [None, None, None]]


def seeds(folder: Path) -> dict[str, bytes]:
    """One valid file of each kind, written by the package's own writers."""
    lm = Landmarks(["nasion", "sella", "gonion"], np.array([[1.5, -2.0, 3.0], [np.nan] * 3, [10.0, 20.0, 0.0]]),
                   confidence=np.array([0.9, np.nan, 0.2]), flags=["", "", "low_confidence"])
    write_mrk_json(lm, folder / "a.mrk.json")
    write_fcsv(lm, folder / "a.fcsv")
    write_csv(lm, folder / "a.csv")
    array = np.zeros((4, 5, 5), np.uint8)
    array[1, 1:4, 1:4], array[2, 2:4, 1:3] = 1, 2
    labels = sitk.GetImageFromArray(array)
    labels.SetSpacing((0.5, 0.5, 2.0))
    write_seg_nrrd(labels, folder / "a.seg.nrrd", ["liver", "spleen"], [[1, 0, 0], [0, 1, 0]])
    _REFERENCE[:] = [sitk.Cast(labels, sitk.sitkFloat32)]
    return {kind: (folder / f"a.{kind}").read_bytes() for kind in KINDS}


def _value(rng: random.Random):
    return copy.deepcopy(rng.choice(_VALUES))


def _mutate_json(doc, rng: random.Random):
    """One structural edit somewhere in a JSON document (in place where possible); returns the document."""
    nodes = []

    def walk(node):
        if isinstance(node, (dict, list)):
            nodes.append(node)
            for child in (node.values() if isinstance(node, dict) else node):
                walk(child)

    walk(doc)
    if not nodes:
        return _value(rng)
    node = rng.choice(nodes)
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    op = rng.randrange(4)
    if op == 0 and keys:
        node[rng.choice(keys)] = _value(rng)
    elif op == 1 and keys:
        del node[rng.choice(keys)]
    elif op == 2:
        if isinstance(node, dict):
            node[rng.choice(["position", "label", "coordinateSystem", "controlPoints", "type", "zz"])] = \
                _value(rng)
        else:
            node.append(_value(rng))
    elif keys:
        key = rng.choice(keys)
        node[key] = [node[key]] if rng.random() < 0.5 else {"x": node[key]}
    return doc


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            data = data[:pos]
        elif op == 2:
            data[pos:pos] = bytes(rng.choice([b"\x00", b"\xff", b",", b"\n", b"#", b"nan", b"-", b"e9", b"\"",
                                              b"{", b"]", b"\xc3", b"Segment0_", b":=", b" "]))
        elif op == 3 and data:
            del data[pos:pos + rng.randint(1, 16)]
        elif op == 4 and data:
            chunk = data[pos:pos + rng.randint(1, 64)]
            data[pos:pos] = chunk * rng.randint(1, 4)
        elif op == 5 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
    return bytes(data)


def _mutate_nrrd_header(data: bytes, rng: random.Random) -> bytes:
    """Edit one line of the text header of a .seg.nrrd (the part its reader parses)."""
    end = data.find(b"\n\n")
    if end < 0:
        return _mutate_bytes(data, rng)
    lines = data[:end].split(b"\n")
    i = rng.randrange(1, len(lines))
    key, _, value = lines[i].partition(b":")
    choice = rng.randrange(5)
    if choice == 0:
        lines[i] = key + b":" + rng.choice([b"", b"=", b" nan", b" -1", b" 0 0 0", b" (1,2)", b" abc", b" 1e999",
                                            b" (nan,0,0) (0,1,0) (0,0,1)", b" 0^0^0^1", b"~", b"=abc"])
    elif choice == 1:
        del lines[i]
    elif choice == 2:
        lines.insert(i, rng.choice([b"Segment9_LabelValue:=3", b"Segment0_Layer:=7", b"Segment0_Color:=x y z",
                                    b"Segment0_Extent:=0 1", b"dimension: 5", b"sizes: 0 0 0", b"type: complex",
                                    b"Segment0_Name:=", b"encoding: bzip2", b"kinds: list domain domain domain"]))
    elif choice == 3:
        lines[i] = _mutate_bytes(lines[i], rng)
    else:
        lines[i] = key + b":" + _mutate_bytes(value, rng)
    return b"\n".join(lines) + data[end:]


def mutant(kind: str, seed: bytes, rng: random.Random) -> bytes:
    if kind == "mrk.json" and rng.random() < 0.6:
        doc = json.loads(seed)
        for _ in range(rng.randint(1, 3)):
            doc = _mutate_json(doc, rng)
        return json.dumps(doc).encode()
    if kind == "seg.nrrd" and rng.random() < 0.7:
        return _mutate_nrrd_header(seed, rng)
    return _mutate_bytes(seed, rng)


_REFERENCE: list[sitk.Image] = []  # the image the seed segmentation lies on


def read(kind: str, path: Path) -> None:
    if kind == "seg.nrrd":
        is_seg_nrrd(path)
        class_names_from(path)
        load_segmentation(path, None, _REFERENCE[0])
        load_segmentation(path, ["liver", "spleen"], _REFERENCE[0], allow_empty=True)
    else:
        read_landmarks(path)
        read_landmarks(path, names=["sella", "nasion", "other"])


def run(count: int, seed: int = 0, folder: Path | None = None) -> dict:
    """``count`` mutants spread over the four kinds; returns the tally and the first crashes."""
    rng = random.Random(seed)
    warnings.simplefilter("ignore")  # pynrrd warns on some damaged numbers before its error
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(folder or tmp)
        originals = seeds(folder)
        tally = {kind: {"inputs": 0, "user_errors": 0, "read": 0, "crashes": 0} for kind in KINDS}
        crashes = []
        for i in range(count):
            kind = KINDS[i % len(KINDS)]
            data = mutant(kind, originals[kind], rng)
            path = folder / f"m{i}.{kind}"
            path.write_bytes(data)
            tally[kind]["inputs"] += 1
            try:
                read(kind, path)
                tally[kind]["read"] += 1
            except UserError:
                tally[kind]["user_errors"] += 1
            except Exception as exc:  # noqa: BLE001 (the point: anything else is a crash)
                tally[kind]["crashes"] += 1
                if len(crashes) < 20:
                    crashes.append({"kind": kind, "index": i, "error": f"{type(exc).__name__}: {exc}"[:300],
                                    "where": traceback.format_exc().strip().splitlines()[-3][:200],
                                    "input": data[:400].decode("latin-1")})
            path.unlink()
    total = {k: sum(t[k] for t in tally.values()) for k in ("inputs", "user_errors", "read", "crashes")}
    return {"seed": seed, "total": total, "by_kind": tally, "crashes": crashes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results JSON here")
    args = parser.parse_args()
    t0 = time.monotonic()
    result = run(args.count, args.seed)
    result["seconds"] = round(time.monotonic() - t0, 1)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(json.dumps({"total": result["total"], "seconds": result["seconds"]}))
    for crash in result["crashes"][:10]:
        print(crash["kind"], crash["error"], "|", crash["where"], file=sys.stderr)
    return 1 if result["total"]["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
