"""Building the MONAI DiffusionModelUNet and moving weights between task heads."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from monai.networks.nets import DiffusionModelUNet

from ..errors import UserError
from .presets import NetworkConfig


def build_unet(config: NetworkConfig) -> torch.nn.Module:
    """A DiffusionModelUNet for ``config`` (a ``plain.PlainUNet`` for preset plain).

    Input ``(N, in_channels, H, W[, D])`` and timesteps ``(N,)``; output
    ``(N, out_channels, H, W[, D])``. Attention uses PyTorch's fused
    scaled-dot-product kernel (MONAI's ``use_flash_attention``), which on CPU is
    also about 3x faster than the explicit softmax path (measured: 0.11 s against
    0.41 s for a tiny 2D forward and backward at 64x64).
    """
    if config.is_plain:
        from .plain import PlainUNet
        return PlainUNet(config)
    return DiffusionModelUNet(
        spatial_dims=config.spatial_dims,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        channels=tuple(config.channels),
        attention_levels=tuple(config.attention_levels),
        num_res_blocks=config.num_res_blocks,
        norm_num_groups=config.norm_num_groups,
        num_head_channels=config.num_head_channels,
        use_flash_attention=True,
    )


def check_fits(config: NetworkConfig, size: Sequence[int], option: str = "--image-size") -> None:
    """Raise a UserError unless every side of ``size`` divides by the U-Net's downsampling
    (preset plain: unless the bottleneck keeps more than one voxel).

    Args:
        size: the network input size, any axis order.
        option: the option the user sets the size with, named in the message.
    """
    factor = config.downsampling_factor
    if config.is_plain:
        # BasicUNet pads its decoder to the encoder's odd sizes, so any side of at least 16 fits;
        # but its instance norm at the bottleneck normalises over the voxels there: one gives 0 / 0.
        bottleneck = math.prod(s // factor for s in size)
        if min(size) < factor or bottleneck < 2:
            raise UserError(f"preset 'plain' halves the image {factor.bit_length() - 1} times and needs more than one "
                            f"voxel at 1/{factor} resolution; {list(size)} has {bottleneck}.",
                            fix=f"make every side of {option} at least {factor} and one at least {2 * factor}.")
        return
    bad = [s for s in size if s % factor or s < factor]
    if bad:
        fitted = [max(factor, int(round(s / factor)) * factor) for s in size]
        raise UserError(
            f"preset '{config.preset}' halves the image {factor.bit_length() - 1} times, so every image side "
            f"must be a multiple of {factor}; {list(size)} is not.",
            fix=f"use {option} {' '.join(str(s) for s in fitted)}, or a preset with fewer levels.",
        )


def copy_matching_weights(source: Mapping[str, torch.Tensor], model: torch.nn.Module) -> tuple[list[str], list[str]]:
    """Copy every tensor of ``source`` whose name and shape match one of ``model``.

    This is how a pretrained denoiser becomes a segmentation or landmark network:
    everything transfers except the output layer, whose shape changes with the
    number of classes (and any input layer whose channel count changed).

    Returns:
        (copied names, names of ``model`` left at their initial values)
    """
    own = model.state_dict()
    copied, kept = [], []
    for name, tensor in own.items():
        other = source.get(name)
        if other is not None and tuple(other.shape) == tuple(tensor.shape):
            own[name] = other.to(dtype=tensor.dtype)
            copied.append(name)
        else:
            kept.append(name)
    if not copied:
        raise UserError("no pretrained weight matches this network.",
                        fix="fine-tune from a model pretrained with the same preset and dimensionality.")
    model.load_state_dict(own)
    return copied, kept
