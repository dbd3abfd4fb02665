"""The lean prediction path (issue 16): sliding windows streamed by slab, confidence tallied by slab,
labels arg-maxed one class at a time; each equal to the whole-volume computation it replaces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.inferers import sliding_window_inference

from DiffusionSegLib.imageio import resample_like
from DiffusionSegLib.predict.argmax import StreamedLabelMap, label_map
from DiffusionSegLib.predict.confidence import ConfidenceTally, segmentation_confidence
from DiffusionSegLib.predict.defaults import MAX_WINDOW_VOXELS
from DiffusionSegLib.predict.windows import blended_slabs, inference_window, window_starts


def test_inference_window_grows_within_the_budget():
    patch = (32, 64, 64)
    # A CT at 1 mm: larger than the budget, so the window is the largest that fits...
    window = inference_window((90, 303, 366), patch, 4, MAX_WINDOW_VOXELS, overlap=0.25)
    assert all(w % 4 == 0 and w >= p for w, p in zip(window, patch))
    assert MAX_WINDOW_VOXELS // 2 < math.prod(window) <= MAX_WINDOW_VOXELS   # it grew
    # ...then cut to the fewest voxels that cover the image with as many windows.
    grown = inference_window((90, 303, 366), patch, 4, 2**30)   # budget: everything
    assert grown == (92, 304, 368)
    # A small volume: one window, its sides rounded up to the downsampling factor.
    assert inference_window((35, 50, 37), (32, 48, 32), 4, MAX_WINDOW_VOXELS) == (36, 52, 40)
    # Smaller than the training patch: the patch (the image is padded to it).
    assert inference_window((10, 20, 20), (16, 32, 32), 4, MAX_WINDOW_VOXELS) == (16, 32, 32)
    # None (the default): the training patch.
    assert inference_window((90, 303, 366), patch, 4) == patch
    # A patch above the budget is used as it is.
    assert inference_window((200, 200, 200), (128, 128, 128), 8, 2**16) == (128, 128, 128)


def test_inference_window_is_cut_to_cover_with_as_many_windows():
    # Two 64-row windows over 90 rows overlap by 38; two 52-row windows (overlap 0.25: steps
    # of 39) still cover the 90 rows, so the window is cut to 52 and no further.
    window = inference_window((90, 64, 64), (32, 64, 64), 4, 64 * 64 * 64, overlap=0.25)
    assert window == (52, 64, 64)
    starts = sorted({s[0] for s in window_starts((90, 64, 64), window, 0.25)})
    assert starts == [0, 38] and 38 + 52 >= 90
    assert len({s[0] for s in window_starts((90, 64, 64), (48, 64, 64), 0.25)}) == 3


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("overlap", [0.5, 0.25, 0.0])
@pytest.mark.parametrize("shape", [(24, 45, 37), (10, 40, 33)])   # the second is thinner than the window
def test_blended_slabs_equal_monai(shape, overlap, workers):
    """Same windows, weights and blend as MONAI's sliding_window_inference, handed out by slab,
    also with two calls of the network running at once (the CPU path)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.Tanh(),
                              torch.nn.Conv3d(4, 3, 3, padding=1)).eval()
    image = torch.randn(2, *shape)
    window = (16, 16, 16)
    with torch.no_grad():
        expected = sliding_window_inference(image[None], roi_size=window, sw_batch_size=3, predictor=net,
                                            overlap=overlap, mode="gaussian", padding_mode="replicate")[0]
        slabs = list(blended_slabs(net, image, window, overlap, batch=3, workers=workers))
    rows = [r for r, _ in slabs]
    assert rows == sorted(rows) and rows[0] == 0
    assert [r + s.shape[1] for r, s in slabs[:-1]] == rows[1:]   # contiguous, each row once
    got = torch.cat([s for _, s in slabs], 1)
    assert got.shape == expected.shape == (3, *shape)
    assert torch.allclose(got, expected, atol=1e-5)
    if shape[0] > window[0]:
        assert len(slabs) > 1   # streamed, not one whole-volume block


def test_confidence_tally_equals_the_whole_volume_measure():
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(0, 2, (3, 12, 20, 20)).astype(np.float32))
    probabilities = logits.softmax(0)
    tally = ConfidenceTally(["a", "b"])
    for r in range(0, 12, 5):
        tally.add(probabilities[:, r:r + 5])
    whole = segmentation_confidence(probabilities.numpy(), ["a", "b"])
    assert tally.result() == whole
    assert 0 < whole["foreground_fraction"] < 1 and whole["class_confidence"]["a"] is not None


