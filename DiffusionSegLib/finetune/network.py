"""The task network: the pretrained U-Net with a new output layer, run at one fixed timestep.

PTDR fine-tunes the whole denoiser as a segmenter: same architecture, a C-class output
layer instead of the noise prediction, the clean image as input and a constant
timestep. The landmark paper does the same with N heatmap channels and the timestep
embedding removed; a constant timestep is that (its embedding becomes a learned bias).
"""

from __future__ import annotations

import torch
from torch import nn

from ..nets import FixedTimestepUNet, NetworkConfig, build_unet, copy_matching_weights


def reset_output_layer(unet: nn.Module) -> None:
    """Give the output convolution an ordinary random initialisation.

    Why: MONAI zero-initialises the output layer (right for a denoiser, which should start
    by predicting no noise). A zero head receives gradients only through itself at first,
    and at the papers' learning rate (1e-4) it barely moves in a few hundred steps: on
    JSRT both pretrained and random networks then collapsed to about 14 mIoU.
    """
    for module in unet.out.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d)) and module.out_channels == unet.out_channels:
            module.reset_parameters()


def task_network(config: NetworkConfig, timestep: int, pretrained: dict[str, torch.Tensor] | None
                 ) -> tuple[FixedTimestepUNet, list[str]]:
    """Build the task network and copy every pretrained weight whose name and shape match.

    Args:
        config: the task's network (``out_channels`` = classes or landmarks).
        pretrained: the pretrained model's EMA weights, or None for random initialisation.
    Returns:
        (network, names of the weights that were not pretrained).
    """
    unet = build_unet(config)
    fresh = list(unet.state_dict())
    if pretrained is not None:
        _, fresh = copy_matching_weights(pretrained, unet)
    reset_output_layer(unet)
    return FixedTimestepUNet(unet, timestep), fresh
