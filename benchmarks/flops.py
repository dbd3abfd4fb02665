"""Achieved GFLOP/s per preset, training and prediction, as a share of this machine's measured peaks.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions
and attention; elementwise work such as GroupNorm, SiLU and the optimiser is free in the
count but not in the time, which is the point: it shows where time goes that is not
arithmetic). Counted over

- one full training step, as ``training/loop.py`` runs it: DDPM loss, backward, gradient
  clipping, AdamW, EMA update; and
- one prediction forward: the fine-tuned network's call (fixed timestep, ``no_grad``,
  ``eval``) as ``predict`` makes it: one 2D image, or in 3D as many windows as
  ``predict/defaults.py`` sends per call on a CPU (PyTorch runs a single small 3D input
  through a slow convolution kernel; figures are per call).

Two peaks are measured in the same process with the same thread count (before and after the
configurations; the better of the two times is used), so a share is comparable across
machines and thread counts:

- ``matmul``: a 2048^3 fp32 ``torch.mm`` (issue 16's reference). torch's CPU matmul is MKL,
  which on AMD processors runs its AVX2 code even where AVX-512 exists (measured on this
  Zen 5: 89 GFLOP/s on one thread), so convolutions can exceed this "peak";
- ``conv``: a 3x3x3 convolution, 64 to 64 channels on 64^3 voxels, which torch runs with
  oneDNN and its AVX-512 kernels where the processor has them (130 GFLOP/s on the same core):
  the better measure of what the hardware gives to these networks.

The machine load (``os.getloadavg``) is recorded with every measurement: another process on
the same cores lowers both the peaks and the achieved figures.

    OMP_NUM_THREADS=1 python benchmarks/flops.py --threads 1 --out benchmarks/results/performance/flops_cpu_t1.json
    OMP_NUM_THREADS=1 python benchmarks/flops.py --threads 1 --fast --out .../flops_cpu_t1_fast.json   # --fast

``--fast`` times the networks as ``pretrain --fast`` and ``predict --fast`` run them (nets/fast.py:
channels-last, torch.compile with inductor, bf16 autocast); the FLOPs are still counted on the
plain fp32 network (the same arithmetic), so GFLOP/s compare directly with a plain run's.
    python benchmarks/flops.py --quick --out /tmp/flops_quick.json     # tiny sizes, seconds

``--device cuda`` (or ``mps``) prints the same table for a GPU: the networks run in the precision
the product picks there (``training/device.py``: bf16, or fp16 with a gradient scaler), every
timed call ends with a device synchronisation, and the peaks are measured on the GPU both in
fp32 and in that precision (tensor cores), so a share can be read against either.
    python benchmarks/flops.py --device cuda --out benchmarks/results/performance/flops_cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from DiffusionSegLib.predict.defaults import CPU_WINDOWS_PER_CALL, GPU_WINDOWS_PER_CALL  # noqa: E402  (torch-free)

# (preset, size as the issue writes it: x, y[, z], training batch). Issue 16's table,
# plus the small preset in 3D and preset plain (MONAI's BasicUNet; timesteps ignored).
CONFIGS = [
    ("tiny", (128, 128), 8),
    ("small", (64, 64), 8),
    ("small", (128, 128), 8),
    ("tiny", (64, 64, 32), 2),
    ("small", (64, 64, 32), 2),
    ("plain", (64, 64), 8),
    ("plain", (64, 64, 32), 2),
]
QUICK_CONFIGS = [("tiny", (32, 32), 2), ("tiny", (16, 16, 8), 1)]
PEAK_SIZE, QUICK_PEAK_SIZE = 2048, 256   # matmul side; the convolution scales with it


def machine_load() -> dict:
    """The 1, 5 and 15 minute load averages (what ``uptime`` prints)."""
    one, five, fifteen = os.getloadavg()
    return {"load_1min": round(one, 2), "load_5min": round(five, 2), "load_15min": round(fifteen, 2)}


def register_cpu_attention_flops() -> None:
    """Count the CPU flash-attention kernel, which torch's counter lists only for CUDA.

    Why: MONAI's attention goes through ``scaled_dot_product_attention``, which on the CPU
    runs ``_scaled_dot_product_flash_attention_for_cpu``; uncounted, the tiny preset's
    attention at 1/4 resolution would look free. Same formulas as the CUDA kernels.
    """
    import torch
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    forward, backward = (aten._scaled_dot_product_flash_attention_for_cpu,
                         aten._scaled_dot_product_flash_attention_for_cpu_backward)
    if forward in fc.flop_registry:
        return

    @fc.register_flop_formula(forward)
    def _forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_flop_count(query_shape, key_shape, value_shape)

    @fc.register_flop_formula(backward)
    def _backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def peaks(n: int, device=None, mixed=None, repeats: int = 5) -> dict:
    """Best GFLOP/s of the two reference kernels (module docstring) over ``repeats`` timed calls each.

    Args:
        n: matmul side (2048; smaller in quick mode); the convolution is on ``(n / 32)^3`` voxels.
        device: where to run them (the CPU by default).
        mixed: a mixed ``Precision`` (training/device.py) to measure them in besides fp32 (keys
            ``matmul_bf16``, ``conv_bf16``...): the peak that autocast can reach on a GPU's tensor cores.
    """
    import torch
    import torch.nn.functional as F

    device = device or torch.device("cpu")
    side = n // 32
    result = {"matmul_n": n, "conv_voxels": side**3, **machine_load()}
    for kind, suffix in [(torch.float32, "")] + ([(mixed.dtype, "_" + mixed.name)] if mixed and mixed.dtype else []):
        a, b = (torch.randn(n, n, device=device, dtype=kind) for _ in range(2))
        x = torch.randn(1, 64, side, side, side, device=device, dtype=kind)
        w = torch.randn(64, 64, 3, 3, 3, device=device, dtype=kind)
        kernels = {"matmul": (lambda: torch.mm(a, b), 2 * n**3),
                   "conv": (lambda: F.conv3d(x, w, padding=1), 2 * 64 * 64 * 27 * side**3)}
        for name, (fn, flops) in kernels.items():
            times = timed(fn, 1, repeats, device)
            result[name + suffix] = round(flops / min(times) / 1e9, 2)
    return result


def count_flops(fn) -> int:
    """FLOPs of one call of ``fn`` (run once under the counter, untimed)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def synchronize(device) -> None:
    """Wait for the device's queued work (GPU calls return before they finish)."""
    import torch

    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device is not None and device.type == "mps":
        torch.mps.synchronize()


