"""Pretraining under torchrun: two CPU processes with gloo end with identical weights."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from DiffusionSegLib.training.checkpoint import load_weights
from DiffusionSegLib.pretrain.run import pretrain
from test_pretrain import blob_images, options

HERE = Path(__file__).parent
REPO = HERE.parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_hold_identical_weights(tmp_path):
    images = blob_images(tmp_path / "images", n=8)
    out, report = tmp_path / "model", tmp_path / "report.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO)])}
    # A session of its own: on a hang, the whole tree (torchrun and both ranks) is killed.
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
         f"--master_port={free_port()}", str(HERE / "ddp_worker.py"), str(images), str(out), str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    assert report.read_text() == "identical world=2"
    # Rank 0 alone wrote the model, and it differs from its initial weights.
    assert len(list((out / "runs").iterdir())) == 1
    single = tmp_path / "single"
    pretrain(options(images, single, iterations=4, batch_size=4, checkpoint_every=2))
    # Same global batch split over two ranks: the gradients average to the one-process gradient,
    # so the weights agree up to floating-point summation order.
    a, b = load_weights(out), load_weights(single)
    diffs = [float((a[k] - b[k]).abs().max()) for k in a]
    assert max(diffs) < 1e-4, max(diffs)
    assert any(not torch.equal(v, torch.zeros_like(v)) for v in a.values())
    assert np.isfinite(diffs).all()
