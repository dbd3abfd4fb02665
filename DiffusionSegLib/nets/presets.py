"""Network presets, from a CPU-test size to the size the papers use.

A preset fixes the U-Net's width, depth and attention; the spatial dimensionality and
the channel counts come from the data and the task. The whole configuration is plain
data (:class:`NetworkConfig`), saved in every model's config.json so that a model can
be rebuilt without code from the run that trained it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import UserError
from ..vocabulary import PLAIN_PRESET, Architecture

# Why these sizes: "tiny" trains in seconds on a CPU (tests, the demo); "small" is the
# size measured on JSRT at 64x64 on 2 cores; "base" follows the improved-diffusion
# U-Net the PTDR and landmark papers use (128-256 channels, attention at 1/8 and 1/16
# resolution, two residual blocks per level), for a GPU.
PRESETS: dict[str, dict] = {
    "tiny": dict(channels=(16, 32, 64), attention_levels=(False, False, True), num_res_blocks=1,
                 norm_num_groups=8, num_head_channels=16),
    "small": dict(channels=(32, 64, 128, 128), attention_levels=(False, False, False, True),
                  num_res_blocks=1, norm_num_groups=16, num_head_channels=32),
    "base": dict(channels=(128, 128, 256, 256, 512), attention_levels=(False, False, False, True, True),
                 num_res_blocks=2, norm_num_groups=32, num_head_channels=64),
    # Not a diffusion U-Net: MONAI's BasicUNet at its default widths (the last is the decoder's
    # output width), instance norm, no timestep input, so never pretrained (nets/plain.py).
    # Why it is a preset: it is the plain supervised U-Net of the benchmarks, which on the 3D
    # hippocampus beats every DiffusionSeg variant measured so far at N = 1 (benchmarks/results/
    # RESULTS.md); a user with 3D volumes should be able to train it in the same panel.
    PLAIN_PRESET: dict(architecture=Architecture.BASICUNET.value, channels=(32, 32, 64, 128, 256, 32),
                        # unused by BasicUNet; kept so every preset fills the same NetworkConfig fields
                        attention_levels=(False,) * 6, num_res_blocks=1, norm_num_groups=1, num_head_channels=1),
}
#: The presets ``pretrain`` takes (a denoiser needs the diffusion U-Net's timestep input).
PRETRAIN_PRESETS = tuple(name for name, preset in PRESETS.items() if "architecture" not in preset)

#: A new network's preset when none is chosen, by spatial dims. 2D: small, the recipe every JSRT
#: and ISBI benchmark ran; on the JSRT validation split it beat tiny at 128x128 (the default before
#: session 12) by 1.8 / 2.5 mIoU at N = 1 / 2, and takes half the time per pretraining step
#: (benchmarks/results/RESULTS.md, session 12). 3D: tiny, what the hippocampus benchmarks ran (small
#: costs 3.5 times the time per 3D step on a CPU).
DEFAULT_PRESETS = {2: "small", 3: "tiny"}


@dataclass
class NetworkConfig:
    """Everything needed to rebuild a DiffusionModelUNet.

    ``in_channels`` counts the image channel plus any conditioning channels (for
    example body-part coordinates); ``out_channels`` is 1 (predicted noise) for a
    pretrained backbone, C classes for segmentation, N heatmaps for landmarks.
    ``architecture`` None is MONAI's DiffusionModelUNet (every model written before the
    field existed); ``"BasicUNet"`` (preset plain) reads only ``channels`` as its features.
    """

    spatial_dims: int
    in_channels: int
    out_channels: int
    preset: str
    channels: tuple[int, ...]
    attention_levels: tuple[bool, ...]
    num_res_blocks: int
    norm_num_groups: int
    num_head_channels: int
    extra: dict = field(default_factory=dict)
    architecture: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["channels"] = list(self.channels)
        data["attention_levels"] = list(self.attention_levels)
        if self.architecture is None:   # a diffusion U-Net's config.json stays as older versions wrote it
            del data["architecture"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "NetworkConfig":
        data = dict(data)
        data["channels"] = tuple(data["channels"])
        data["attention_levels"] = tuple(bool(a) for a in data["attention_levels"])
        return cls(**data)

    @property
    def is_plain(self) -> bool:
        """A BasicUNet (preset plain): no timestep input, so it cannot be pretrained or probed."""
        return self.architecture == Architecture.BASICUNET.value

    @property
    def downsampling_factor(self) -> int:
        """Each level after the first halves the image: sizes must divide by this. (BasicUNet's
        last width is its decoder's output, not a level.)"""
        return 2 ** (len(self.channels) - (2 if self.is_plain else 1))


def network_config(preset: str | None, spatial_dims: int, in_channels: int = 1, out_channels: int = 1
                   ) -> NetworkConfig:
    """The configuration of ``preset`` (None: ``DEFAULT_PRESETS``) for the given dimensionality and channels."""
    if preset is None and spatial_dims in DEFAULT_PRESETS:
        preset = DEFAULT_PRESETS[spatial_dims]
    if preset not in PRESETS:
        raise UserError(f"unknown preset '{preset}'.", fix=f"use --preset with one of {', '.join(PRESETS)}.")
    if spatial_dims not in (2, 3):
        raise UserError(f"spatial dims must be 2 or 3, not {spatial_dims}.", fix="use --dims 2 or --dims 3.")
    return NetworkConfig(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                         preset=preset, **PRESETS[preset])
