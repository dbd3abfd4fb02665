"""Loading a fine-tuned model and running it on one image, in that image's own geometry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.inferers import sliding_window_inference

from ..data.preprocess import Preprocessing
from ..errors import UserError
from ..finetune.network import FixedTimestepUNet
from ..nets import NetworkConfig, build_unet
from ..probe import build_probe_network
from ..modelconfig import TASK_KINDS, ModelConfig
from ..training.checkpoint import fit_weights, load_model_config, load_weights
from ..training.device import Precision, choose_device


@dataclass
class LoadedModel:
    config: ModelConfig
    network: torch.nn.Module   # FixedTimestepUNet, or a ProbeNetwork: (N, C_in, *S) -> (N, C, *S)
    preprocessing: Preprocessing
    device: torch.device
    precision: Precision

    @property
    def kind(self) -> str:
        return self.config.kind


def load_task_model(model_dir: Path, device: str = "auto", precision: str = "auto") -> LoadedModel:
    """A fine-tuned model ready for inference (weights from safetensors, never pickle)."""
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
    net.to(dev).eval()
    return LoadedModel(config, net, preprocessing, dev, Precision.choose(dev, precision))


@torch.no_grad()
def network_output(model: LoadedModel, grid_pixels: np.ndarray, overlap: float = 0.5,
                   windows: bool | None = None) -> np.ndarray:
    """Raw network output ``(C, *S)`` for one preprocessed image ``(C_in, *S)`` (or ``(*S)``).

    2D images resized to the training size take one forward pass. Otherwise (3D, or
    an image larger than the training patch) MONAI's sliding-window inference with
    ``overlap`` and Gaussian weighting averages overlapping patches; images smaller
    than the patch are padded and cropped back by MONAI.

    Args:
        grid_pixels: ``(C_in, *S)`` network input on the network grid (the normalised
            image and any coordinate channels, see ``Preprocessing.network_input``),
            or a single-channel ``(*S)``.
        windows: force (True) or forbid (False) the sliding-window path; None decides
            by shape.
    Returns:
        ``(C, *S)`` float32.
    """
    x = torch.from_numpy(np.ascontiguousarray(grid_pixels, dtype=np.float32))
    x = (x[None] if x.ndim == model.preprocessing.dims + 1 else x[None, None]).to(model.device)
    patch = model.preprocessing.patch_shape
    with model.precision.autocast():
        if windows is False or (windows is None and tuple(x.shape[2:]) == tuple(patch)):
            out = model.network(x)
        else:
            out = sliding_window_inference(x, roi_size=patch, sw_batch_size=4, predictor=model.network,
                                           overlap=overlap, mode="gaussian", padding_mode="replicate")
    return out[0].float().cpu().numpy()


def on_grid(array: np.ndarray, grid: sitk.Image) -> sitk.Image:
    """``(C, *S)`` channels as a vector image with ``grid``'s geometry."""
    channels_last = np.moveaxis(array, 0, -1).astype(np.float32)
    image = sitk.GetImageFromArray(channels_last, isVector=True)
    image.CopyInformation(grid)
    return image