def _old_labels(probabilities: np.ndarray, grid: sitk.Image, image: sitk.Image) -> np.ndarray:
    """The arg-max as predict wrote it before issue 16: all classes resampled as one vector image."""
    vector = sitk.GetImageFromArray(np.moveaxis(probabilities, 0, -1).astype(np.float32), isVector=True)
    vector.CopyInformation(grid)
    return sitk.GetArrayFromImage(resample_like(vector, image, "linear")).argmax(-1).astype(np.uint8)


def _image_and_grid(image_rows: int, grid_rows: int, flipped: bool = False) -> tuple[sitk.Image, sitk.Image]:
    """An image of ``image_rows`` x 21 x 17 voxels of 0.8 x 0.8 x 1.5 mm and a 1 mm network grid of ``grid_rows``
    x 17 x 14 over nearly the same field of view (some image points fall outside); ``flipped``: the grid's
    rows run against the image's (same field of view)."""
    image = sitk.GetImageFromArray(np.zeros((image_rows, 21, 17), np.int16))
    image.SetSpacing((0.8, 0.8, 1.5))
    image.SetOrigin((-3.0, 2.0, 5.0))
    grid = sitk.GetImageFromArray(np.zeros((grid_rows, 17, 14), np.float32))
    grid.SetSpacing((1.0, 1.0, 1.0))
    grid.SetOrigin((-2.9, 2.1, 5.2 + (grid_rows - 1 if flipped else 0)))
    if flipped:
        grid.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, -1))
    return image, grid


def test_label_map_one_class_at_a_time_equals_the_vector_argmax():
    rng = np.random.default_rng(1)
    image, grid = _image_and_grid(9, 14)
    probabilities = torch.from_numpy(rng.normal(0, 2, (4, 14, 17, 14)).astype(np.float32)).softmax(0).numpy()
    labels = sitk.GetArrayFromImage(label_map(probabilities, grid, image))
    assert labels.dtype == np.uint8 and labels.shape == (9, 21, 17)
    assert np.array_equal(labels, _old_labels(probabilities, grid, image))
    # On the network grid itself no resampling is done: the plain arg-max, also from float16.
    same = sitk.GetArrayFromImage(label_map(probabilities.astype(np.float16), grid, grid))
    assert (same == probabilities.argmax(0)).mean() > 0.999


def _stream(probabilities: np.ndarray, grid: sitk.Image, image: sitk.Image, cuts: list[int]
            ) -> tuple[np.ndarray, int]:
    """The streamed label map from slabs cut at ``cuts``, and the most network rows it held at once."""
    labels, held = StreamedLabelMap(grid, probabilities.shape, image), []
    append = labels.rows.append

    def counted(row, slab):   # rows held right after a slab arrives, before any block is written
        append(row, slab)
        held.append(sum(a.shape[1] for _, a in labels.rows.slabs))

    labels.rows.append = counted
    for start, stop in zip([0, *cuts], [*cuts, probabilities.shape[1]]):
        labels.add(start, probabilities[:, start:stop])
    return sitk.GetArrayFromImage(labels.result()), max(held)


@pytest.mark.parametrize("flipped", [False, True])
def test_streamed_label_map_equals_the_whole_volume_one(flipped):
    """Slabs of network rows give the very labels of the whole probabilities; on a grid whose rows run with the
    image's only a few rows are held at once, on one whose rows run against the image's all of them."""
    rng = np.random.default_rng(2)
    image, grid = _image_and_grid(40, 62, flipped)
    probabilities = torch.from_numpy(rng.normal(0, 2, (3, 62, 17, 14)).astype(np.float32)).softmax(0).numpy()
    whole = sitk.GetArrayFromImage(label_map(probabilities, grid, image))
    assert np.array_equal(whole, _old_labels(probabilities, grid, image))
    for cuts in ([5, 6, 19, 33, 34, 50], list(range(2, 62, 2))):
        streamed, most = _stream(probabilities, grid, image, cuts)
        assert np.array_equal(streamed, whole)
    # Slabs of 2 rows: a block of 16 image rows (24 mm) reads 27 network rows, held with the slab just in.
    assert most == 62 if flipped else most <= 27 + 2
    # The same grid: the plain arg-max of each block, streamed too.
    same, most = _stream(probabilities, grid, grid, list(range(4, 62, 4)))
    assert np.array_equal(same, probabilities.argmax(0)) and most <= 16 + 4


