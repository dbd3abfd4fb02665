"""A corpus of bad inputs, generated (no binaries are committed), run through the real CLI.

Every case builds a folder of inputs with one thing wrong (a truncated or empty file,
a wrong header field, NaN voxels, a label on another grid, a damaged markups file, an
edited model folder, an unwritable or full output disk...), runs ``diffusionseg`` on it
in-process (``main(argv)``) and checks that the run ends cleanly:

- exit code 2;
- exactly one line on stderr, ``error: <the file>: ... Fix: ...``, naming the file at
  fault, and no traceback;
- nothing written: the output folder does not exist afterwards;
- no input file changed (SHA-256 of every input before and after).

    .venv/bin/python Testing/Python/bad_inputs.py [--out results.json]

prints one row per case and the totals; test_bad_inputs.py runs every case in CI.
Permission cases: as root a read-only folder is still writable, so there (and always
for the full disk) the failure is injected as the OSError the operating system raises.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gzip
import hashlib
import io
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from DiffusionSegLib.cli.main import main  # noqa: E402
from DiffusionSegLib.labels import write_seg_nrrd  # noqa: E402
from DiffusionSegLib.landmarks import Landmarks, write_mrk_json  # noqa: E402
from DiffusionSegLib.runlock import lock_path  # noqa: E402

SIZE = 32
RUNTIME = ["--device", "cpu", "--progress", "none"]


# ----------------------------------------------------------------------------- good inputs


def phantom(seed: int, dims: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(image, label) numpy arrays: a bright disc (label 1) and a square (label 2) on noise."""
    rng = np.random.default_rng(seed)
    shape = (SIZE, SIZE) if dims == 2 else (8, 16, 16)
    grid = np.indices(shape)
    centre = [s // 2 + rng.integers(-2, 3) for s in shape]
    disc = sum((g - c) ** 2 for g, c in zip(grid, centre)) < (shape[-1] // 5) ** 2
    square = np.zeros(shape, bool)
    square[..., 2:8, 2:8] = True
    label = np.where(disc, 1, np.where(square, 2, 0)).astype(np.uint8)
    image = (label.astype(np.float32) * 300 + rng.normal(0, 20, shape) + 100).astype(np.float32)
    return image, label


def write(array: np.ndarray, path: Path, spacing=None, compress: bool = True) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing or [1.0] * image.GetDimension())
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), compress)
    return path


LANDMARKS = ["apex", "corner"]


def landmarks_of(seed: int) -> Landmarks:
    rng = np.random.default_rng(seed)
    return Landmarks(LANDMARKS, np.array([[10.0 + rng.integers(0, 4), 12.0, 0.0], [4.0, 5.0 + rng.integers(0, 3), 0.0]]))


def good_folder(root: Path, n: int = 3, dims: int = 2, suffix: str = ".nrrd") -> Path:
    """``root/images/case_i<suffix>``, ``root/labels/case_i.nrrd``, ``root/landmarks/case_i.mrk.json``."""
    for i in range(n):
        image, label = phantom(i, dims)
        write(image, root / "images" / f"case_{i}{suffix}")
        write(label, root / "labels" / f"case_{i}.nrrd")
        write_mrk_json(landmarks_of(i), root / "landmarks" / f"case_{i}.mrk.json")
    return root


@dataclass
class Base:
    """Models every model-reading case starts from (made once)."""

    pretrained: Path
    segmentation: Path
    landmarks: Path


def make_base(root: Path) -> Base:
    data = good_folder(root / "data", n=3)
    pre, seg, lmk = root / "pretrained", root / "seg", root / "lmk"
    common = ["--iterations", "2", "--batch-size", "2", "--checkpoint-every", "2", *RUNTIME]
    runs = [["pretrain", "--images", data / "images", "--out", pre, "--image-size", "32", "32", *common],
            ["finetune", "--task", "segmentation", "--pretrained", pre, "--images", data / "images",
             "--labels", data / "labels", "--classes", "disc,square", "--out", seg, *common],
            ["finetune", "--task", "landmarks", "--pretrained", pre, "--images", data / "images",
             "--landmarks", data / "landmarks", "--out", lmk, *common]]
    for argv in runs:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            code = main([str(a) for a in argv])
        if code != 0:
            raise RuntimeError(f"making the base models failed: {err.getvalue()}")
    return Base(pre, seg, lmk)


