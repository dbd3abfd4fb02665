"""``diffusionseg bpr train``: fit the slice regressor to a folder of unlabeled CT volumes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import UserError
from ..imageio import list_images, normalisation_for, read_image, read_image_info
from ..training.checkpoint import save_model
from ..training.device import choose_device
from ..training.guard import CommandGuard
from ..training.outputs import check_output_folder, staged_folder
from ..training.progress import Reporter, new_run_dir
from .losses import slice_ordering_loss
from .model import BprNet, BprNetConfig
from .predict import predict_slices, spearman
from .slices import axial_slices

KIND = "bpr"


@dataclass
class BprOptions:
    """Options of ``diffusionseg bpr train``; ``slice_size`` in (x, y) order.

    Attributes:
        batch_size: volumes per step; each gives ``slices`` slices, so a step scores
            ``batch_size * slices`` slices.
        slices: m, the slices taken from one volume at equal gaps (Yan et al. use 8).
        distance_weight: weight of the equal-spacing loss against the order loss.
    """

    images: Path
    out: Path
    iterations: int = 2000
    batch_size: int = 4
    slices: int = 8
    slice_size: list[int] = field(default_factory=lambda: [64, 64])
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 64])
    learning_rate: float = 1e-3
    distance_weight: float = 1.0
    grad_clip: float = 1.0
    modality: str = "ct"
    seed: int = 0
    overwrite: bool = False
    device: str = "auto"
    progress: str = "bar"


@dataclass
class _Volume:
    path: Path
    pixels: np.ndarray  # (D, 1, h, w) float16, lowest slice first (float16 halves the memory of a large folder)
    z_mm: np.ndarray    # (D,)


def _check_options(opts: BprOptions) -> None:
    if opts.slices < 3:
        raise UserError(f"--slices {opts.slices} is too few: the distance loss compares two gaps.",
                        fix="use --slices 3 or more (8 is the usual choice).")
    for name, value in (("--iterations", opts.iterations), ("--batch-size", opts.batch_size)):
        if value < 1:
            raise UserError(f"{name} must be positive, got {value}.", fix=f"give {name} 1 or more.")
    if not opts.learning_rate > 0:
        raise UserError(f"--learning-rate must be positive, got {opts.learning_rate}.", fix="use e.g. 1e-3.")
    BprNetConfig(channels=list(opts.channels), slice_size=list(opts.slice_size)).validate()


def _volume_paths(opts: BprOptions) -> list[Path]:
    """The images, after checking from their headers that they are 3D with enough slices."""
    paths = list_images(opts.images)
    for path in paths:
        info = read_image_info(path)
        if info.dims != 3:
            raise UserError(f"body-part regression needs 3D volumes, but this image is {info.dims}D.", path=path,
                            fix="point --images at a folder of 3D CT volumes.")
    return paths


def _load_volumes(paths: list[Path], opts: BprOptions, normalisation, reporter: Reporter) -> list[_Volume]:
    volumes = []
    for path in paths:
        slices = axial_slices(read_image(path), opts.slice_size, normalisation, path=path)
        depth = len(slices.z_mm)
        if depth < opts.slices:
            raise UserError(f"this volume has {depth} axial slices, fewer than --slices {opts.slices}.", path=path,
                            fix=f"use --slices {depth} or fewer, or leave this volume out.")
        volumes.append(_Volume(path, slices.pixels.astype(np.float16), slices.z_mm))
    reporter.log(f"bpr: {len(volumes)} volumes, {sum(len(v.z_mm) for v in volumes)} axial slices")
    return volumes


def sample_slice_indices(rng: np.random.Generator, depth: int, m: int) -> np.ndarray:
    """``(m,)`` slice indices ``start + gap * i``: a random gap, then a random start that keeps all m inside.

    The volume's slices are equally spaced, so equal index gaps are equal gaps in mm.
    """
    gap = int(rng.integers(1, (depth - 1) // (m - 1) + 1))
    start = int(rng.integers(0, depth - (m - 1) * gap))
    return start + gap * np.arange(m)


def _batch(volumes: list[_Volume], rng: np.random.Generator, opts: BprOptions) -> tuple[np.ndarray, np.ndarray]:
    """``(B * m, 1, h, w)`` slices and ``(B, m)`` their heights, in a shuffled order within each volume.

    Shuffling leaves the ordering entirely to the loss, which sorts by height: the
    order of slices in the array is never taken as anatomical order.
    """
    chosen = rng.choice(len(volumes), size=opts.batch_size, replace=len(volumes) < opts.batch_size)
    pixels, heights = [], []
    for v in chosen:
        volume = volumes[int(v)]
        index = rng.permutation(sample_slice_indices(rng, len(volume.z_mm), opts.slices))
        pixels.append(volume.pixels[index])
        heights.append(volume.z_mm[index])
    return np.concatenate(pixels).astype(np.float32), np.stack(heights)


def _fit(net: BprNet, volumes: list[_Volume], opts: BprOptions, device: torch.device, reporter: Reporter) -> float:
    rng = np.random.default_rng(opts.seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=opts.learning_rate)
    net.train()
    loss_value = float("nan")
    reporter.start(total=opts.iterations, out=str(Path(opts.out).resolve()))
    for step in range(1, opts.iterations + 1):
        pixels, heights = _batch(volumes, rng, opts)
        scores = net(torch.from_numpy(pixels).to(device)).view(opts.batch_size, opts.slices)
        loss, parts = slice_ordering_loss(scores, torch.from_numpy(heights).to(device), opts.distance_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), opts.grad_clip)
        optimizer.step()
        loss_value = float(loss.detach())
        if not np.isfinite(loss_value):
            raise UserError(f"the loss became {loss_value} at step {step}.",
                            fix="lower --learning-rate, or check the images for NaN values.")
        reporter.progress(step, opts.iterations, loss=loss_value, **parts)
    return loss_value


def train_bpr(opts: BprOptions) -> dict:
    """Train a body-part regressor on the 3D volumes in ``opts.images``; write the model folder ``opts.out``.

    The folder is built in a hidden sibling of ``opts.out`` and moved into place only
    when complete (see :mod:`DiffusionSegLib.training.outputs`), so a failed or cancelled
    run leaves ``opts.out`` as it was. Like pretrain and finetune, the run holds the lock
    of ``opts.out`` and of the project it lies in.

    Returns:
        the run's summary (steps, seconds, final loss, score range, per-volume Spearman).
    """
    opts.out, opts.images = Path(opts.out), Path(opts.images)
    reporter = Reporter("bpr-train", opts.progress)
    with CommandGuard(reporter, opts.out, project=True):
        _check_options(opts)
        check_output_folder(opts.out, overwrite=opts.overwrite,
                            fix="choose a new --out, or --overwrite to replace a model folder.")
        device = choose_device(opts.device)
        paths = _volume_paths(opts)
        normalisation = normalisation_for(opts.modality)
        volumes = _load_volumes(paths, opts, normalisation, reporter)
        with staged_folder(opts.out) as staging:
            run_dir = new_run_dir(staging / "runs", "bpr-train")
            reporter.attach(run_dir / "events.jsonl")
            summary = _train(volumes, opts, normalisation, device, reporter, staging)
        reporter.events_path = opts.out / run_dir.relative_to(staging) / "events.jsonl"
        reporter.done(**summary)
        return summary


def _train(volumes: list[_Volume], opts: BprOptions, normalisation, device: torch.device, reporter: Reporter,
           folder: Path) -> dict:
    """Fit the regressor and save the model folder ``folder``; returns the run's summary."""
    torch.manual_seed(opts.seed)  # the initial weights
    net_cfg = BprNetConfig(channels=list(opts.channels), slice_size=list(opts.slice_size))
    net = BprNet(net_cfg).to(device)
    reporter.log(f"bpr: {opts.iterations} steps of {opts.batch_size} volumes x {opts.slices} slices, "
                 f"slices {net_cfg.slice_size[0]}x{net_cfg.slice_size[1]}, {device}")
    t0 = time.monotonic()
    final_loss = _fit(net, volumes, opts, device, reporter)
    seconds = time.monotonic() - t0

    # The score range on the training volumes: the coordinate map scales scores by it to about [-1, 1].
    net.eval()
    per_volume = [predict_slices(net, v.pixels.astype(np.float32), device) for v in volumes]
    every = np.concatenate(per_volume)
    score_range = [float(every.min()), float(every.max())]
    rho = [spearman(v.z_mm, s) for v, s in zip(volumes, per_volume)]
    config = {
        "kind": KIND,
        "network": net_cfg.to_dict(),
        "preprocessing": {"slice_size": list(net_cfg.slice_size), "normalisation": normalisation.to_dict(),
                          "orientation": "LPS"},
        "slices": opts.slices,
        "score_range": score_range,
        "training": {"iterations": opts.iterations, "batch_size": opts.batch_size, "slices": opts.slices,
                     "learning_rate": opts.learning_rate, "distance_weight": opts.distance_weight,
                     "seed": opts.seed, "volumes": len(volumes), "final_loss": final_loss,
                     "train_spearman_min": float(np.nanmin(rho))},
        "created_by": f"diffusionseg {__version__}",
    }
    save_model(folder, config, net.state_dict())
    return {"out": str(opts.out), "steps": opts.iterations, "seconds": round(seconds, 1),
            "final_loss": final_loss, "score_range": score_range, "volumes": len(volumes),
            "train_spearman": [round(r, 4) for r in rho], "device": str(device)}
