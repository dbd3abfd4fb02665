"""The DDPM objective (MONAI DDPMScheduler) and sampling.

The names below are imported on first use (PEP 562): ``diffusion.options`` (the command line's
parser) must not load torch by importing this package.
"""

from __future__ import annotations

import importlib

_LAZY = {"DiffusionConfig": ".ddpm", "ddpm_loss": ".ddpm", "make_scheduler": ".ddpm",
         "sample_images": ".sampling", "SAMPLERS": ".sampling"}

__all__ = ["DiffusionConfig", "ddpm_loss", "make_scheduler", "sample_images", "SAMPLERS"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