# ----------------------------------------------------------------------------- damage


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def edit_nrrd_header(path: Path, edit: Callable[[list[str]], list[str]]) -> Path:
    data = path.read_bytes()
    end = data.index(b"\n\n")
    lines = data[:end].decode("latin-1").split("\n")
    path.write_bytes("\n".join(edit(lines)).encode("latin-1") + data[end:])
    return path


def set_field(key: str, value: str):
    def edit(lines):
        return [f"{key}: {value}" if line.startswith(f"{key}:") else line for line in lines]
    return edit


def edit_json(path: Path, edit: Callable[[dict], None]) -> Path:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    return path


def copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def dicom(path: Path, array: np.ndarray) -> Path:
    image = sitk.GetImageFromArray(array.astype(np.int16)[None])
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` cannot be written: by permissions, or (as root, who ignores them) by an injected EACCES."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    prefix = str(folder.resolve())

    def guard(real):
        def call(path, *args, **kwargs):
            if isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)).startswith(prefix):
                mode = args[0] if args else kwargs.get("mode", "r")
                if real is not open or any(c in str(mode) for c in "wax+"):
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return real(path, *args, **kwargs)
        return call

    with mock.patch("os.open", guard(os.open)), mock.patch("os.mkdir", guard(os.mkdir)), \
            mock.patch("builtins.open", guard(open)):
        yield


def disk_full(target: str):
    """Patch ``target`` (a writer) to fail as a full disk does."""
    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return mock.patch(target, fail)


def fsync_disk_full(name_part: str):
    """os.fsync fails with ENOSPC for files whose name holds ``name_part`` (as a full disk makes it)."""
    real = os.fsync

    def fsync(fd):
        if name_part in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)
    return mock.patch("os.fsync", fsync)


def safetensors_disk_full():
    from safetensors import SafetensorError

    def fail(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    return mock.patch("DiffusionSegLib.training.checkpoint.save_file", fail)


# ----------------------------------------------------------------------------- cases


@dataclass
class Setup:
    argv: list
    blamed: Path            # the file (or folder) the error line must name
    out: Path               # must not exist afterwards
    inject: Callable[[], contextlib.AbstractContextManager] | None = None


@dataclass
class BadCase:
    name: str
    reader: str             # imageio, labels, landmarks, checkpoint, output, runlock
    command: str
    build: Callable[[Path, Base], Setup]
    inputs: list[str] = field(default_factory=lambda: ["data", "model"])


def _pretrain(root: Path, blamed: Path, *extra, inject=None) -> Setup:
    out = root / "out"
    return Setup(["pretrain", "--images", root / "data" / "images", "--out", out, "--image-size", "32", "32",
                  "--iterations", "1", "--batch-size", "2", *extra, *RUNTIME], blamed, out, inject)


def pretrain_with(damage: Callable[[Path], Path], suffix: str = ".nrrd", dims: int = 2, name: str = "case_1",
                  **kw):
    def build(root: Path, base: Base) -> Setup:
        good_folder(root / "data", dims=dims)
        image, _ = phantom(7, dims)
        path = write(image, root / "data" / "images" / f"{name}{suffix}", compress=suffix != ".nrrd-raw")
        return _pretrain(root, damage(path), **kw)
    return build


def pretrain_on(make: Callable[[Path], Path]):
    def build(root: Path, base: Base) -> Setup:
        good_folder(root / "data")
        return _pretrain(root, make(root / "data" / "images"))
    return build


def _finetune_seg(root: Path, base: Base, blamed: Path, *extra) -> Setup:
    out = root / "out"
    return Setup(["finetune", "--task", "segmentation", "--pretrained", base.pretrained, "--images",
                  root / "data" / "images", "--labels", root / "data" / "labels", "--classes", "disc,square",
                  "--out", out, "--iterations", "1", "--batch-size", "2", *extra, *RUNTIME], blamed, out)


def seg_label(make: Callable[[Path, np.ndarray], Path], *extra):
    """Finetune (segmentation) with case_1's label replaced by ``make(labels_folder, good_label)``."""
    def build(root: Path, base: Base) -> Setup:
        good_folder(root / "data")
        (root / "data" / "labels" / "case_1.nrrd").unlink()
        _, label = phantom(1)
        return _finetune_seg(root, base, make(root / "data" / "labels", label), *extra)
    return build


def seg_image(damage: Callable[[Path], Path]):
    def build(root: Path, base: Base) -> Setup:
        good_folder(root / "data")
        return _finetune_seg(root, base, damage(root / "data" / "images" / "case_2.nrrd"))
    return build


def _finetune_lmk(root: Path, base: Base, blamed: Path, *extra) -> Setup:
    out = root / "out"
    return Setup(["finetune", "--task", "landmarks", "--pretrained", base.pretrained, "--images",
                  root / "data" / "images", "--landmarks", root / "data" / "landmarks", "--out", out,
                  "--iterations", "1", "--batch-size", "2", *extra, *RUNTIME], blamed, out)


def markups(damage: Callable[[Path], Path], *extra):
    def build(root: Path, base: Base) -> Setup:
        good_folder(root / "data")
        return _finetune_lmk(root, base, damage(root / "data" / "landmarks" / "case_1.mrk.json"), *extra)
    return build


def replace_markups(suffix: str, text: str):
    def build(root: Path, base: Base) -> Setup:
        good_folder(root / "data")
        (root / "data" / "landmarks" / "case_1.mrk.json").unlink()
        path = root / "data" / "landmarks" / f"case_1{suffix}"
        path.write_text(text)
        return _finetune_lmk(root, base, path)
    return build


def _predict(root: Path, model: Path, blamed: Path, inject=None) -> Setup:
    out = root / "out"
    return Setup(["predict", "--model", model, "--images", root / "data" / "images", "--out", out, *RUNTIME],
                 blamed, out, inject)


def predict_model(damage: Callable[[Path], Path], kind: str = "segmentation"):
    def build(root: Path, base: Base) -> Setup:
        good_folder(root / "data", n=1)
        model = copy_model(base.segmentation if kind == "segmentation" else base.landmarks, root / "model")
        return _predict(root, model, damage(model))
    return build


def predict_image(damage: Callable[[Path], Path]):
    def build(root: Path, base: Base) -> Setup:
        good_folder(root / "data", n=2)
        model = copy_model(base.segmentation, root / "model")
        return _predict(root, model, damage(root / "data" / "images" / "case_1.nrrd"))
    return build


def _nan_image(path: Path, fill=np.nan, where=slice(None)) -> Path:
    image, _ = phantom(3)
    image[where] = fill
    path.unlink(missing_ok=True)
    return write(image, path.with_name(path.name.replace(".nrrd", "") + ".nrrd"))


def _seg_nrrd(folder: Path, label: np.ndarray, names=("disc", "square"), spacing=(1.0, 1.0)) -> Path:
    image = sitk.GetImageFromArray(label)
    image.SetSpacing(spacing)
    return write_seg_nrrd(image, folder / "case_1.seg.nrrd", list(names), [[1, 0, 0], [0, 1, 0]])


def _pickle_weights(model: Path) -> Path:
    import pickle

    path = model / "model.safetensors"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    return path


def _wrong_shape_weights(model: Path) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    path = model / "model.safetensors"
    weights = load_file(str(path))
    name = next(k for k, v in weights.items() if v.ndim == 4)
    weights[name] = torch.zeros(weights[name].shape[0] + 1, *weights[name].shape[1:])
    save_file(weights, str(path))
    return path


def _network_edited(model: Path) -> Path:
    def edit(doc):
        doc["network"]["channels"] = [c * 2 for c in doc["network"]["channels"]]
    edit_json(model / "config.json", edit)
    return model / "model.safetensors"


def _lock_held(root: Path, base: Base) -> Setup:
    setup = pretrain_with(lambda p: p)(root, base)
    lock = lock_path(setup.out)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "started": "now",
                                "command": "diffusionseg pretrain"}))
    setup.blamed = setup.out
    return setup


def _mixed_dims(images: Path) -> Path:
    image, _ = phantom(5, dims=3)
    return write(image, images / "case_9.nrrd")


def _four_d(images: Path) -> Path:
    image = sitk.JoinSeries([sitk.GetImageFromArray(phantom(i, 3)[0]) for i in range(2)])
    path = images / "case_9.nrrd"
    sitk.WriteImage(image, str(path), True)
    return path


def _float_vectors(images: Path) -> Path:
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((SIZE, SIZE, 3)).astype(np.float32), isVector=True)
    path = images / "case_9.nrrd"
    sitk.WriteImage(image, str(path), True)
    return path


def _rgba_label(folder: Path, label: np.ndarray) -> Path:
    rgba = np.stack([label * 80, label * 40, label * 10, np.full_like(label, 255)], -1).astype(np.uint8)
    path = folder / "case_1.png"
    sitk.WriteImage(sitk.GetImageFromArray(rgba, isVector=True), str(path))
    return path


def _garbage(path: Path) -> Path:
    path.write_bytes(os.urandom(3000))
    return path


def _gz_garbage(images: Path) -> Path:
    path = images / "case_9.nii.gz"
    path.write_bytes(gzip.compress(os.urandom(2000)))
    return path


def _overlap_and_empty(folder: Path, label: np.ndarray) -> Path:
    return _seg_nrrd(folder, np.zeros_like(label))


def _unknown_segment(folder: Path, label: np.ndarray) -> Path:
    return _seg_nrrd(folder, label, names=("disc", "kidney"))


def _write_label(folder: Path, label: np.ndarray, name: str = "case_1.nrrd", **kw) -> Path:
    return write(label, folder / name, **kw)


def _shifted_origin(folder: Path, label: np.ndarray) -> Path:
    image = sitk.GetImageFromArray(label)
    image.SetOrigin((0.37, 0.0))
    path = folder / "case_1.nrrd"
    sitk.WriteImage(image, str(path), True)
    return path


def _mrk_edit(edit: Callable[[dict], None]):
    return lambda path: edit_json(path, edit)


def _cp(doc, i=0):
    return doc["markups"][0]["controlPoints"][i]


CASES: list[BadCase] = [
    # --- images, read by pretrain (verification up front) ---
    BadCase("truncated .nii.gz", "imageio", "pretrain", pretrain_with(truncate, ".nii.gz")),
    BadCase("truncated .nii", "imageio", "pretrain", pretrain_with(lambda p: truncate(p, 0.7), ".nii")),
    BadCase("zero-byte .nii.gz", "imageio", "pretrain", pretrain_with(empty, ".nii.gz")),
    BadCase("gzip of random bytes named .nii.gz", "imageio", "pretrain", pretrain_on(_gz_garbage)),
    BadCase("truncated .nrrd (gzip)", "imageio", "pretrain", pretrain_with(truncate, ".nrrd")),
    BadCase("truncated .nrrd (raw)", "imageio", "pretrain", (lambda root, base: _raw_nrrd_case(root, base))),
    BadCase("zero-byte .nrrd", "imageio", "pretrain", pretrain_with(empty, ".nrrd")),
    BadCase("truncated .mha", "imageio", "pretrain", pretrain_with(truncate, ".mha")),
    BadCase("truncated .png", "imageio", "pretrain", (lambda root, base: _picture_case(root, ".png", truncate))),
    BadCase("zero-byte .png", "imageio", "pretrain", (lambda root, base: _picture_case(root, ".png", empty))),
    BadCase("truncated .bmp", "imageio", "pretrain", (lambda root, base: _picture_case(root, ".bmp", truncate))),
    BadCase("truncated .jpg", "imageio", "pretrain", (lambda root, base: _picture_case(root, ".jpg", truncate))),
    BadCase("truncated .dcm", "imageio", "pretrain",
            pretrain_on(lambda images: truncate(dicom(images / "case_9.dcm", phantom(9)[0])))),
    BadCase("zero-byte .dcm", "imageio", "pretrain",
            pretrain_on(lambda images: empty(dicom(images / "case_9.dcm", phantom(9)[0])))),
    BadCase("random bytes named .nii.gz", "imageio", "pretrain", pretrain_with(_garbage, ".nii.gz")),
    BadCase("all-NaN image", "imageio", "pretrain", pretrain_on(lambda images: _nan_image(images / "case_9.nrrd"))),
    BadCase("Inf voxels", "imageio", "pretrain",
            pretrain_on(lambda images: _nan_image(images / "case_9.nrrd", np.inf, (slice(0, 3),)))),
    BadCase("some NaN voxels (.mha)", "imageio", "pretrain",
            pretrain_with(lambda p: _resave(p, lambda a: _set(a, (slice(0, 2),), np.nan)), ".mha")),
    BadCase("4D image", "imageio", "pretrain", pretrain_on(_four_d)),
    BadCase("float vector (3-component) image", "imageio", "pretrain", pretrain_on(_float_vectors)),
    BadCase("2D and 3D images mixed", "imageio", "pretrain", pretrain_on(_mixed_dims)),
    BadCase("NRRD header: unknown type", "imageio", "pretrain",
            pretrain_with(lambda p: edit_nrrd_header(p, set_field("type", "complex")))),
    BadCase("NRRD header: sizes larger than the data", "imageio", "pretrain",
            pretrain_with(lambda p: edit_nrrd_header(p, set_field("sizes", "32 64")))),
    BadCase("NRRD header: zero spacing", "imageio", "pretrain",
            pretrain_with(lambda p: edit_nrrd_header(p, set_field("space directions", "(0,0) (0,1)")))),
    BadCase("NRRD header: NaN direction", "imageio", "pretrain",
            pretrain_with(lambda p: edit_nrrd_header(p, set_field("space directions", "(nan,0) (0,1)")))),
    BadCase("NIfTI header: bad datatype", "imageio", "pretrain",
            pretrain_with(lambda p: _patch_bytes(p, 70, b"\x07\x00"), ".nii")),
    BadCase("--dims 3 on 2D images", "imageio", "pretrain",
            (lambda root, base: _with_args(pretrain_with(lambda p: p)(root, base), ["--dims", "3"],
                                           root / "data" / "images"))),
    # --- segmentation labels, read by finetune ---
    BadCase("label map on another spacing", "labels", "finetune",
            seg_label(lambda f, lab: _write_label(f, lab, spacing=[0.5, 0.5]))),
    BadCase("label map with another origin", "labels", "finetune", seg_label(_shifted_origin)),
    BadCase("label .png of another size", "labels", "finetune",
            seg_label(lambda f, lab: _write_label(f, lab[:20, :20], "case_1.png", compress=False))),
    BadCase("label value without a class", "labels", "finetune",
            seg_label(lambda f, lab: _write_label(f, lab * 3))),
    BadCase("label with fractional values", "labels", "finetune",
            seg_label(lambda f, lab: _write_label(f, lab.astype(np.float32) * 0.5))),
    BadCase("empty label map", "labels", "finetune", seg_label(lambda f, lab: _write_label(f, lab * 0))),
    BadCase(".seg.nrrd with empty segments", "labels", "finetune", seg_label(_overlap_and_empty)),
    BadCase(".seg.nrrd with a segment that is no class", "labels", "finetune", seg_label(_unknown_segment)),
    BadCase(".seg.nrrd on another spacing", "labels", "finetune",
            seg_label(lambda f, lab: _seg_nrrd(f, lab, spacing=(2.0, 2.0)))),
    BadCase("truncated .seg.nrrd", "labels", "finetune", seg_label(lambda f, lab: truncate(_seg_nrrd(f, lab), 0.3))),
    BadCase("zero-byte .seg.nrrd", "labels", "finetune", seg_label(lambda f, lab: empty(_seg_nrrd(f, lab)))),
    BadCase("RGBA colour label .png", "labels", "finetune", seg_label(_rgba_label)),
    BadCase("truncated image in finetune", "imageio", "finetune",
            seg_image(lambda p: truncate(p))),
    BadCase("NaN image in finetune", "imageio", "finetune", seg_image(lambda p: _nan_image(p))),
    # --- landmarks ---
    BadCase(".mrk.json without 'markups'", "landmarks", "finetune", markups(_mrk_edit(lambda d: d.pop("markups")))),
    BadCase(".mrk.json point without position", "landmarks", "finetune",
            markups(_mrk_edit(lambda d: _cp(d).pop("position")))),
    BadCase(".mrk.json position with 4 numbers", "landmarks", "finetune",
            markups(_mrk_edit(lambda d: _cp(d).update(position=[1.0, 2.0, 0.0, 5.0])))),
    BadCase(".mrk.json unknown coordinateSystem", "landmarks", "finetune",
            markups(_mrk_edit(lambda d: d["markups"][0].update(coordinateSystem="XYZ")))),
    BadCase(".mrk.json NaN position", "landmarks", "finetune",
            markups(_mrk_edit(lambda d: _cp(d).update(position=[float("nan"), 2.0, 0.0])))),
    BadCase(".mrk.json Inf position", "landmarks", "finetune",
            markups(_mrk_edit(lambda d: _cp(d).update(position=[float("inf"), 2.0, 0.0])))),
    BadCase(".mrk.json RAS points read as LPS (outside the image)", "landmarks", "finetune",
            markups(_mrk_edit(lambda d: _cp(d).update(position=[-400.0, -400.0, 0.0])))),
    BadCase(".mrk.json duplicated names", "landmarks", "finetune",
            markups(_mrk_edit(lambda d: _cp(d, 1).update(label=_cp(d)["label"])))),
    BadCase(".mrk.json invalid JSON (truncated)", "landmarks", "finetune", markups(lambda p: truncate(p))),
    BadCase(".mrk.json zero-byte", "landmarks", "finetune", markups(empty)),
    BadCase("unknown landmark names", "landmarks", "finetune",
            (lambda root, base: _with_args(markups(lambda p: p)(root, base), ["--landmark-names", "nose,chin"],
                                           root / "data" / "landmarks"))),
    BadCase(".fcsv with too few columns", "landmarks", "finetune", replace_markups(".fcsv", "# CoordinateSystem = LPS\n1,2,3\n")),
    BadCase(".csv without x,y columns", "landmarks", "finetune", replace_markups(".csv", "label,a,b\napex,1,2\n")),
    # --- model folders ---
    BadCase("model without config.json", "checkpoint", "predict",
            predict_model(lambda m: (m / "config.json").unlink() or m)),
    BadCase("config.json not JSON", "checkpoint", "predict",
            predict_model(lambda m: truncate(m / "config.json", 0.5))),
    BadCase("config.json unknown kind", "checkpoint", "predict",
            predict_model(lambda m: edit_json(m / "config.json", lambda d: d.update(kind="detector")))),
    BadCase("config.json without preprocessing", "checkpoint", "predict",
            predict_model(lambda m: edit_json(m / "config.json", lambda d: d.pop("preprocessing")))),
    BadCase("config.json with a misspelled key", "checkpoint", "predict",
            predict_model(lambda m: edit_json(m / "config.json", lambda d: d.update(timestpe=d.pop("timestep"))))),
    BadCase("config.json with a value of the wrong type", "checkpoint", "predict",
            predict_model(lambda m: edit_json(m / "config.json", lambda d: d["task"].update(classes="lung,heart")))),
    BadCase("config.json network edited (weights no longer fit)", "checkpoint", "predict",
            predict_model(_network_edited)),
    BadCase("weights of the wrong shape", "checkpoint", "predict", predict_model(_wrong_shape_weights)),
    BadCase("pickle renamed .safetensors", "checkpoint", "predict", predict_model(_pickle_weights)),
    BadCase("missing model.safetensors", "checkpoint", "predict",
            predict_model(lambda m: (m / "model.safetensors").unlink() or m / "model.safetensors")),
    BadCase("truncated model.safetensors", "checkpoint", "predict",
            predict_model(lambda m: truncate(m / "model.safetensors", 0.6), kind="landmarks")),
    BadCase("pretrained weights of the wrong shape (finetune)", "checkpoint", "finetune",
            (lambda root, base: _finetune_from_damaged(root, base, _wrong_shape_weights))),
    BadCase("predict: truncated image", "imageio", "predict", predict_image(truncate)),
    BadCase("predict: NaN image", "imageio", "predict", predict_image(lambda p: _nan_image(p))),
    BadCase("predict: 3D image with a 2D model", "imageio", "predict",
            predict_image(lambda p: write(phantom(4, 3)[0], p))),
    # --- where results go ---
    BadCase("pretrain: output folder not writable", "output", "pretrain",
            (lambda root, base: _read_only_out(pretrain_with(lambda p: p)(root, base)))),
    BadCase("predict: output folder not writable", "output", "predict",
            (lambda root, base: _read_only_out(predict_image(lambda p: p)(root, base)))),
    BadCase("pretrain: disk full at the checkpoint", "output", "pretrain",
            (lambda root, base: _inject(pretrain_with(lambda p: p)(root, base), safetensors_disk_full,
                                        "model.safetensors"))),
    BadCase("predict: disk full writing landmarks", "output", "predict",
            (lambda root, base: _inject(_predict_landmarks(root, base), lambda: fsync_disk_full(".mrk.json"),
                                        "case_0.mrk.json"))),
    BadCase("predict: disk full writing a segmentation", "output", "predict",
            (lambda root, base: _inject(predict_image(lambda p: p)(root, base), lambda: disk_full(
                "DiffusionSegLib.atomic.fsync_file"), "case_0.seg.nrrd"))),
    BadCase("second run on a locked output folder", "runlock", "pretrain", _lock_held),
]


def _raw_nrrd_case(root: Path, base: Base) -> Setup:
    good_folder(root / "data")
    path = write(phantom(8)[0], root / "data" / "images" / "case_9.nrrd", compress=False)
    return _pretrain(root, truncate(path, 0.6))


def _picture_case(root: Path, suffix: str, damage) -> Setup:
    good_folder(root / "data")
    image = np.clip(phantom(8)[0] / 4, 0, 255).astype(np.uint8)
    path = root / "data" / "images" / f"case_9{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(image), str(path))
    return _pretrain(root, damage(path))


def _resave(path: Path, change) -> Path:
    image = sitk.ReadImage(str(path))
    array = change(sitk.GetArrayFromImage(image).astype(np.float32))
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(path), True)
    return path


def _set(array: np.ndarray, where, value) -> np.ndarray:
    array[where] = value
    return array


def _patch_bytes(path: Path, offset: int, data: bytes) -> Path:
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(data)] = data
    path.write_bytes(bytes(raw))
    return path


def _with_args(setup: Setup, extra: list, blamed: Path) -> Setup:
    setup.argv = setup.argv[:-len(RUNTIME)] + extra + RUNTIME
    setup.blamed = blamed
    return setup


def _finetune_from_damaged(root: Path, base: Base, damage) -> Setup:
    good_folder(root / "data")
    model = copy_model(base.pretrained, root / "model")
    blamed = damage(model)
    setup = _finetune_seg(root, Base(model, base.segmentation, base.landmarks), blamed)
    return setup


def _predict_landmarks(root: Path, base: Base) -> Setup:
    good_folder(root / "data", n=1)
    return _predict(root, copy_model(base.landmarks, root / "model"), root / "out")


def _read_only_out(setup: Setup) -> Setup:
    parent = setup.out.parent / "locked"
    setup.argv = [parent / "out" if a == setup.out else a for a in setup.argv]
    setup.out = parent / "out"
    setup.blamed = setup.out
    setup.inject = lambda: read_only(parent)
    return setup


def _inject(setup: Setup, inject, blamed_name: str) -> Setup:
    setup.inject = inject
    setup.blamed = Path(blamed_name)
    return setup


# ----------------------------------------------------------------------------- running


def digests(folder: Path, skip: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and skip not in p.parents and p != skip}


def run_case(case: BadCase, folder: Path, base: Base) -> dict:
    """Build and run one case; returns what happened and whether it ended cleanly."""
    folder.mkdir(parents=True)
    setup = case.build(folder, base)
    before = digests(folder, setup.out)
    stdout, stderr = io.StringIO(), io.StringIO()
    crash = None
    t0 = time.monotonic()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            with (setup.inject() if setup.inject else contextlib.nullcontext()):
                code = main([str(a) for a in setup.argv])
        except BaseException:  # noqa: BLE001 (anything escaping main is a failure of the case)
            code, crash = None, traceback.format_exc()
    lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
    error = lines[-1] if lines else ""
    after = digests(folder, setup.out)
    checks = {
        "exit_2": code == 2,
        "one_line": len(lines) == 1 and error.startswith("error: "),
        "names_file": setup.blamed.name in error,
        "has_fix": "Fix: " in error,
        "no_traceback": crash is None and "Traceback" not in stderr.getvalue(),
        "nothing_written": not setup.out.exists() and not lock_path(setup.out).exists() or case.reader == "runlock",
        "inputs_unchanged": before == after,
    }
    return {"case": case.name, "reader": case.reader, "command": case.command, "exit_code": code,
            "stderr": stderr.getvalue()[-600:] if not all(checks.values()) else error[:400],
            "crash": crash[-800:] if crash else None, "checks": checks, "clean": all(checks.values()),
            "seconds": round(time.monotonic() - t0, 2)}


def run_all(root: Path, names: list[str] | None = None) -> dict:
    base = make_base(root / "base")
    results = [run_case(case, root / f"case_{i:02d}", base) for i, case in enumerate(CASES)
               if names is None or case.name in names]
    return {"tried": len(results), "ended_cleanly": sum(r["clean"] for r in results),
            "inputs_changed": sum(not r["checks"]["inputs_unchanged"] for r in results),
            "readers": sorted({r["reader"] for r in results}), "commands": sorted({r["command"] for r in results}),
            "results": results}


def main_script() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the results JSON here")
    args = parser.parse_args()
    os.environ.setdefault("DIFFUSIONSEG_CACHE_DIR", tempfile.mkdtemp(prefix="diffusionseg-cache-"))
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_all(Path(tmp))
    for r in summary["results"]:
        bad = [k for k, ok in r["checks"].items() if not ok]
        print(f"{'ok  ' if r['clean'] else 'FAIL'} {r['command']:9s} {r['case']:55s} {', '.join(bad)}")
        if bad:
            print("     ", (r["crash"] or r["stderr"]).strip().replace("\n", "\n      ")[-500:])
    print(json.dumps({k: summary[k] for k in ("tried", "ended_cleanly", "inputs_changed")}))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["ended_cleanly"] == summary["tried"] else 1


if __name__ == "__main__":
    sys.exit(main_script())
