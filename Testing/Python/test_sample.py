"""Sampling a pretrained model writes a grid and the images."""

from __future__ import annotations

import SimpleITK as sitk
import pytest

from DiffusionSegLib.diffusion.draw import sample_model
from DiffusionSegLib.errors import UserError
from DiffusionSegLib.pretrain.run import pretrain
from test_pretrain import blob_images, options


def test_sample_writes_grid_and_images(tmp_path):
    images = blob_images(tmp_path / "images", n=4)
    model = tmp_path / "model"
    pretrain(options(images, model, iterations=2))
    out = tmp_path / "samples"
    summary = sample_model(model, out, count=4, steps=3, device="cpu", progress="none")
    grid = sitk.ReadImage(str(out / "samples.png"))
    assert grid.GetSize() == (32 * 2 + 2, 32 * 2 + 2)
    assert len(list(out.glob("sample_*.nrrd"))) == 4
    assert summary["count"] == 4
    with pytest.raises(UserError, match="not empty"):
        sample_model(model, out, count=1, steps=1, device="cpu", progress="none")
