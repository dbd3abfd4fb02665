"""DiffusionSegLib: the DiffusionSeg backend.

Diffusion (DDPM) pretraining of a MONAI U-Net on unlabeled medical images, then
few-shot fine-tuning for segmentation or landmark detection, in 2D and 3D.
Files in, files out; this package never imports slicer, qt, ctk or vtk.
"""

__version__ = "0.1.0"
