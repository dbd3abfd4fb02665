"""Datasets that stream from disk, deterministic distributed sampling, augmentation."""
