"""Frozen-backbone segmentation: decoder features of the pretrained U-Net at a few noise levels,
read by a small convolutional head (probing) or a pixel-MLP ensemble (Baranchuk et al.)."""

from .network import PROBE_MODES, ProbeNetwork, build_probe_network

__all__ = ["PROBE_MODES", "ProbeNetwork", "build_probe_network"]
