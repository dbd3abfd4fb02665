"""The diffusion U-Net (MONAI DiffusionModelUNet): presets, construction, weight transfer."""

from .presets import PRESETS, NetworkConfig, network_config
from .unet import build_unet, check_fits, copy_matching_weights

__all__ = ["PRESETS", "NetworkConfig", "network_config", "build_unet", "check_fits", "copy_matching_weights"]
