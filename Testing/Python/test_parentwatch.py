"""--stop-on-stdin-close: a line 'cancel' or the end of stdin stops a run like SIGTERM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from DiffusionSegLib.cli import parentwatch

REPO = Path(__file__).resolve().parents[2]


def watch_pipe():
    read_fd, write_fd = os.pipe()
    stopped = threading.Event()
    calls = []
    thread = parentwatch.watch_stdin(on_stop=lambda: (calls.append(1), stopped.set()), fd=read_fd)
    return write_fd, stopped, calls, thread, read_fd


def test_cancel_line_stops_other_lines_do_not():
    write_fd, stopped, calls, thread, read_fd = watch_pipe()
    os.write(write_fd, b"hello\ncan")
    assert not stopped.wait(0.3)
    os.write(write_fd, b"cel\r\nmore\n")  # split across writes, Windows line end
    assert stopped.wait(5)
    thread.join(5)
    os.close(write_fd)
    time.sleep(0.1)
    assert calls == [1] and not thread.is_alive()  # once only
    os.close(read_fd)


def test_end_of_stdin_stops():
    write_fd, stopped, calls, thread, read_fd = watch_pipe()
    os.write(write_fd, b"partial line without end")
    assert not stopped.wait(0.3)
    os.close(write_fd)  # the parent closed the pipe, or died
    assert stopped.wait(5)
    thread.join(5)
    assert calls == [1]
    os.close(read_fd)


def test_a_real_pretraining_run_cancelled_through_stdin_keeps_its_checkpoint(tmp_path):
    """The real command, started as the Slicer module starts it: cancel on stdin after a
    checkpoint; exit 130, the checkpoint complete and loadable, the one-line message."""
    sitk = pytest.importorskip("SimpleITK")
    from DiffusionSegLib.training.checkpoint import STATE_NAME, load_config, load_weights

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        sitk.WriteImage(sitk.GetImageFromArray((rng.random((32, 32)) * 100).astype(np.float32)),
                        str(images / f"img{i}.nrrd"))
    out = tmp_path / "model"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "DiffusionSegLib", "--stop-on-stdin-close", "pretrain", "--images", str(images),
         "--out", str(out), "--iterations", "100000", "--checkpoint-every", "2", "--batch-size", "2",
         "--image-size", "32", "32", "--preset", "tiny", "--device", "cpu", "--workers", "0", "--progress", "json"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        events = []
        for line in proc.stdout:  # until the first checkpoint is on disk
            events.append(json.loads(line))
            if events[-1]["event"] == "checkpoint":
                break
        assert events and events[-1]["event"] == "checkpoint", events
        proc.stdin.write(b"cancel\n")
        proc.stdin.close()
        returncode = proc.wait(timeout=60)
        stderr = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert returncode == 130, stderr
    assert "interrupted: the last complete checkpoint (if any) is kept." in stderr
    assert (out / STATE_NAME).is_file()
    assert load_config(out) is not None and load_weights(out)
