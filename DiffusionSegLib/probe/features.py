"""Multi-timestep decoder features of a frozen diffusion U-Net.

The diffusion papers' observation: a denoiser's decoder activations, taken after adding
a little noise to the image, are semantic features; several noise levels together
describe the image better than any one. The noise is drawn from a fixed seed so that
prediction repeats exactly, and it depends only on the window's shape, so a sliding
window over a volume the size of the window equals the whole-volume pass.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class DecoderFeatures(nn.Module):
    """``(N, 1 + K, *S) -> (N, F, *S)``: frozen U-Net decoder features at several timesteps.

    Args:
        unet: a pretrained MONAI DiffusionModelUNet (frozen here: no gradients, eval mode).
        alphas_cumprod: ``(T,)`` the pretraining schedule's cumulative alphas.
        timesteps: noise levels at which features are taken (the paper: 10, 30, 60).
        noise_seed: seed of the one noise field shared by every image and window.
        blocks: indices of ``unet.up_blocks`` whose outputs are used (None: all).
    F = len(timesteps) * sum of the chosen blocks' output channels; every block's output is
    upsampled (linearly) to the input size ``S``. Channel 0 of the input is the image (the
    only channel noised); channels 1..K are coordinates, passed through clean.
    """

    def __init__(self, unet: nn.Module, alphas_cumprod: torch.Tensor, timesteps: Sequence[int],
                 noise_seed: int = 0, blocks: Sequence[int] | None = None):
        super().__init__()
        self.unet = unet
        for p in self.unet.parameters():
            p.requires_grad_(False)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float().clone(), persistent=False)
        self.timesteps = [int(t) for t in timesteps]
        self.noise_seed = int(noise_seed)
        self.blocks = list(range(len(unet.up_blocks))) if blocks is None else [int(b) for b in blocks]
        self.channels = len(self.timesteps) * sum(_block_channels(unet, b) for b in self.blocks)
        # Per thread: prediction runs several sliding windows at once on a CPU (predict/parallel.py),
        # each on its own thread, and each call must read back only its own blocks' outputs.
        self._local = threading.local()
        for b in self.blocks:
            unet.up_blocks[b].register_forward_hook(
                lambda _m, _i, out: getattr(self._local, "captured", []).append(out))

    def train(self, mode: bool = True) -> "DecoderFeatures":
        # The backbone stays in eval mode whatever the head does: it is a fixed feature extractor.
        super().train(mode)
        self.unet.eval()
        return self

    def noise(self, shape: Sequence[int], device: torch.device) -> torch.Tensor:
        """The fixed noise field ``(1, *shape)`` (drawn on the CPU so every device agrees)."""
        generator = torch.Generator().manual_seed(self.noise_seed)
        return torch.randn((1, *shape), generator=generator).to(device)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image, condition = x[:, :1], x[:, 1:]
        size = tuple(x.shape[2:])
        noise = self.noise(size, x.device)
        mode = "bilinear" if len(size) == 2 else "trilinear"
        features = []
        for t in self.timesteps:
            a = self.alphas_cumprod[t]
            noisy = a.sqrt() * image + (1 - a).sqrt() * noise
            net_in = torch.cat([noisy, condition], dim=1) if condition.shape[1] else noisy
            self._local.captured = []
            self.unet(net_in, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long))
            for out in self._local.captured:
                features.append(out if tuple(out.shape[2:]) == size
                                else F.interpolate(out.float(), size=size, mode=mode, align_corners=False))
        self._local.captured = []
        return torch.cat([f.float() for f in features], dim=1)


def _block_channels(unet: nn.Module, block: int) -> int:
    """Output channels of ``unet.up_blocks[block]`` (MONAI lists the decoder's channels in reverse)."""
    channels = list(reversed(unet.block_out_channels))
    return int(channels[block])
