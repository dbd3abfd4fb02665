"""One pooled feature vector (and, for a fine-tuned model, an uncertainty) per image.

Features: the U-Net's bottleneck (``middle_block``) and every decoder block (``up_blocks``),
each averaged over space (global average pooling), concatenated: ``F = sum of those blocks'
channels`` (for the small preset 128 + 128 + 128 + 64 + 32 = 480).

- a DDPM-pretrained model: the probe's recipe (probe/features.py) at one small noise level:
  the image noised to timestep :data:`FEATURE_TIMESTEP` with one fixed noise field (seed
  :data:`NOISE_SEED`, so features repeat exactly), coordinates (if any) kept clean;
- a masked-image-modelling model: the clean image at timestep 0 (how it was trained);
- a fine-tuned model: its own U-Net in the forward pass that predicts (clean image, its fixed
  timestep; a probing model: its frozen backbone at its probe timesteps).

Input grid: the whole image resampled to the model's patch size (``resample_to_size``): for 2D
models that is the training size itself; for 3D models it is a downsampled whole volume (one
forward pass per volume, whatever its size). Uncertainty (fine-tuned models, see
:mod:`.uncertainty`) is measured on the grid ``predict`` uses (3D: sliding windows).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from ..data.preprocess import Preprocessing
from ..diffusion import DiffusionConfig, make_scheduler
from ..errors import UserError
from ..imageio import resample_to_size
from ..nets import NetworkConfig, build_unet
from ..modelconfig import TASK_KINDS, ModelConfig
from ..predict.engine import LoadedModel, load_task_model
from ..training.checkpoint import WEIGHTS_NAME, fit_weights, load_model_config, load_weights
from ..training.device import Precision, choose_device
from .uncertainty import TTA_SETTINGS, measure_uncertainty

FEATURE_TIMESTEP = 25
NOISE_SEED = 0


class PooledBlocks:
    """Forward hooks on ``unet.middle_block`` and ``unet.up_blocks`` that keep each output's spatial mean.

    Only inside :meth:`capture`; :meth:`take` gives ``(N, F)`` and the blocks' widths.
    """

    def __init__(self, unet: nn.Module):
        self._on = False
        self._pooled: list[torch.Tensor] = []
        for block in [unet.middle_block, *unet.up_blocks]:
            block.register_forward_hook(self._hook)

    def _hook(self, _module, _inputs, out) -> None:
        if self._on:
            self._pooled.append(out.float().flatten(2).mean(-1))   # (N, C)

    @contextmanager
    def capture(self):
        self._pooled, self._on = [], True
        try:
            yield self
        finally:
            self._on = False

    def take(self) -> tuple[np.ndarray, list[int]]:
        widths = [int(p.shape[1]) for p in self._pooled]
        return torch.cat(self._pooled, 1).cpu().numpy(), widths


@dataclass
class Extractor:
    """A model ready to describe images: ``describe(image) -> (features (F,), widths, info)``."""

    model_dir: Path
    config: ModelConfig
    preprocessing: Preprocessing
    pooled: PooledBlocks
    device: torch.device
    precision: Precision
    denoiser: nn.Module | None = None          # pretrained models
    timestep: int = 0
    noised: bool = False
    alphas_cumprod: torch.Tensor | None = None
    task: LoadedModel | None = None             # fine-tuned models
    recipe: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def weights(self) -> Path:
        return Path(self.model_dir) / WEIGHTS_NAME

    def feature_grid(self, image: sitk.Image) -> sitk.Image:
        return resample_to_size(image, self.preprocessing.patch_size)

    @torch.no_grad()
    def describe(self, image: sitk.Image) -> tuple[np.ndarray, list[int], dict]:
        prep = self.preprocessing
        grid = self.feature_grid(image)
        x = torch.from_numpy(prep.network_input(grid))[None].to(self.device)
        output = None
        with self.precision.autocast(), self.pooled.capture():
            if self.task is not None:
                output = self.task.network(x)[0].float().cpu().numpy()
            else:
                net_in = x
                if self.noised:
                    noise = torch.randn((1, 1, *x.shape[2:]), generator=torch.Generator().manual_seed(NOISE_SEED))
                    a = self.alphas_cumprod[self.timestep]
                    net_in = torch.cat([a.sqrt() * x[:, :1] + (1 - a).sqrt() * noise.to(x.device), x[:, 1:]], 1)
                self.denoiser(net_in, torch.full((1,), self.timestep, device=self.device, dtype=torch.long))
        features, widths = self.pooled.take()
        info: dict = {}
        if self.task is not None:
            # 2D models resized to their patch: the feature pass is also the uncertainty's identity pass.
            same = prep.image_size is not None and list(prep.image_size) == list(prep.patch_size)
            info = measure_uncertainty(self.task, image, identity=output if same else None)
        return features[0], widths, info


def load_extractor(model_dir: Path, device: str = "auto", precision: str = "auto") -> Extractor:
    """The feature extractor of a pretrained, segmentation or landmark model folder."""
    model_dir = Path(model_dir)
    config = load_model_config(model_dir)
    kind = config.kind
    if kind in TASK_KINDS:
        task = load_task_model(model_dir, device, precision)
        net = task.network
        unet = net.unet if hasattr(net, "unet") else net.features.unet
        recipe = {"kind": kind, "grid": "patch_size", "uncertainty": TTA_SETTINGS}
        return Extractor(model_dir, config, task.preprocessing, PooledBlocks(unet), task.device, task.precision,
                         task=task, recipe=recipe)
    if kind != "pretrained":
        raise UserError(f"this is a {kind} model; suggest needs a pretrained, segmentation or landmark model.",
                        path=model_dir, fix="pass the folder that `diffusionseg pretrain` or `finetune` wrote.")
    try:
        unet = build_unet(NetworkConfig.from_dict(config.network.to_dict()))
        prep = Preprocessing.from_dict(config.preprocessing.to_dict())
        objective = config.pretrain_objective
        alphas = make_scheduler(DiffusionConfig.from_dict(config.diffusion.to_dict())).alphas_cumprod \
            if objective == "ddpm" else None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"config.json does not describe a network this version can build ({type(exc).__name__}: "
                        f"{exc}).", path=model_dir / "config.json",
                        fix="restore the model folder from its original copy, or pretrain it again.") from exc
    fit_weights(unet, load_weights(model_dir), model_dir)
    dev = choose_device(device)
    unet.to(dev).eval()
    noised = objective == "ddpm"
    timestep = FEATURE_TIMESTEP if noised else 0
    recipe = {"kind": kind, "grid": "patch_size", "timestep": timestep, "noised": noised, "noise_seed": NOISE_SEED}
    return Extractor(model_dir, config, prep, PooledBlocks(unet), dev, Precision.choose(dev, precision),
                     denoiser=unet, timestep=timestep, noised=noised, alphas_cumprod=alphas, recipe=recipe)
