"""Crash safety: run locks, durable atomic writes, checkpoints that survive kill -9, finetune --resume,
and the image verification (and its cache) that runs before any training.

kill_trials.py runs the kill -9 trials at scale (Testing/results/kill_trials.json); two run here.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from DiffusionSegLib import atomic
from DiffusionSegLib.cli.main import main
from DiffusionSegLib.errors import UserError
from DiffusionSegLib.finetune.run import FinetuneOptions, finetune
from DiffusionSegLib.imageio import verify
from DiffusionSegLib.runlock import RunLock, lock_path
from DiffusionSegLib.training.checkpoint import STATE_NAME, load_training_state, load_weights
from bad_inputs import good_folder
from interrupt import stopped_after
from kill_trials import EVERY, ITERATIONS, _checkpoint_loads, _last_step_on_disk, command, run_child

RUNTIME = ["--device", "cpu", "--progress", "none"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _pretrain_argv(data: Path, out: Path, *extra) -> list[str]:
    return ["pretrain", "--images", str(data / "images"), "--out", str(out), "--image-size", "32", "32",
            "--iterations", "2", "--batch-size", "2", "--checkpoint-every", "1", *extra, *RUNTIME]


# ----------------------------------------------------------------------------- locks


def test_second_run_on_an_output_folder_is_refused_and_the_lock_released(tmp_path, capsys):
    data = good_folder(tmp_path / "data", n=2)
    out = tmp_path / "model"
    with RunLock(out):  # this process is alive: the lock is held
        assert main(_pretrain_argv(data, out)) == 2
        err = capsys.readouterr().err
        assert f"pid {os.getpid()}" in err and "is using this output folder" in err and str(lock_path(out)) in err
        assert not out.exists()
    assert not lock_path(out).exists()
    assert main(_pretrain_argv(data, out)) == 0
    assert not lock_path(out).exists()  # released after the run


def test_stale_and_foreign_locks(tmp_path):
    folder = tmp_path / "model"
    lock = lock_path(folder)
    # A lock from a dead process on this host is taken over.
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": "x", "command": "c"}))
    with RunLock(folder):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    # A pid that is alive but belongs to a process started at another time (pid reuse) is stale too.
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "pid_start": "1"}))
    if verify.os.path.exists(f"/proc/{os.getpid()}/stat"):
        with RunLock(folder):
            pass
        assert not lock.exists()
    # A file that is not a lock we wrote is taken over.
    lock.write_text("garbage")
    with RunLock(folder):
        pass
    # A lock written on another host cannot be checked from here: refused, and the message says how to clear it.
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "started": "x", "command": "c"}))
    with pytest.raises(UserError, match=r"on host elsewhere.example.*delete .*diffusionseg-lock"):
        RunLock(folder).acquire()
    assert json.loads(lock.read_text())["host"] == "elsewhere.example"  # left alone


def test_a_training_run_locks_its_project(tmp_path, capsys):
    project = tmp_path / "project"
    data = good_folder(project, n=2)
    (project / "project.json").write_text("{}")
    with RunLock(project, "project"):
        assert main(_pretrain_argv(data, project / "models" / "pretrained")) == 2
    err = capsys.readouterr().err
    assert f"{project}: another DiffusionSeg run" in err and "project" in err
    assert not (project / "models").exists()


# ----------------------------------------------------------------------------- durable writes


def test_atomic_writes_fsync_the_file_and_its_folder(tmp_path):
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else fd)
        real(fd)

    with mock.patch("os.fsync", fsync):
        atomic.write_text_atomic(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    if os.path.exists("/proc/self/fd"):
        assert any(".a.txt." in str(p) and "partial" in str(p) for p in synced)  # the data, before the rename
        assert str(tmp_path) in synced  # the folder, after it


def test_full_disk_at_a_checkpoint_keeps_the_previous_one(tmp_path, capsys):
    """ENOSPC while writing checkpoint 2: exit 2 naming the file; checkpoint 1 stays loadable and resumable."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    data = good_folder(tmp_path / "data", n=2)
    out = tmp_path / "model"
    calls = []

    def save(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 3:  # checkpoint 1 wrote the model and the state; the model of checkpoint 2 fails
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        save_file(tensors, path, metadata=metadata)

    with mock.patch("DiffusionSegLib.training.checkpoint.save_file", save):
        assert main(_pretrain_argv(data, out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {out / 'model.safetensors'}: no space left on the disk.") and "Fix: " in err
    assert load_training_state(out)["step"] == 1
    assert not list(out.glob(".*partial*"))
    assert main(_pretrain_argv(data, out, "--resume")) == 0
    assert load_training_state(out)["step"] == 2


# ----------------------------------------------------------------------------- finetune --resume


def _finetune_options(data: Path, pretrained: Path, out: Path, **kw) -> FinetuneOptions:
    defaults = dict(task="segmentation", images=data / "images", annotations=data / "labels", out=out,
                    pretrained=pretrained, classes=["disc", "square"], iterations=6, batch_size=2,
                    checkpoint_every=3, device="cpu", progress="none")
    defaults.update(kw)
    return FinetuneOptions(**defaults)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    data = good_folder(root / "data", n=3)
    assert main(_pretrain_argv(data, root / "pretrained")) == 0
    return data, root / "pretrained"


def test_finetune_resume_matches_an_uninterrupted_run(pretrained, tmp_path, capsys):
    data, model = pretrained
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    finetune(_finetune_options(data, model, straight))
    with stopped_after(4), pytest.raises(KeyboardInterrupt):  # one step after checkpoint 3
        finetune(_finetune_options(data, model, interrupted))
    assert load_training_state(interrupted)["step"] == 3
    # Resuming repeats the interrupted run: today's different batch size and seed give way to the recorded ones.
    finetune(_finetune_options(data, model, interrupted, resume=True, batch_size=3, seed=9))
    a, b = load_weights(straight), load_weights(interrupted)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Another annotated case list is refused (resuming would mix two trainings); no run is a clear error too.
    with pytest.raises(UserError, match="another annotated cases"):
        finetune(_finetune_options(data, model, interrupted, resume=True, iterations=9,
                                   annotations=_drop_one_label(data, tmp_path)))
    capsys.readouterr()
    assert main(["finetune", "--task", "segmentation", "--pretrained", str(model), "--images", str(data / "images"),
                 "--labels", str(data / "labels"), "--classes", "disc,square", "--out", str(tmp_path / "none"),
                 "--resume", *RUNTIME]) == 2
    assert "no run to resume" in capsys.readouterr().err


def _drop_one_label(data: Path, tmp_path: Path) -> Path:
    labels = tmp_path / "fewer-labels"
    labels.mkdir()
    for path in sorted((data / "labels").iterdir())[:-1]:
        (labels / path.name).write_bytes(path.read_bytes())
    return labels


# ----------------------------------------------------------------------------- kill -9


@pytest.mark.parametrize("kind", ["pretrain", "finetune"])
def test_kill_9_at_a_random_moment_then_resume(kind, pretrained, tmp_path):
    """One trial of kill_trials.py: SIGKILL mid-run, the last checkpoint loads, --resume (in-process) finishes."""
    data, model = pretrained
    out = tmp_path / "model"
    argv = command(kind, data, out, model)
    rng = random.Random(kind)
    first = run_child(argv, kill_after=rng.uniform(0.0, 0.2), kill_at_step=rng.randrange(3, ITERATIONS - 5))
    assert first["killed"], first["stderr"]
    reached = max(first["last_step"], _last_step_on_disk(out))
    loadable, step, why = _checkpoint_loads(out)
    assert loadable is not False, why
    assert lock_path(out).exists()  # the dead run's lock is left behind: the resume must take it over
    resume = ["none" if a == "json" else a for a in argv]
    assert main(resume + ["--resume"]) == 0
    assert load_training_state(out)["step"] == ITERATIONS
    assert reached - (step or 0) <= EVERY
    assert not lock_path(out).exists()


# ----------------------------------------------------------------------------- verification


def test_verification_is_cached_per_file_content(tmp_path, monkeypatch):
    monkeypatch.setenv(verify.CACHE_ENV, str(tmp_path / "cache"))
    data = good_folder(tmp_path / "data", n=3)
    paths = sorted((data / "images").iterdir())
    reads = []
    real = verify.read_image
    monkeypatch.setattr(verify, "read_image", lambda p: reads.append(Path(p).name) or real(p))
    assert verify.verify_images(paths, 2) == {p: 2 for p in paths}
    assert len(reads) == 3 and (tmp_path / "cache" / verify.CACHE_NAME).is_file()
    verify.verify_images(paths, 2)
    assert len(reads) == 3  # nothing decoded again
    # A changed file is decoded again, and found bad.
    pixels = np.full((32, 32), np.nan, np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(pixels), str(paths[1]))
    with pytest.raises(UserError, match=r"case_1.nrrd: 1024 of its 1024 voxels are NaN"):
        verify.verify_images(paths, 2)
    assert reads[3:] == ["case_1.nrrd"]


def test_truncated_nifti_stops_pretraining_before_it_starts(tmp_path, capsys):
    """Before this check, SimpleITK read the truncated file (zeros for the missing half) and pretraining exited 0."""
    data = good_folder(tmp_path / "data", n=2)
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((32, 32)).astype(np.float32))
    sitk.WriteImage(image, str(data / "images" / "case_9.nii.gz"), True)
    raw = (data / "images" / "case_9.nii.gz").read_bytes()
    (data / "images" / "case_9.nii.gz").write_bytes(raw[: len(raw) // 2])
    out = tmp_path / "model"
    assert main(_pretrain_argv(data, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "case_9.nii.gz: the compressed data is truncated" in err[0] and "Fix:" in err[0]
    assert not out.exists() and not lock_path(out).exists()
