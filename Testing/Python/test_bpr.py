"""Body-part regression: the losses, a regressor that learns height on a phantom, the coordinate map, the CLI."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from safetensors.torch import save_file

from DiffusionSegLib.data.coordinates import body_part_map
from DiffusionSegLib.bpr.losses import distance_loss, order_loss, slice_ordering_loss, sort_by_height
from DiffusionSegLib.bpr.model import BprNet, BprNetConfig
from DiffusionSegLib.bpr.predict import height_report, load_bpr, slice_scores, spearman
from DiffusionSegLib.bpr.train import BprOptions, sample_slice_indices, train_bpr
from DiffusionSegLib.cli.main import main
from DiffusionSegLib.data.coordinates import coordinate_channels, coordinate_map
from DiffusionSegLib.errors import UserError
from DiffusionSegLib.runlock import lock_path
from DiffusionSegLib.sample_data.body_phantom import body_ct_volume
from DiffusionSegLib.training.checkpoint import load_training_state, load_weights
from interrupt import stopped_after
from kill_trials import run_child

IDENTITY = (1, 0, 0, 0, 1, 0, 0, 0, 1)
HEAD_FIRST = (1, 0, 0, 0, 1, 0, 0, 0, -1)  # array slice 0 is the highest
RAS = (-1, 0, 0, 0, -1, 0, 0, 0, 1)  # as NIfTI files from RAS tools often are
SPACING = (12.0, 12.0, 12.0)
SIZE_XY = (40, 40)


def _shared_data() -> Path:
    if os.environ.get("DIFFUSIONSEG_SHARED_DATA"):
        return Path(os.environ["DIFFUSIONSEG_SHARED_DATA"])
    shared = os.environ.get("DIFFUSIONSEG_SHARED")
    return (Path(shared) if shared else Path(__file__).resolve().parents[3] / "shared") / "data"


def heights(image: sitk.Image) -> np.ndarray:
    """LPS z (mm) of each array slice (axis 0) of an axially stored volume."""
    return np.array([image.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(image.GetSize()[2])])


def phantom(seed: int, z_range, direction=IDENTITY) -> sitk.Image:
    return body_ct_volume(np.random.default_rng(seed), z_range, size_xy=SIZE_XY, spacing_mm=SPACING,
                          direction=direction)


@pytest.fixture(scope="module")
def phantom_model(tmp_path_factory) -> Path:
    """A tiny regressor trained on 6 phantom windows that together cover the body; half not stored feet first."""
    root = tmp_path_factory.mktemp("bpr")
    images = root / "images"
    images.mkdir()
    directions = [IDENTITY, HEAD_FIRST, RAS, IDENTITY, HEAD_FIRST, RAS]
    for i, direction in enumerate(directions):
        low = 80.0 * i + np.random.default_rng([1, i]).uniform(0, 20)
        sitk.WriteImage(phantom(100 + i, (low, low + 600), direction), str(images / f"v{i}.nrrd"))
    out = root / "model"
    start = time.monotonic()
    train_bpr(BprOptions(images=images, out=out, iterations=300, batch_size=4, slices=8, slice_size=[32, 32],
                         channels=[8, 16, 32], learning_rate=1e-3, device="cpu", progress="none"))
    # Cheap enough for the suite (about 15 s on a quiet 2-core machine; generous for a loaded one).
    assert time.monotonic() - start < 120
    return out


# ------------------------------------------------------------------------- losses and sampling


def test_order_loss_prefers_scores_rising_with_height():
    z = torch.tensor([[30.0, 10.0, 20.0]])  # shuffled, as the training batches are
    rising = torch.tensor([[3.0, 1.0, 2.0]])
    falling = torch.tensor([[1.0, 3.0, 2.0]])
    assert torch.equal(sort_by_height(rising, z), torch.tensor([[1.0, 2.0, 3.0]]))
    assert slice_ordering_loss(rising, z)[0] < slice_ordering_loss(falling, z)[0]
    assert order_loss(torch.tensor([[0.0, 10.0]])) < 1e-4
    assert order_loss(torch.tensor([[0.0, 0.0]])).item() == pytest.approx(np.log(2))


def test_distance_loss_wants_equal_steps():
    assert distance_loss(torch.tensor([[0.0, 1.0, 2.0, 3.0]])).item() == 0.0
    assert distance_loss(torch.tensor([[0.0, 0.1, 2.0, 2.1]])).item() > 0.5
    scores = torch.tensor([[0.0, 0.1, 2.0]], requires_grad=True)
    distance_loss(scores).backward()
    assert scores.grad[0, 1] < 0  # descent raises the middle slice, towards equal steps


def test_sampled_slices_are_equally_spaced_and_inside():
    rng = np.random.default_rng(0)
    gaps = set()
    for _ in range(200):
        index = sample_slice_indices(rng, 30, 8)
        assert index.min() >= 0 and index.max() < 30
        assert len(set(np.diff(index))) == 1
        gaps.add(int(index[1] - index[0]))
    assert gaps == {1, 2, 3, 4}  # every gap that fits 8 slices into 30


def test_spearman():
    assert spearman(np.arange(5), np.arange(5) ** 3) == pytest.approx(1.0)
    assert spearman(np.arange(5), -np.arange(5)) == pytest.approx(-1.0)
    assert np.isnan(spearman(np.arange(3), np.ones(3)))


# ------------------------------------------------------------------------- the trained regressor


@pytest.mark.slow
@pytest.mark.parametrize("direction", [HEAD_FIRST, RAS], ids=["head_first", "ras"])
def test_scores_rise_with_height_on_held_out_phantom(phantom_model, direction):
    held_out = phantom(999, (150.0, 900.0), direction)
    scores = slice_scores(phantom_model, held_out)
    assert scores.shape == (held_out.GetSize()[2],)
    report = height_report(heights(held_out), scores)
    assert report["spearman"] > 0.9, (report, scores)
    if direction == HEAD_FIRST:  # array order runs head to feet: the scores must fall along it
        assert spearman(np.arange(len(scores)), scores) < -0.9


def test_body_part_map_and_coordinate_map(phantom_model):
    grid = sitk.ReadImage(str(phantom_model.parent / "images" / "v1.nrrd"))  # a training volume, head first
    maps = body_part_map(grid, str(phantom_model))
    depth, rows, cols = reversed(grid.GetSize())
    assert maps.shape == (3, depth, rows, cols) and maps.dtype == np.float32
    height = maps[0]
    assert np.allclose(height, height[:, :1, :1])  # one value per axial slice
    # On a training volume the scores lie inside the training range, i.e. [-1, 1].
    assert height.min() >= -1.0 - 1e-4 and height.max() <= 1.0 + 1e-4
    assert height.max() - height.min() > 0.5
    assert spearman(heights(grid), height[:, 0, 0]) > 0.9
    assert np.allclose(maps[1, :, :, 0], np.linspace(-1, 1, rows)[None]) and maps[1].min() == -1
    assert np.allclose(maps[2, :, 0, :], np.linspace(-1, 1, cols)[None]) and maps[2].max() == 1
    assert coordinate_channels("bpr:" + str(phantom_model), 3) == 3
    assert np.array_equal(coordinate_map(grid, "bpr:" + str(phantom_model)), maps)


def test_body_part_map_needs_a_volume(phantom_model):
    with pytest.raises(UserError, match="3D"):
        body_part_map(sitk.Image([16, 16], sitk.sitkFloat32), str(phantom_model))


def test_loading_uses_only_json_and_safetensors(phantom_model, tmp_path, monkeypatch):
    files = sorted(p.name for p in phantom_model.iterdir() if p.is_file())
    assert files == ["config.json", "model.safetensors", "training_state.safetensors"]  # the last for --resume
    config = json.loads((phantom_model / "config.json").read_text())
    assert config["kind"] == "bpr" and config["slices"] == 8
    assert config["preprocessing"]["slice_size"] == [32, 32]
    assert config["preprocessing"]["normalisation"]["modality"] == "ct"
    low, high = config["score_range"]
    assert low < high

    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    model = load_bpr(phantom_model)
    assert model.score_range == (low, high)
    monkeypatch.undo()

    # A pickle in place of the weights is refused, never opened.
    fake = tmp_path / "fake"
    shutil.copytree(phantom_model, fake)
    torch.save(model.net.state_dict(), fake / "model.safetensors")
    with pytest.raises(UserError, match="pickle"):
        load_bpr(fake)


# ------------------------------------------------------------------------- command line


def test_cli_predict_writes_json_and_volume(phantom_model, tmp_path, capsys):
    images = tmp_path / "new"
    images.mkdir()
    volume = phantom(7, (150.0, 900.0), HEAD_FIRST)
    sitk.WriteImage(volume, str(images / "case_a.nrrd"))
    out = tmp_path / "pred"
    args = ["bpr", "predict", "--model", str(phantom_model), "--images", str(images), "--out", str(out),
            "--volume", "--device", "cpu", "--progress", "none"]
    assert main(args) == 0
    record = json.loads((out / "case_a.bpr.json").read_text())
    assert len(record["slices"]) == volume.GetSize()[2]
    first = record["slices"][0]
    assert first["z_mm"] < record["slices"][-1]["z_mm"]  # listed from the lowest slice up
    assert first["index"] == volume.GetSize()[2] - 1  # ... which is the last array slice of a head-first volume
    assert record["spearman"] > 0.9 and isinstance(record["monotone"], bool)
    score_volume = sitk.ReadImage(str(out / "case_a_bpr.nrrd"))
    assert score_volume.GetSize() == volume.GetSize()
    assert np.allclose(score_volume.GetDirection(), volume.GetDirection())
    assert np.allclose(score_volume.GetOrigin(), volume.GetOrigin())
    array = sitk.GetArrayFromImage(score_volume)
    by_index = {s["index"]: s["score"] for s in record["slices"]}
    assert np.allclose(array[:, 5, 5], [by_index[k] for k in range(len(array))], atol=1e-5)
    capsys.readouterr()
    assert main(args) == 2  # results are never overwritten
    assert "exist already" in capsys.readouterr().err


def _cli_train(images: Path, out: Path, *extra: str) -> int:
    return main(["bpr", "train", "--images", str(images), "--out", str(out), "--iterations", "2", "--batch-size", "2",
                 "--slices", "4", "--slice-size", "16", "16", "--device", "cpu", "--progress", "none", *extra])


def test_cli_train_refuses_2d_images(tmp_path, capsys):
    images = tmp_path / "xrays"
    images.mkdir()
    for i in range(2):
        sitk.WriteImage(sitk.Image([32, 32], sitk.sitkFloat32), str(images / f"x{i}.nrrd"))
    assert _cli_train(images, tmp_path / "model") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "3D" in err and "Fix:" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "model").exists()


def test_cli_train_errors_and_overwrite(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _cli_train(empty, tmp_path / "m0") == 2
    assert "no images" in capsys.readouterr().err

    images = tmp_path / "ct"
    images.mkdir()
    sitk.WriteImage(phantom(1, (400.0, 500.0)), str(images / "a.nrrd"))  # 9 slices
    assert _cli_train(images, tmp_path / "m1", "--slices", "12") == 2
    err = capsys.readouterr().err
    assert "fewer than --slices 12" in err and "a.nrrd" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct", "empty"]  # nothing half-written

    out = tmp_path / "model"
    assert _cli_train(images, out) == 0
    assert (out / "model.safetensors").is_file()
    capsys.readouterr()
    assert _cli_train(images, out) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    before = (out / "model.safetensors").stat().st_mtime_ns
    assert _cli_train(images, out, "--overwrite", "--seed", "3") == 0
    assert (out / "model.safetensors").stat().st_mtime_ns != before
    assert json.loads((out / "config.json").read_text())["training"]["seed"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folders left

    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert _cli_train(images, other, "--overwrite") == 2  # only a model folder is ever replaced
    assert (other / "keep.txt").read_text() == "mine"


def _hold_lock(folder: Path) -> Path:
    """The lock of ``folder`` as a live run (this process) holds it."""
    lock = lock_path(folder)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now",
                                "command": "diffusionseg bpr train"}))
    return lock


def test_cli_train_and_predict_hold_the_run_lock(phantom_model, tmp_path, capsys):
    """bpr train locks its output and its project, bpr predict its output, as pretrain/finetune and predict do."""
    images = tmp_path / "project" / "images"
    images.mkdir(parents=True)
    sitk.WriteImage(phantom(1, (400.0, 700.0)), str(images / "a.nrrd"))
    (tmp_path / "project" / "project.json").write_text("{}")
    out = tmp_path / "project" / "models" / "bpr"
    for held in (out, tmp_path / "project"):
        lock = _hold_lock(held)
        capsys.readouterr()
        assert _cli_train(images, out) == 2
        err = capsys.readouterr().err
        assert "another DiffusionSeg run" in err and str(held) in err
        assert not out.exists()
        lock.unlink()
    assert _cli_train(images, out) == 0
    assert not lock_path(out).exists() and not lock_path(tmp_path / "project").exists()  # released

    pred = tmp_path / "pred"
    lock = _hold_lock(pred)
    args = ["bpr", "predict", "--model", str(phantom_model), "--images", str(images), "--out", str(pred),
            "--device", "cpu", "--progress", "json"]
    capsys.readouterr()
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "another DiffusionSeg run" in captured.err and not pred.exists()
    assert [json.loads(line)["event"] for line in captured.out.splitlines()] == ["error"]
    lock.unlink()
    assert main(args) == 0 and (pred / "a.bpr.json").is_file() and not lock_path(pred).exists()


# ------------------------------------------------------------------------- --resume


def _two_volumes(folder: Path) -> Path:
    folder.mkdir()
    sitk.WriteImage(phantom(2, (300.0, 600.0), RAS), str(folder / "a.nrrd"))
    sitk.WriteImage(phantom(3, (350.0, 700.0), HEAD_FIRST), str(folder / "b.nrrd"))
    return folder


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_weights(a), load_weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_stopped_run_resumes_to_the_uninterrupted_run_s_model(tmp_path, capsys):
    images = _two_volumes(tmp_path / "ct")

    def options(out: Path, **kw) -> BprOptions:
        return BprOptions(**{**dict(images=images, out=out, iterations=6, batch_size=2, slices=4, slice_size=[16, 16],
                                    channels=[8, 16], checkpoint_every=3, device="cpu", progress="none"), **kw})

    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    train_bpr(options(straight))
    with stopped_after(4), pytest.raises(KeyboardInterrupt):  # one step after checkpoint 3
        train_bpr(options(interrupted))
    assert load_training_state(interrupted)["step"] == 3
    load_bpr(interrupted)  # every checkpoint is a usable model, its score range measured with its weights
    # Resuming repeats the interrupted run: today's other settings give way to the recorded ones.
    train_bpr(options(interrupted, resume=True, batch_size=3, slices=5, learning_rate=0.5, seed=9,
                      slice_size=[32, 32]))
    assert _same_weights(straight, interrupted)
    config = json.loads((interrupted / "config.json").read_text())
    assert config == json.loads((straight / "config.json").read_text())  # score range and final loss included
    # Only --iterations may grow; a folder with no run in it is a clear error.
    assert _cli_train(images, interrupted, "--resume", "--iterations", "8") == 0
    assert load_training_state(interrupted)["step"] == 8
    capsys.readouterr()
    assert _cli_train(images, interrupted, "--resume") == 2
    assert "already finished its 8 steps" in capsys.readouterr().err
    assert _cli_train(images, tmp_path / "new", "--resume") == 2
    assert "no run to resume" in capsys.readouterr().err


def test_a_model_folder_from_before_the_shared_loop_loads_and_is_replaced(tmp_path, capsys):
    """An old folder (kept config.json: no training.step, no training state) scores slices, is no run to
    resume, and --overwrite replaces it."""
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "Data" / "model_configs" / "bpr.json", old / "config.json")
    save_file(BprNet(BprNetConfig(channels=[4, 8], slice_size=[16, 16])).state_dict(), str(old / "model.safetensors"))
    volume = phantom(4, (300.0, 500.0))
    assert slice_scores(old, volume).shape == (volume.GetSize()[2],)
    images = _two_volumes(tmp_path / "ct")
    capsys.readouterr()
    assert _cli_train(images, old, "--resume") == 2
    assert "no run to resume" in capsys.readouterr().err
    assert _cli_train(images, old, "--overwrite") == 0
    assert load_training_state(old)["step"] == 2


def test_kill_9_after_a_checkpoint_then_resume(tmp_path):
    """SIGKILL a `bpr train` process a random moment after step 4 (checkpoints every 3 steps): the last
    checkpoint loads, and --resume ends with the model an uninterrupted run writes."""
    images = _two_volumes(tmp_path / "ct")
    argv = ["bpr", "train", "--images", str(images), "--iterations", "12", "--batch-size", "2", "--slices", "4",
            "--slice-size", "16", "16", "--checkpoint-every", "3", "--device", "cpu"]
    killed = tmp_path / "killed"
    first = run_child([*argv, "--out", str(killed), "--progress", "json"],
                      kill_after=np.random.default_rng(4).uniform(0, 0.1), kill_at_step=4)
    assert first["killed"] and first["last_step"] < 12, first["stderr"]
    step = load_training_state(killed)["step"]
    assert step >= 3 and first["last_step"] - step <= 3
    # Resume and the reference run in child processes too: every step at the child's one thread, so bitwise
    # equality does not depend on how many threads this process's kernels split a sum over.
    assert run_child([*argv, "--out", str(killed), "--progress", "json", "--resume"])["code"] == 0
    assert run_child([*argv, "--out", str(tmp_path / "straight"), "--progress", "json"])["code"] == 0
    assert _same_weights(tmp_path / "straight", killed)


# ------------------------------------------------------------------------- real CT (when available)


@pytest.mark.shared_data
@pytest.mark.slow
def test_ct_example_scores_rise_with_height(tmp_path):
    ct = _shared_data() / "ct-example" / "example_ct_sm.nii.gz"
    if not ct.is_file():
        pytest.skip(f"{ct} is not available")
    images = tmp_path / "ct"
    images.mkdir()
    os.symlink(ct, images / ct.name)
    out = tmp_path / "model"
    # One CT is both the training and the test data: this checks the pipeline on real geometry
    # (a RAS-ordered NIfTI), not generalisation.
    train_bpr(BprOptions(images=images, out=out, iterations=150, batch_size=4, slices=8, device="cpu",
                         progress="none"))
    image = sitk.ReadImage(str(ct))
    scores = slice_scores(out, image)
    report = height_report(heights(image), scores)
    assert report["spearman"] > 0.9, report


def test_training_is_deterministic_given_the_seed(tmp_path):
    images = tmp_path / "ct"
    images.mkdir()
    sitk.WriteImage(phantom(2, (300.0, 600.0), RAS), str(images / "a.nrrd"))
    weights = []
    for name in ("one", "two"):
        train_bpr(BprOptions(images=images, out=tmp_path / name, iterations=5, batch_size=2, slices=4,
                             slice_size=[16, 16], channels=[8, 16], device="cpu", progress="none", seed=5))
        weights.append(load_bpr(tmp_path / name).net.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
