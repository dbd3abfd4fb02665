"""Check every input image once, completely, before a command spends any time on it.

As nnU-Net's ``verify_dataset_integrity``: each image is decoded to the last voxel (a
truncated file is found at the start of a run, not at step 5,000), its values must be
finite, its geometry sane (positive finite spacing, finite origin, invertible direction)
and its dimension the one the command needs. SimpleITK alone is not enough: it reads a
truncated ``.nii``/``.nii.gz``, ``.bmp`` or ``.jpg`` without complaint (the missing part
comes back as zeros), so those formats are also checked for their full length here.

A file that passed is remembered in a small JSON cache (one per user, see
:func:`cache_path`), keyed by its path, size, modification time and a hash of its first
and last MiB, so the next run on the same files does not decode them again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..atomic import write_json_atomic
from ..errors import UserError
from .images import read_image
from .suffixes import image_suffix

#: Bump when the checks change: entries of older versions are not trusted.
VERIFY_VERSION = 1
CACHE_ENV = "DIFFUSIONSEG_CACHE_DIR"
CACHE_NAME = "verified-images.json"
_MAX_ENTRIES = 50_000
_EDGE = 1 << 20  # bytes hashed at each end of a file

_REEXPORT = "copy or export the file again (the copy is incomplete or damaged), or move it out of the folder."


def cache_path() -> Path:
    """``$DIFFUSIONSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/diffusionseg``, else ``~/.cache/diffusionseg``
    (on Windows ``%LOCALAPPDATA%\\diffusionseg``), then ``verified-images.json``."""
    base = os.environ.get(CACHE_ENV)
    if not base:
        root = os.environ.get("XDG_CACHE_HOME") or os.environ.get("LOCALAPPDATA") or Path.home() / ".cache"
        base = Path(root) / "diffusionseg"
    return Path(base) / CACHE_NAME


# ----------------------------------------------------------------------------- length checks


def _gunzip_length(path: Path) -> int:
    """Length of the decompressed data; raises UserError for a truncated or corrupt gzip stream."""
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                total += len(chunk)
    except (EOFError, OSError, zlib.error) as err:
        raise UserError(f"the compressed data is truncated or corrupt ({err}).", path=path, fix=_REEXPORT) from err
    return total


def _check_nifti_length(path: Path, compressed: bool) -> None:
    """A NIfTI file must hold ``vox_offset + voxels * bitpix / 8`` bytes (NIfTI-1 and NIfTI-2)."""
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            head = f.read(544)
    except (EOFError, OSError, zlib.error) as err:
        raise UserError(f"the compressed data is truncated or corrupt ({err}).", path=path, fix=_REEXPORT) from err
    for order in "<>":
        if len(head) >= 348 and struct.unpack(f"{order}i", head[:4])[0] == 348:
            dims = struct.unpack(f"{order}8h", head[40:56])
            bitpix = struct.unpack(f"{order}h", head[72:74])[0]
            offset = struct.unpack(f"{order}f", head[108:112])[0]
            break
        if len(head) >= 540 and struct.unpack(f"{order}i", head[:4])[0] == 540:
            dims = struct.unpack(f"{order}8q", head[16:80])
            bitpix = struct.unpack(f"{order}h", head[14:16])[0]
            offset = struct.unpack(f"{order}q", head[168:176])[0]
            break
    else:
        return  # not a header we know; SimpleITK has judged it
    n = max(0, min(int(dims[0]), 7))
    voxels = int(np.prod([max(1, int(d)) for d in dims[1:1 + n]], dtype=np.int64))
    expected = int(offset) + voxels * max(bitpix, 0) // 8
    actual = _gunzip_length(path) if compressed else path.stat().st_size
    if actual < expected:
        raise UserError(f"the file is truncated: its header announces {expected} bytes of data, "
                        f"it holds {actual}.", path=path, fix=_REEXPORT)


def _check_bmp_length(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(34)
    if len(head) < 34 or head[:2] != b"BM":
        return
    offset, = struct.unpack("<I", head[10:14])
    width, height, _, bpp, compression = struct.unpack("<iiHHI", head[18:34])
    if compression != 0:
        return
    expected = offset + ((abs(width) * bpp + 31) // 32) * 4 * abs(height)
    if path.stat().st_size < expected:
        raise UserError(f"the file is truncated: {expected} bytes expected, {path.stat().st_size} found.",
                        path=path, fix=_REEXPORT)


def _check_jpeg_end(path: Path) -> None:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 4096))
        tail = f.read()
    if not tail.rstrip(b"\x00\r\n\t ").endswith(b"\xff\xd9"):
        raise UserError("the file is truncated: a JPEG must end with its end-of-image marker.", path=path,
                        fix=_REEXPORT)


def check_complete(path: Path) -> None:
    """The length checks SimpleITK leaves out, by format (see the module doc)."""
    suffix = image_suffix(path) or ""
    if suffix == ".nii.gz":
        _check_nifti_length(path, compressed=True)
    elif suffix == ".nii":
        _check_nifti_length(path, compressed=False)
    elif suffix == ".bmp":
        _check_bmp_length(path)
    elif suffix in (".jpg", ".jpeg"):
        _check_jpeg_end(path)


# ----------------------------------------------------------------------------- content checks


def check_image(image: sitk.Image, path: Path) -> None:
    """Finite values and a usable geometry."""
    spacing, origin = np.array(image.GetSpacing()), np.array(image.GetOrigin())
    direction = np.array(image.GetDirection()).reshape(image.GetDimension(), -1)
    if not (np.all(np.isfinite(spacing)) and np.all(spacing > 0)):
        raise UserError(f"the voxel spacing {tuple(spacing)} is not a positive number in every axis.", path=path,
                        fix="correct the spacing in the file's header (e.g. in Slicer: Volumes module, "
                            "Volume information), then save it again.")
    if not (np.all(np.isfinite(origin)) and np.all(np.isfinite(direction))
            and abs(np.linalg.det(direction)) > 1e-6):
        raise UserError("the image's origin or direction matrix is not valid (not finite, or not invertible).",
                        path=path, fix="correct the geometry in the file's header, then save it again.")
    pixels = sitk.GetArrayViewFromImage(image)
    finite = np.isfinite(pixels)
    if not finite.all():
        bad = int(pixels.size - np.count_nonzero(finite))
        raise UserError(f"{bad} of its {pixels.size} voxels are NaN or infinite.", path=path,
                        fix="replace them with a real value (e.g. the background intensity) and save the image "
                            "again, or move it out of the folder.")


def _fingerprint(path: Path) -> str:
    """Path, size, modification time and the first and last MiB of each file (of a DICOM folder: all files)."""
    digest = hashlib.sha256(str(path.resolve()).encode())
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        st = file.stat()
        digest.update(f"{file.name}|{st.st_size}|{st.st_mtime_ns}".encode())
        with open(file, "rb") as f:
            digest.update(f.read(_EDGE))
            if st.st_size > 2 * _EDGE:
                f.seek(st.st_size - _EDGE)
                digest.update(f.read(_EDGE))
    return digest.hexdigest()


def _load_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) and data.get("version") == VERIFY_VERSION else {}
    except (OSError, ValueError):
        return {}


def _save_cache(path: Path, verified: dict[str, int]) -> None:
    """Merge ``verified`` into the cache file; a cache that cannot be written is only a lost speed-up."""
    entries = _load_cache(path).get("entries", {})
    entries.update(verified)
    if len(entries) > _MAX_ENTRIES:
        entries = dict(list(entries.items())[-_MAX_ENTRIES:])
    try:
        write_json_atomic(path, {"version": VERIFY_VERSION, "entries": entries})
    except OSError:
        pass


def verify_images(paths: Iterable[str | Path], dims: int | None = None, *,
                  log: Callable[[str], None] | None = None, cache: Path | None = None) -> dict[Path, int]:
    """Decode every image once and check it (see the module doc); the first bad one raises.

    Args:
        dims: the dimension (2 or 3) the command needs, or None for any.
        log: called with one summary line (how many were checked, how many came from the cache).
        cache: the cache file; default :func:`cache_path`.
    Returns:
        ``path -> dims`` of every image.
    Raises:
        UserError: naming the file: unreadable or truncated, NaN or infinite values, a
            bad geometry, or another dimension than ``dims``.
    """
    cache = cache_path() if cache is None else Path(cache)
    known = _load_cache(cache).get("entries", {})
    result: dict[Path, int] = {}
    fresh: dict[str, int] = {}
    for path in map(Path, paths):
        key = _fingerprint(path) if path.exists() else None
        if key is not None and key in known:
            result[path] = int(known[key])
        else:
            if path.is_file():
                check_complete(path)
            image = read_image(path)
            check_image(image, path)
            result[path] = image.GetDimension()
            if key is not None:
                fresh[key] = result[path]
        if dims is not None and result[path] != dims:
            raise UserError(f"this image is {result[path]}D, but {dims}D images are needed here.", path=path,
                            fix=f"use {dims}D images only (move the others out of the folder).")
    if fresh:
        _save_cache(cache, fresh)
    if log is not None:
        log(f"verified {len(result)} image(s) ({len(result) - len(fresh)} unchanged since an earlier check)")
    return result
