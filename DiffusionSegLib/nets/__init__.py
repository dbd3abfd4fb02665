"""The diffusion U-Net (MONAI DiffusionModelUNet): presets, construction, weight transfer, and the
fixed-timestep form a task network takes.

The presets are torch-free; the network classes are imported on first use (PEP 562), so that
``from DiffusionSegLib.nets.presets import PRESETS`` (the command line's parser) does not load torch.
"""

from __future__ import annotations

import importlib

from .presets import PRESETS, NetworkConfig, network_config

_LAZY = {"FixedTimestepUNet": ".fixed_timestep", "build_unet": ".unet", "check_fits": ".unet",
         "copy_matching_weights": ".unet"}

__all__ = ["FixedTimestepUNet", "PRESETS", "NetworkConfig", "network_config", "build_unet", "check_fits",
           "copy_matching_weights"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