def test_streamed_label_map_refuses_rows_out_of_order_or_missing():
    grid = sitk.GetImageFromArray(np.zeros((8, 4, 4), np.float32))
    labels = StreamedLabelMap(grid, (2, 8, 4, 4), grid)
    labels.add(0, np.ones((2, 3, 4, 4), np.float16))
    with pytest.raises(ValueError, match="do not follow row 3"):
        labels.add(4, np.ones((2, 2, 4, 4), np.float16))
    with pytest.raises(RuntimeError, match="3 of 8"):
        labels.result()


@pytest.mark.parametrize("overlap, voxels, words", [(1.0, None, "--overlap 1.0"), (-0.1, None, "--overlap -0.1"),
                                                    (0.5, 0, "--window-voxels 0")])
def test_bad_window_options_are_one_clear_error(tmp_path, overlap, voxels, words):
    from DiffusionSegLib.errors import UserError
    from DiffusionSegLib.predict.run import PredictOptions, check_window_options

    opts = PredictOptions(model=tmp_path, images=tmp_path, out=tmp_path / "out", overlap=overlap,
                          max_window_voxels=voxels)
    with pytest.raises(UserError, match=words):
        check_window_options(opts)


@pytest.mark.parametrize("dims", [2, 3])
def test_fast_options_run_on_the_cpu(dims, monkeypatch):
    """--fast (bf16 autocast, channels-last, torch.compile) runs the same network to nearly the same output."""
    from DiffusionSegLib.nets import FixedTimestepUNet
    from DiffusionSegLib.nets import build_unet, network_config
    from DiffusionSegLib.nets import fast

    monkeypatch.setattr(fast, "COMPILE_BACKEND", "eager")   # the compile path without a C++ build
    options = fast.FastOptions.choose(True)
    assert options.precision("auto") == "bf16" and options.precision("fp32") == "fp32"
    assert fast.FastOptions.choose(False) == fast.FastOptions()
    torch.manual_seed(0)
    net = FixedTimestepUNet(build_unet(network_config("tiny", dims, out_channels=3)), 10).eval()
    x = torch.randn(2, 1, *([16] * dims))
    with torch.no_grad():
        plain = net(x)
        prepared = options.prepare(net, dims)
        assert isinstance(prepared, torch._dynamo.eval_frame.OptimizedModule)
        layout = x.contiguous(memory_format=options.memory_format(dims))
        kernel = next(p for p in net.parameters() if p.ndim == dims + 2 and p.shape[1] > 1)
        assert kernel.is_contiguous(memory_format=options.memory_format(dims)) and not kernel.is_contiguous()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = prepared(layout)
    assert out.dtype == torch.bfloat16 and out.shape == plain.shape
    assert torch.allclose(out.float(), plain, atol=0.1, rtol=0.1)


def test_predict_fast_and_grown_windows_end_to_end(tmp_path, monkeypatch):
    """`predict --fast` and `--window-voxels` through the whole path: a label map on the image's grid
    and the same labels (nearly) as the plain path."""
    from DiffusionSegLib.finetune.run import FinetuneOptions, finetune
    from DiffusionSegLib.nets import fast
    from DiffusionSegLib.predict.run import PredictOptions, predict
    from DiffusionSegLib.sample_data import generate_sample_dataset

    monkeypatch.setattr(fast, "COMPILE_BACKEND", "eager")
    generate_sample_dataset(tmp_path / "vol", dims=3, n_cases=2, size=(24, 40, 36), seed=0)
    model = tmp_path / "seg3d"
    finetune(FinetuneOptions(task="segmentation", images=tmp_path / "vol" / "images",
                             annotations=tmp_path / "vol" / "labels", out=model, classes=["a", "b"],
                             pretrained=None, preset="tiny", patch_size=[16, 16, 8], iterations=2, batch_size=1,
                             checkpoint_every=2, device="cpu", progress="none"))
    runs = {"plain": {}, "fast": {"fast": True}, "grown": {"max_window_voxels": 16 * 32 * 32}}
    labels = {}
    for name, extra in runs.items():
        predict(PredictOptions(model=model, images=tmp_path / "vol" / "images", out=tmp_path / name,
                               device="cpu", progress="none", **extra))
        files = sorted((tmp_path / name).glob("*.seg.nrrd"))
        assert len(files) == 2
        labels[name] = sitk.GetArrayFromImage(sitk.ReadImage(str(files[0])))
    image = sitk.ReadImage(str(sorted((tmp_path / "vol" / "images").iterdir())[0]))
    assert labels["plain"].shape[-3:] == tuple(reversed(image.GetSize()))
    assert (labels["fast"] == labels["plain"]).mean() > 0.95   # bf16 moves only near-ties
