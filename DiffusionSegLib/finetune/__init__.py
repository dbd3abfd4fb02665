"""Few-shot fine-tuning of a pretrained diffusion U-Net for segmentation (PTDR) or landmarks."""
