"""Prediction with a fine-tuned model: one forward pass (2D) or overlapping sliding windows (3D)."""
