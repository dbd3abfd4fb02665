"""Per-image feature cache, keyed by the image's content and the model's identity.

Layout: ``<cache root>/<model key>/<image key>.npz``, the cache root being ``MODEL/cache/suggest``
unless ``--cache-dir`` is given.

- image key: sha256 of the file's bytes for files up to :data:`FULL_HASH_LIMIT` (every 2D image,
  most volumes); a larger file is keyed by its size, its modification time and its first and last
  MiB (reading several GB each call would break the "seconds when cached" promise). A DICOM series
  folder: the same per file, over its sorted files. The path is not part of the key, so a renamed
  or copied image keeps its features.
- model key: sha256 of ``model.safetensors`` (the weights' bytes) with the feature recipe
  (:data:`RECIPE_VERSION` and the extractor's settings), so new weights or a new recipe never
  read old entries.

An entry that cannot be read (a crash mid-write, another version) is recomputed; one that cannot be
written is only a lost speed-up.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from ..atomic import write_atomic

RECIPE_VERSION = 1
FULL_HASH_LIMIT = 64 << 20   # bytes
_EDGE = 1 << 20
_CHUNK = 4 << 20


def _hash_file(digest, path: Path) -> None:
    size = path.stat().st_size
    digest.update(f"{size}|".encode())
    with open(path, "rb") as f:
        if size <= FULL_HASH_LIMIT:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
            return
        digest.update(f"{path.stat().st_mtime_ns}|".encode())
        digest.update(f.read(_EDGE))
        f.seek(size - _EDGE)
        digest.update(f.read(_EDGE))


def image_key(path: Path) -> str:
    """The content key of one image file or DICOM series folder (see the module doc)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.name.encode())
        _hash_file(digest, file)
    return digest.hexdigest()


def weights_sha256(weights: Path) -> str:
    """sha256 of the whole weights file (whatever its size: the weights are the model's identity)."""
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_key(weights_digest: str, recipe: dict) -> str:
    """The cache folder's key: the weights' sha256 and the feature recipe (a JSON-able dict)."""
    text = json.dumps({"weights": weights_digest, "recipe_version": RECIPE_VERSION, **recipe}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class FeatureCache:
    """``get(key)`` / ``put(key, entry)`` of ``{"features": (F,) float32, "info": dict}``."""

    def __init__(self, root: Path, model: str):
        self.folder = Path(root) / model[:24]

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def get(self, key: str) -> dict | None:
        try:
            with np.load(self._path(key), allow_pickle=False) as data:
                return {"features": data["features"].astype(np.float32), "info": json.loads(str(data["info"]))}
        except (OSError, ValueError, KeyError):
            return None

    def put(self, key: str, entry: dict) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, features=np.asarray(entry["features"], dtype=np.float32),
                 info=np.array(json.dumps(entry["info"])))
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(self._path(key), lambda tmp: tmp.write_bytes(buffer.getvalue()))
        except OSError:
            pass
