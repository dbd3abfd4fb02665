"""Segmentation labels: Slicer ``.seg.nrrd`` files (via slicerio) and label maps.

In memory a label is a uint8 ``SimpleITK.Image`` on its image's grid: numpy ``(H, W)``
or ``(D, H, W)``, 0 background, value ``i + 1`` for ``classes[i]``.
"""

from .grid import Grid
from .overlay import write_overlay_png
from .reading import LabelRead, class_names_from, is_seg_nrrd, load_segmentation, read_segmentation
from .writing import write_labelmap, write_seg_nrrd

__all__ = [
    "Grid", "LabelRead", "class_names_from", "is_seg_nrrd", "load_segmentation", "read_segmentation",
    "write_labelmap", "write_overlay_png", "write_seg_nrrd",
]
