"""The probing task network: frozen pretrained U-Net features read by a trainable head."""

from __future__ import annotations

import torch
from torch import nn

from ..diffusion import DiffusionConfig, make_scheduler
from ..nets import NetworkConfig, build_unet
from .features import DecoderFeatures
from .heads import ConvHead, PixelMLPEnsemble

PROBE_MODES = ("probe", "mlp")
DEFAULT_TIMESTEPS = (10, 30, 60)


class ProbeNetwork(nn.Module):
    """``(N, 1 + K, *S) -> (N, C, *S)``: features of the frozen backbone, then the head.

    Only the head has trainable parameters; ``training_logits`` is what the loss sees
    (one set of logits for the convolutional head, each member's for the MLP ensemble).
    """

    def __init__(self, features: DecoderFeatures, head: nn.Module):
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def training_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits ``(N, C, *S)`` to put the loss on: one per ensemble member, or the head's."""
        feats = self.features(x)
        if isinstance(self.head, PixelMLPEnsemble):
            return list(self.head.member_logits(feats))
        return [self.head(feats)]


def build_probe_network(backbone: NetworkConfig, diffusion: dict, out_channels: int, probe: dict) -> ProbeNetwork:
    """A probing network from plain data (the model's config.json), weights not yet loaded.

    Args:
        backbone: the pretrained U-Net's configuration (its own output layer kept, unused).
        diffusion: the pretraining's ``DiffusionConfig`` as a dict (for the noise schedule).
        out_channels: classes + 1 (segmentation) or landmarks.
        probe: ``{"mode": "probe"|"mlp", "timesteps": [...], "noise_seed": int,
            "blocks": [...]|None, "members": int, "hidden": int}``.
    """
    scheduler = make_scheduler(DiffusionConfig.from_dict(diffusion))
    unet = build_unet(backbone)
    features = DecoderFeatures(unet, scheduler.alphas_cumprod, probe["timesteps"], probe["noise_seed"],
                               probe.get("blocks"))
    dims = backbone.spatial_dims
    if probe["mode"] == "mlp":
        head = PixelMLPEnsemble(dims, features.channels, out_channels, members=probe["members"])
    else:
        head = ConvHead(dims, features.channels, out_channels, hidden=probe["hidden"])
    return ProbeNetwork(features, head)
