"""The probing task network: frozen pretrained U-Net features read by a trainable head."""

from __future__ import annotations

import torch
from torch import nn

from ..diffusion import DiffusionConfig, make_scheduler
from ..nets import NetworkConfig, build_unet
from .features import DecoderFeatures
from ..vocabulary import PROBE_MODES  # noqa: F401  (re-exported)
from .heads import ConvHead, PixelMLPEnsemble

DEFAULT_TIMESTEPS = (10, 30, 60)
PIXELS_PER_IMAGE = 4096   # pixels per image and step that the MLP ensemble trains on


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

    def training_outputs(self, x: torch.Tensor, label: torch.Tensor, seed: int,
                         pixels: int = PIXELS_PER_IMAGE) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(logits, label) pairs to put the loss on: the head's, or one per ensemble member.

        Args:
            x: ``(N, 1 + K, *S)`` network input; label: ``(N, 1, *S)`` class indices.
            seed: chooses the pixels the MLP ensemble trains on (a function of the step).
        Returns:
            conv head: ``[((N, C, *S), (N, 1, *S))]``; MLP ensemble: one pair per member on
            ``pixels`` sampled pixels per image, shaped ``(N, C, P, 1[, 1])`` and ``(N, 1, P, 1[, 1])``.
        """
        feats = self.features(x)
        if not isinstance(self.head, PixelMLPEnsemble):
            return [(self.head(feats), label)]
        flat = feats.flatten(2)
        count = min(pixels, flat.shape[-1])
        generator = torch.Generator().manual_seed(int(seed))
        index = torch.stack([torch.randperm(flat.shape[-1], generator=generator)[:count]
                             for _ in range(x.shape[0])]).to(x.device)
        trailing = (1,) * (x.ndim - 3)
        picked = flat.gather(2, index[:, None].expand(-1, flat.shape[1], -1)).reshape(*flat.shape[:2], count,
                                                                                      *trailing)
        picked_label = label.flatten(2).gather(2, index[:, None]).reshape(label.shape[0], 1, count, *trailing)
        return [(logits, picked_label) for logits in self.head.member_logits(picked)]


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
