"""The diffusion U-Net (MONAI DiffusionModelUNet): presets, construction, weight transfer, and the
fixed-timestep form a task network takes."""

from .fixed_timestep import FixedTimestepUNet
from .presets import PRESETS, NetworkConfig, network_config
from .unet import build_unet, check_fits, copy_matching_weights

__all__ = ["FixedTimestepUNet", "PRESETS", "NetworkConfig", "network_config", "build_unet", "check_fits",
           "copy_matching_weights"]