def timed(fn, warmup: int, steps: int, device=None) -> list[float]:
    """Seconds of each of ``steps`` calls of ``fn`` after ``warmup`` untimed ones, each until ``device`` is done."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def fast_options(fast: bool):
    from DiffusionSegLib.nets.fast import FastOptions

    return FastOptions.choose(fast)


def precision_for(device, fast: bool):
    """The product's ``Precision`` on ``device``: ``auto`` (fp32 on the CPU, bf16/fp16 on a GPU), bf16 with --fast."""
    from DiffusionSegLib.training.device import Precision

    return Precision.choose(device, fast_options(fast).precision("auto"))


def training_step(preset: str, shape: tuple[int, ...], batch: int, fast: bool = False, device=None):
    """``(count, timed)``: ``() -> None`` calls of one step of the pretraining loop on random images
    ``(batch, 1, *shape)`` on ``device``; ``count`` on the plain network in fp32 (for the FLOP counter),
    ``timed`` as ``training/loop.py`` runs it (the device's precision and gradient scaler; with ``fast``:
    channels-last, compiled, bf16)."""
    import contextlib

    import torch

    from DiffusionSegLib.diffusion import DiffusionConfig, ddpm_loss, make_scheduler
    from DiffusionSegLib.nets import build_unet, network_config
    from DiffusionSegLib.training.ema import EMA

    torch.manual_seed(0)
    device = device or torch.device("cpu")
    options, precision = fast_options(fast), precision_for(device, fast)
    model = build_unet(network_config(preset, len(shape))).to(device).train()
    scheduler = make_scheduler(DiffusionConfig())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    ema = EMA(model)
    images = torch.rand(batch, 1, *shape, device=device) * 2 - 1
    state = {"step": 0}

    def make(net, x, autocast, scaler):
        def step() -> None:
            i = state["step"]
            with autocast:
                loss = ddpm_loss(net, scheduler, x, torch.arange(batch, device=device) + i * batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            ema.update(model, i)
            state["step"] = i + 1
        return step

    parameters = sum(p.numel() for p in model.parameters())
    count = make(model, images, contextlib.nullcontext(), torch.amp.GradScaler("cpu", enabled=False))
    timed_net = options.prepare(model, len(shape))   # channels-last in place, then compiled (with --fast)
    return count, make(timed_net, options.inputs(images), precision.autocast(), precision.grad_scaler()), parameters


def prediction_forward(preset: str, shape: tuple[int, ...], batch: int, classes: int = 3, fast: bool = False,
                       device=None):
    """``(count, timed)``: the fine-tuned network's forward on ``(batch, 1, *shape)`` on ``device``, plain fp32
    and as ``predict`` runs it (the device's precision; with ``fast``: channels-last, compiled, bf16)."""
    import contextlib

    import torch

    from DiffusionSegLib.nets import FixedTimestepUNet, build_unet, network_config

    torch.manual_seed(0)
    device = device or torch.device("cpu")
    net = FixedTimestepUNet(build_unet(network_config(preset, len(shape), out_channels=classes)), 10)
    net = net.to(device).eval()
    image = torch.rand(batch, 1, *shape, device=device) * 2 - 1

    def make(module, x, autocast):
        @torch.no_grad()
        def forward() -> None:
            with autocast:
                module(x)
        return forward

    count = make(net, image, contextlib.nullcontext())
    options = fast_options(fast)
    return count, make(options.prepare(net, len(shape)), options.inputs(image), precision_for(device, fast).autocast())


def measure(preset: str, size: tuple[int, ...], batch: int, warmup: int, steps: int, fast: bool = False,
            device=None) -> dict:
    """Training and prediction figures of one configuration (see the module docstring)."""
    shape = tuple(reversed(size))  # numpy order (H, W) or (D, H, W)
    record = {"preset": preset, "dims": len(size), "size_xyz": list(size), "size_numpy_order": list(shape),
              "batch": batch}
    step_count, step, parameters = training_step(preset, shape, batch, fast, device)
    record["parameters_m"] = round(parameters / 1e6, 3)
    on_cpu = device is None or device.type == "cpu"
    windows = 1 if len(shape) == 2 else CPU_WINDOWS_PER_CALL if on_cpu else GPU_WINDOWS_PER_CALL
    forward_count, forward = prediction_forward(preset, shape, windows, fast=fast, device=device)
    for name, count, fn, images in (("train", step_count, step, batch), ("predict", forward_count, forward, windows)):
        flops = count_flops(count)
        load_before = machine_load()
        t0 = time.perf_counter()
        fn()   # the first call compiles with --fast: timed apart, it is paid once per run
        synchronize(device)
        record[f"{name}_first_call_seconds"] = round(time.perf_counter() - t0, 2)
        times = timed(fn, warmup, steps, device)
        seconds = statistics.median(times)
        gflops = flops / seconds / 1e9
        record[name] = {"gflop_per_step": round(flops / 1e9, 3), "images_per_step": images,
                        "seconds_per_step": round(seconds, 4), "step_seconds": [round(t, 4) for t in times],
                        "gflops": round(gflops, 2),
                        "load_before": load_before, "load_after": machine_load()}
    return record


def peak_kinds(report: dict) -> list[str]:
    """``["", "_bf16"]``...: the precisions whose peaks were measured ("" is fp32), fp32 first."""
    return ["", *sorted(k.removeprefix("matmul") for k in report["peak_gflops"] if k.startswith("matmul_"))]


def table(report: dict) -> str:
    """Markdown: one row per configuration, training and prediction side by side."""
    peak = report["peak_gflops"]
    n = report["peak_measurements"][0]["matmul_n"]
    kinds = peak_kinds(report)
    peaks_text = "; ".join(f"{kind[1:] or 'fp32'} matmul ({n}^3) {peak['matmul' + kind]:.1f} GFLOP/s, "
                           f"3x3x3 convolution {peak['conv' + kind]:.1f} GFLOP/s" for kind in kinds)
    shares = " | ".join(f"share of {kind[1:] or 'fp32'} matmul / conv peak" for kind in kinds)
    lines = [f"Device: {report['device']} ({report.get('device_name', '')}), precision {report['precision']}, "
             f"threads {report['threads']}; peaks in the same process: {peaks_text}.", "",
             f"| preset, input | train GFLOP/step | s/step | GFLOP/s | {shares} | "
             f"predict GFLOP/call | s/call (images) | GFLOP/s | {shares} | load (1 min) |",
             "|" + "---|" * (8 + 2 * len(kinds))]

    def share(part: dict) -> str:
        return " | ".join(" / ".join(f"{100 * part['share_of_peak'][k + kind]:.0f} %" for k in ("matmul", "conv"))
                          for kind in kinds)

    for r in report["records"]:
        t, p = r["train"], r["predict"]
        name = f"{r['preset']}, {r['dims']}D {'x'.join(map(str, r['size_xyz']))}, batch {r['batch']}"
        lines.append(f"| {name} | {t['gflop_per_step']:.1f} | {t['seconds_per_step']:.2f} | {t['gflops']:.1f} | "
                     f"{share(t)} | {p['gflop_per_step']:.1f} | {p['seconds_per_step']:.3f} ({p['images_per_step']}) | "
                     f"{p['gflops']:.1f} | {share(p)} | {t['load_before']['load_1min']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file; a .md table is written beside it")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps or auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--presets", nargs="*", default=None, help="only these presets")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and a small peak matmul: a test, seconds")
    parser.add_argument("--fast", action="store_true",
                        help="time the networks as --fast runs them (channels-last, torch.compile, bf16)")
    args = parser.parse_args()

    import torch

    from benchmarks.common import beside, provenance
    from DiffusionSegLib.training.device import choose_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    precision = precision_for(device, args.fast)
    register_cpu_attention_flops()
    configs = QUICK_CONFIGS if args.quick else CONFIGS
    configs = [c for c in configs if args.presets is None or c[0] in args.presets]
    if args.quick:
        args.steps, args.warmup = 1, 1
    started, t0 = time.strftime("%Y-%m-%d %H:%M:%S"), time.monotonic()
    peak_size = QUICK_PEAK_SIZE if args.quick else PEAK_SIZE
    # On a GPU also the peaks in its mixed precision (tensor cores); a CPU's bf16 peak says little about convolutions.
    extra = precision if device.type != "cpu" else None
    measured = [peaks(peak_size, device, extra)]
    records = []
    for preset, size, batch in configs:
        records.append(measure(preset, size, batch, args.warmup, args.steps, args.fast, device))
        if device.type == "cuda":
            records[-1]["cuda_max_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            torch.cuda.reset_peak_memory_stats(device)
        print(json.dumps(records[-1]), flush=True)
    measured.append(peaks(peak_size, device, extra))
    kernels = [k for k in measured[0] if k.startswith(("matmul", "conv")) and k not in ("matmul_n", "conv_voxels")]
    peak = {k: max(m[k] for m in measured) for k in kernels}
    for r in records:  # shares against the better of the two measurements of each peak
        for part in ("train", "predict"):
            r[part]["share_of_peak"] = {k: round(r[part]["gflops"] / v, 4) for k, v in peak.items()}
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "started": started,
              "wall_seconds": round(time.monotonic() - t0, 1), "quick": args.quick,
              "threads": torch.get_num_threads(), "device": str(device), "device_name": device_name,
              "precision": precision.name if precision.dtype is None else f"{precision.name} autocast",
              "fast": args.fast,
              "peak_gflops": peak, "peak_measurements": measured, "provenance": provenance(),
              "load_at_end": machine_load(), "records": records}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    beside(args.out, ".md").write_text(table(report))
    print(table(report))

if __name__ == "__main__":
    main()
