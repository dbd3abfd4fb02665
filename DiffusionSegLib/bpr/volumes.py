"""The training data of ``diffusionseg bpr train``: volumes as axial slices in memory, and each step's batch.

A batch is B volumes x m slices at equal gaps from each. The draws of step ``s`` on rank
``r`` come from a generator seeded by ``(seed, s, r)``, never from one stream running
through the run, so a resumed run (``--resume``) draws exactly what an uninterrupted one
would, and every rank of a distributed run draws its own volumes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..imageio import Normalisation, list_images, read_image, read_image_info
from ..training.progress import Reporter
from .slices import axial_slices


@dataclass
class TrainingVolume:
    path: Path
    pixels: np.ndarray  # (D, 1, h, w) float16, lowest slice first (float16 halves the memory of a large folder)
    z_mm: np.ndarray    # (D,)


def volume_paths(images: Path) -> list[Path]:
    """The images in ``images``, after checking from their headers that they are 3D."""
    paths = list_images(images)
    for path in paths:
        info = read_image_info(path)
        if info.dims != 3:
            raise UserError(f"body-part regression needs 3D volumes, but this image is {info.dims}D.", path=path,
                            fix="point --images at a folder of 3D CT volumes.")
    return paths


def load_volumes(paths: list[Path], slice_size: list[int], slices: int, normalisation: Normalisation,
                 reporter: Reporter) -> list[TrainingVolume]:
    """Every volume's axial slices at ``slice_size``; a volume with fewer than ``slices`` slices is an error."""
    volumes = []
    for path in paths:
        axial = axial_slices(read_image(path), slice_size, normalisation, path=path)
        depth = len(axial.z_mm)
        if depth < slices:
            raise UserError(f"this volume has {depth} axial slices, fewer than --slices {slices}.", path=path,
                            fix=f"use --slices {depth} or fewer, or leave this volume out.")
        volumes.append(TrainingVolume(path, axial.pixels.astype(np.float16), axial.z_mm))
    reporter.log(f"bpr: {len(volumes)} volumes, {sum(len(v.z_mm) for v in volumes)} axial slices")
    return volumes


def sample_slice_indices(rng: np.random.Generator, depth: int, m: int) -> np.ndarray:
    """``(m,)`` slice indices ``start + gap * i``: a random gap, then a random start that keeps all m inside.

    The volume's slices are equally spaced, so equal index gaps are equal gaps in mm.
    """
    gap = int(rng.integers(1, (depth - 1) // (m - 1) + 1))
    start = int(rng.integers(0, depth - (m - 1) * gap))
    return start + gap * np.arange(m)


def draw_batch(volumes: list[TrainingVolume], rng: np.random.Generator, count: int, m: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(count * m, 1, h, w)`` slices of ``count`` volumes and ``(count, m)`` their heights, in a shuffled
    order within each volume.

    Shuffling leaves the ordering entirely to the loss, which sorts by height: the
    order of slices in the array is never taken as anatomical order.
    """
    chosen = rng.choice(len(volumes), size=count, replace=len(volumes) < count)
    pixels, heights = [], []
    for v in chosen:
        volume = volumes[int(v)]
        index = rng.permutation(sample_slice_indices(rng, len(volume.z_mm), m))
        pixels.append(volume.pixels[index])
        heights.append(volume.z_mm[index])
    return np.concatenate(pixels).astype(np.float32), np.stack(heights)


def step_batches(volumes: list[TrainingVolume], *, count: int, m: int, seed: int, start: int, stop: int,
                 rank: int) -> Iterator[dict[str, torch.Tensor]]:
    """This rank's batches of steps ``start .. stop - 1``: ``pixels`` ``(count * m, 1, h, w)`` and
    ``heights`` ``(count, m)`` in mm (float32: every device takes it, and only their order is used)."""
    for step in range(start, stop):
        pixels, heights = draw_batch(volumes, np.random.default_rng([seed, step, rank]), count, m)
        yield {"pixels": torch.from_numpy(pixels), "heights": torch.from_numpy(heights.astype(np.float32))}
