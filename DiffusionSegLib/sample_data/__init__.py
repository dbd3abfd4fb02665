"""Sample data: deterministic synthetic phantoms (2D chest radiographs, 3D abdominal
volumes) that the demo and the tests train on, written as a project folder."""

from DiffusionSegLib.sample_data.generate import generate_sample_dataset
from DiffusionSegLib.sample_data.phantoms import (
    CHEST_CLASSES,
    CHEST_COLORS,
    CHEST_LANDMARKS,
    VOLUME_CLASSES,
    VOLUME_COLORS,
    VOLUME_LANDMARKS,
    chest_phantom,
    volume_phantom,
)

__all__ = ["generate_sample_dataset", "chest_phantom", "volume_phantom", "CHEST_CLASSES", "CHEST_COLORS",
           "CHEST_LANDMARKS", "VOLUME_CLASSES", "VOLUME_COLORS", "VOLUME_LANDMARKS"]
