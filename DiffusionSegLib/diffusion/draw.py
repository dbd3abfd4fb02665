"""``diffusionseg sample``: draw images from a pretrained model and write them for a person to look at."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..atomic import write_json_atomic
from ..data.coordinates import position_map
from ..data.preprocess import Preprocessing
from ..errors import UserError
from ..nets import NetworkConfig, build_unet
from ..training.checkpoint import load_model_config, load_weights
from ..training.device import Precision, choose_device
from ..training.guard import CommandGuard
from ..training.outputs import check_output_folder, staged_folder
from ..training.progress import Reporter
from .ddpm import DiffusionConfig
from .options import SampleOptions
from .sampling import sample_images


def tile_grid(images: np.ndarray) -> np.ndarray:
    """Arrange ``(N, H, W)`` images in a near-square grid ``(rows * H, cols * W)`` with 2-pixel gaps."""
    n, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + 2) - 2, cols * (w + 2) - 2), images.min(), dtype=images.dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * (h + 2):r * (h + 2) + h, c * (w + 2):c * (w + 2) + w] = image
    return grid


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] to 0..255."""
    return np.clip((images + 1) * 127.5, 0, 255).round().astype(np.uint8)


def sample_model(model_dir: Path, out_dir: Path, *, count: int = SampleOptions.count, steps: int = SampleOptions.steps,
                 method: str = SampleOptions.method, seed: int = SampleOptions.seed,
                 device: str = SampleOptions.device, precision: str = SampleOptions.precision,
                 progress: str = SampleOptions.progress) -> dict:
    """Draw ``count`` images and write ``samples.png`` plus one image file per sample.

    2D samples are written as NRRD, 3D as NIfTI, on the grid the network was trained on
    (its patch size and, where known, spacing). For 3D, ``samples.png`` shows the
    middle slice of each volume.
    """
    out_dir = Path(out_dir)
    reporter = Reporter("sample", progress)
    with CommandGuard(reporter, out_dir):
        check_output_folder(out_dir)
        images, prep = _draw(Path(model_dir), reporter, count=count, steps=steps, method=method, seed=seed,
                             device=device, precision=precision)
        summary = {"count": count, "steps": steps, "method": method, "seed": seed, "model": str(model_dir),
                   "out": str(out_dir), "grid": str(out_dir / "samples.png")}
        with staged_folder(out_dir) as tmp_dir:
            _write_samples(images, prep, tmp_dir)
            write_json_atomic(tmp_dir / "samples.json", summary)
    reporter.done(out=str(out_dir))
    return summary


def _draw(model_dir: Path, reporter: Reporter, *, count: int, steps: int, method: str, seed: int, device: str,
          precision: str) -> tuple[np.ndarray, Preprocessing]:
    """The drawn images ``(N, *patch_shape)`` in [-1, 1], and the model's preprocessing."""
    config = load_model_config(model_dir)
    if config.kind != "pretrained" or config.pretrain_objective != "ddpm":
        raise UserError(f"this is a {config.kind} model; only a pretrained (denoising) model can draw images.",
                        path=model_dir, fix="pass the folder that `diffusionseg pretrain` wrote.")
    net_cfg = NetworkConfig.from_dict(config.network.to_dict())
    prep = Preprocessing.from_dict(config.preprocessing.to_dict())
    diffusion = DiffusionConfig.from_dict(config.diffusion.to_dict())
    dev = choose_device(device)
    prec = Precision.choose(dev, precision)
    model = build_unet(net_cfg)
    model.load_state_dict(load_weights(model_dir))
    model.to(dev).eval()
    generator = torch.Generator().manual_seed(seed)
    shape = (count, 1, *prep.patch_shape)
    condition = None
    if prep.coordinates is not None:
        if prep.coordinates != "position":
            raise UserError(f"sampling is offered for position coordinates only, this model uses "
                            f"'{prep.coordinates}' (a body-part map needs a real volume to compute).",
                            path=model_dir, fix="sample from a model pretrained without --coordinates, or "
                                                "with --coordinates position.")
        # Each sample is drawn as if it filled the whole grid.
        condition = torch.from_numpy(position_map(prep.patch_shape))[None].expand(count, -1, *prep.patch_shape)
    reporter.start(steps)
    with prec.autocast():
        images = sample_images(model, diffusion, shape, steps=steps, method=method, generator=generator, device=dev,
                               condition=condition, on_step=lambda i, n: reporter.progress(i, n))
    return images[:, 0].numpy(), prep


def _write_samples(images: np.ndarray, prep: Preprocessing, folder: Path) -> None:
    """One image file per sample (NRRD in 2D, NIfTI in 3D) and ``samples.png``, the grid to look at."""
    spacing = prep.spacing or [1.0] * prep.dims
    suffix = ".nrrd" if prep.dims == 2 else ".nii.gz"
    for i, image in enumerate(images):
        volume = sitk.GetImageFromArray(image.astype(np.float32))
        volume.SetSpacing([float(s) for s in spacing])
        sitk.WriteImage(volume, str(folder / f"sample_{i:03d}{suffix}"), useCompression=True)
    middle = images if prep.dims == 2 else images[:, images.shape[1] // 2]
    sitk.WriteImage(sitk.GetImageFromArray(tile_grid(to_uint8(middle))), str(folder / "samples.png"))
