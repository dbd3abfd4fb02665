"""The DDPM objective (MONAI DDPMScheduler) and sampling."""

from .ddpm import DiffusionConfig, ddpm_loss, make_scheduler
from .sampling import SAMPLERS, sample_images

__all__ = ["DiffusionConfig", "ddpm_loss", "make_scheduler", "sample_images", "SAMPLERS"]
