"""Pretraining throughput (images/s) and peak memory for each preset, 2D and 3D.

Each configuration runs in its own process (so its peak resident memory is its own):
a few warm-up steps, then timed steps of the real training step (DDPM loss, backward,
AdamW, EMA) on random images of the given size.

    python benchmarks/pretrain_throughput.py --out benchmarks/results/pretrain_throughput.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = [  # (preset, dims, size in numpy order, batch)
    ("tiny", 2, (128, 128), 8),
    ("small", 2, (128, 128), 8),
    ("tiny", 3, (32, 64, 64), 2),
    ("small", 3, (32, 64, 64), 2),
]


def measure(preset: str, dims: int, shape: tuple[int, ...], batch: int, steps: int, device: str) -> dict:
    import torch

    from DiffusionSegLib.diffusion import DiffusionConfig, ddpm_loss, make_scheduler
    from DiffusionSegLib.nets import build_unet, network_config
    from DiffusionSegLib.training.device import Precision, choose_device
    from DiffusionSegLib.training.ema import EMA

    dev = choose_device(device)
    precision = Precision.choose(dev)
    model = build_unet(network_config(preset, dims)).to(dev)
    scheduler = make_scheduler(DiffusionConfig())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ema = EMA(model)
    images = torch.rand(batch, 1, *shape, device=dev) * 2 - 1

    def step(i: int) -> None:
        with precision.autocast():
            loss = ddpm_loss(model, scheduler, images, torch.arange(batch) + i * batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update(model, i)

    for i in range(2):
        step(i)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        step(i + 2)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {
        "preset": preset, "dims": dims, "size_numpy_order": list(shape), "batch": batch, "steps": steps,
        "device": str(dev), "precision": precision.name, "threads": torch.get_num_threads(),
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "seconds_per_step": round(seconds / steps, 3), "images_per_s": round(steps * batch / seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if dev.type == "cuda" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        preset, dims, shape, batch = json.loads(args.one)
        print(json.dumps(measure(preset, dims, tuple(shape), batch, args.steps, args.device)))
        return
    results = []
    for preset, dims, shape, batch in CONFIGS:
        out = subprocess.run([sys.executable, __file__, "--out", str(args.out), "--steps", str(args.steps),
                              "--device", args.device, "--one", json.dumps([preset, dims, shape, batch])],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpus": __import__("os").cpu_count()}, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
