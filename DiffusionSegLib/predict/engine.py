"""Loading a fine-tuned model and running it on one image, in that image's own geometry."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.preprocess import Preprocessing
from ..errors import UserError
from ..nets.fixed_timestep import FixedTimestepUNet
from ..nets import NetworkConfig, build_unet
from ..nets.fast import FastOptions
from ..probe import build_probe_network
from ..modelconfig import TASK_KINDS, ModelConfig
from ..training.checkpoint import fit_weights, load_model_config, load_weights
from ..training.device import Precision, choose_device
from .defaults import CPU_WINDOWS_PER_CALL, DEFAULT_OVERLAP, GPU_WINDOWS_PER_CALL
from .parallel import window_workers
from .windows import blended_slabs, inference_window


@dataclass
class LoadedModel:
    config: ModelConfig
    network: torch.nn.Module   # FixedTimestepUNet, or a ProbeNetwork: (N, C_in, *S) -> (N, C, *S)
    preprocessing: Preprocessing
    device: torch.device
    precision: Precision
    fast: FastOptions = FastOptions()

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def downsampling_factor(self) -> int:
        """Every side of a network input must divide by this (see ``NetworkConfig``)."""
        return NetworkConfig.from_dict(self.config.network.to_dict()).downsampling_factor


def load_task_model(model_dir: Path, device: str = "auto", precision: str = "auto", fast: bool = False
                    ) -> LoadedModel:
    """A fine-tuned model ready for inference (weights from safetensors, never pickle).

    ``fast``: mixed precision, channels-last and torch.compile (``nets/fast.py``).
    """
    config = load_model_config(model_dir)
    if config.kind not in TASK_KINDS:
        raise UserError(f"this is a {config.kind} model, which cannot predict.", path=model_dir,
                        fix="fine-tune it first (`diffusionseg finetune`) and predict with the fine-tuned folder.")
    try:
        network = NetworkConfig.from_dict(config.network.to_dict())
        if config.head == "full":
            net = FixedTimestepUNet(build_unet(network), config.timestep)
        else:  # probing: the frozen backbone plus its head, rebuilt from plain data
            probe = config.probe.to_dict()
            net = build_probe_network(network, probe["diffusion"], probe["out_channels"], probe)
        preprocessing = Preprocessing.from_dict(config.preprocessing.to_dict())
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"config.json does not describe a network this version can build ({type(exc).__name__}: "
                        f"{exc}).", path=Path(model_dir) / "config.json",
                        fix="restore the model folder from its original copy, or fine-tune it again.") from exc
    fit_weights(net, load_weights(model_dir), model_dir)
    dev = choose_device(device)
    options = FastOptions.choose(fast)
    net = options.prepare(net.to(dev).eval(), preprocessing.dims)
    return LoadedModel(config, net, preprocessing, dev, Precision.choose(dev, options.precision(precision)), options)


#: Network inputs with more values than this are kept in float16 between windows (64 MB in float32).
HALF_INPUT_ABOVE = 2**24


def output_slabs(model: LoadedModel, grid_pixels: np.ndarray, overlap: float = DEFAULT_OVERLAP,
                 windows: bool | None = None, max_window_voxels: int | None = None
                 ) -> Iterator[tuple[int, torch.Tensor]]:
    """Raw network output of one preprocessed image, as finished slabs of the first axis.

    An image of the training patch's shape (2D images resized to the training size) takes
    one forward pass. Otherwise (3D, or a 2D image larger than the patch) overlapping
    windows, Gaussian-weighted, are blended (``windows.blended_slabs``); the window grows
    past the training patch up to ``max_window_voxels`` (``windows.inference_window``).

    Args:
        grid_pixels: ``(C_in, *S)`` network input on the network grid (the normalised
            image and any coordinate channels, see ``Preprocessing.network_input``),
            or a single-channel ``(*S)``.
        windows: force (True) or forbid (False) the sliding-window path; None decides
            by shape.
        max_window_voxels: None slides windows of the training patch's size.
    Yields:
        ``(row, slab)``: ``slab`` is ``(C, R, *S[1:])`` float32 on the CPU for rows
        ``row .. row + R - 1``; the slabs cover ``S[0]`` once, in order.
    """
    x = torch.from_numpy(np.ascontiguousarray(grid_pixels, dtype=np.float32))
    x = (x if x.ndim == model.preprocessing.dims + 1 else x[None]).to(model.device)
    patch = model.preprocessing.patch_shape
    windowed = not (windows is False or (windows is None and tuple(x.shape[1:]) == tuple(patch)))
    if windowed and x.numel() > HALF_INPUT_ABOVE:
        # Why float16: the whole input stays in memory while windows slide; half of it is a
        # CT's 300 MB, and 2^-12 of the [-1, 1] range (0.25 HU in a 2000 HU window) is far
        # below image noise. Each batch of windows goes back to float32. Smaller inputs stay
        # float32, so their windows reproduce a whole-volume pass exactly.
        x = x.half()
        del grid_pixels

    memory_format = model.fast.memory_format(model.preprocessing.dims)

    @torch.no_grad()
    def predict(batch: torch.Tensor) -> torch.Tensor:
        with model.precision.autocast():
            return model.network(batch.float().contiguous(memory_format=memory_format))

    if not windowed:
        yield 0, predict(x[None])[0].float().cpu()
        return
    window = inference_window(x.shape[1:], patch, model.downsampling_factor, max_window_voxels, overlap)
    batch = CPU_WINDOWS_PER_CALL if model.device.type == "cpu" else GPU_WINDOWS_PER_CALL
    for row, slab in blended_slabs(predict, x, window, overlap, batch, window_workers(model.device)):
        yield row, slab.cpu()


def network_output(model: LoadedModel, grid_pixels: np.ndarray, overlap: float = DEFAULT_OVERLAP,
                   windows: bool | None = None, max_window_voxels: int | None = None) -> np.ndarray:
    """The whole ``(C, *S)`` float32 output of :func:`output_slabs` (landmark heatmaps, uncertainty).

    Segmentation does not call this: it turns each slab into probabilities as it comes.
    """
    out = None
    for row, slab in output_slabs(model, grid_pixels, overlap, windows, max_window_voxels):
        if out is None:
            out = np.empty((slab.shape[0], *np.shape(grid_pixels)[-model.preprocessing.dims:]), np.float32)
        out[:, row:row + slab.shape[1]] = slab.numpy()
    return out
