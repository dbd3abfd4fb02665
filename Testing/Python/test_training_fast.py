"""``pretrain --fast`` and ``finetune --fast`` (nets/fast.py: bf16, channels-last, torch.compile) on the CPU:
the code path a GPU takes runs, still learns, resumes exactly and writes the same model files.

torch.compile runs with the "eager" backend here (the compile path without a C++ build); the
inductor backend is what ``benchmarks/flops.py`` measures.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DiffusionSegLib.finetune.run import FinetuneOptions, finetune
from DiffusionSegLib.nets import fast
from DiffusionSegLib.predict.run import PredictOptions, predict
from DiffusionSegLib.pretrain.run import pretrain
from DiffusionSegLib.training.checkpoint import load_weights
from blind_baselines import zero_noise_loss
from test_pretrain import blob_images, loss_rows, options


@pytest.fixture
def compiled(monkeypatch):
    """torch.compile with the eager backend, and the networks it was asked to compile."""
    calls = []
    real = torch.compile

    def spy(module, **kw):
        calls.append(type(module).__name__)
        return real(module, **kw)

    monkeypatch.setattr(fast, "COMPILE_BACKEND", "eager")
    monkeypatch.setattr(fast.torch, "compile", spy)
    return calls


def test_fast_pretraining_learns_resumes_and_writes_plain_weights(tmp_path, compiled):
    images = blob_images(tmp_path / "images", n=8)
    out = tmp_path / "fast"
    summary = pretrain(options(images, out, iterations=60, batch_size=8, learning_rate=1e-3, checkpoint_every=30,
                               fast=True))
    assert compiled == ["DiffusionModelUNet"] and summary["precision"] == "bf16"
    losses = loss_rows(out)
    assert np.mean(losses[-10:]) < 0.5 * zero_noise_loss((8, 1, 32, 32)), losses
    plain = tmp_path / "plain"
    pretrain(options(images, plain, iterations=3))
    a, b = load_weights(out), load_weights(plain)
    assert a.keys() == b.keys() and not any("_orig_mod" in k for k in a)   # the compiled wrapper leaves no trace
    assert all(a[k].shape == b[k].shape and a[k].is_contiguous() for k in a)

    # Resume with channels-last parameters and optimiser state: the same steps as a straight run.
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    pretrain(options(images, straight, iterations=6, fast=True))
    pretrain(options(images, interrupted, iterations=3, fast=True))
    pretrain(options(images, interrupted, iterations=6, fast=True, resume=True))
    a, b = load_weights(straight), load_weights(interrupted)
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_fast_finetuning_then_prediction(tmp_path, compiled):
    from DiffusionSegLib.sample_data import generate_sample_dataset

    generate_sample_dataset(tmp_path / "data", dims=2, n_cases=3, size=(48, 48), seed=0)
    model = tmp_path / "seg"
    summary = finetune(FinetuneOptions(task="segmentation", images=tmp_path / "data" / "images",
                                       annotations=tmp_path / "data" / "labels", out=model, classes=["a", "b", "c"],
                                       pretrained=None, preset="tiny", image_size=[32, 32], iterations=3,
                                       batch_size=2, checkpoint_every=3, device="cpu", progress="none", fast=True))
    assert compiled == ["FixedTimestepUNet"] and summary["steps"] == 3
    predict(PredictOptions(model=model, images=tmp_path / "data" / "images", out=tmp_path / "pred", device="cpu",
                           progress="none"))
    assert len(list((tmp_path / "pred").glob("*.seg.nrrd"))) == 3
