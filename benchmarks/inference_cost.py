"""Inference cost per volume: full fine-tuning (one forward pass) against probing and the MLP ensemble.

The papers claim the single forward pass of a fine-tuned U-Net is much cheaper than
reading frozen features at several noise levels. Here each mode gets a model fine-tuned
briefly from the same pretrained backbone (the cost does not depend on how well it was
trained), then each predicts the same volumes in its own fresh process, so that the
process's peak resident memory belongs to that mode alone.

    python benchmarks/inference_cost.py --pretrained benchmarks/work/hippo-tiny --out benchmarks/results/inference_cost
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import beside, link_subset  # noqa: E402

MODES = ("full", "probe", "mlp")


def measure(model: Path, images: Path, out: Path, device: str) -> dict:
    """Run in a child process: predict every image, report seconds per volume and peak RSS."""
    from DiffusionSegLib.predict.run import PredictOptions, predict

    # Warm-up on one volume (model loading and first-call costs are not per-volume costs).
    first = sorted(images.iterdir())[0]
    predict(PredictOptions(model=model, images=first, out=out / "warmup", device=device, progress="none"))
    count = len(list(images.iterdir()))
    t0 = time.monotonic()
    predict(PredictOptions(model=model, images=images, out=out / "pred", device=device, progress="none"))
    seconds = (time.monotonic() - t0) / count
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    return {"seconds_per_volume": round(seconds, 3), "peak_rss_mb": round(peak_mb, 1), "volumes": count}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "hippocampus")
    p.add_argument("--pretrained", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="results prefix: .json and .md are written")
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "inference-cost")
    p.add_argument("--volumes", type=int, default=10)
    p.add_argument("--patch-size", type=int, nargs=3, default=[40, 56, 40])
    p.add_argument("--mlp-members", type=int, default=10)
    p.add_argument("--device", default="auto")
    p.add_argument("--child", nargs=3, metavar=("MODEL", "IMAGES", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(*map(Path, args.child), args.device)))
        return

    from DiffusionSegLib.finetune.run import FinetuneOptions, finetune

    cases = sorted(p.name[: -len(".nii.gz")] for p in (args.data / "labelsTr").glob("*.nii.gz"))
    shutil.rmtree(args.work, ignore_errors=True)
    images = link_subset(cases[-args.volumes:], args.data / "imagesTr", args.work / "images", ".nii.gz")
    labels = link_subset(cases[:1], args.data / "labelsTr", args.work / "labels", ".nii.gz")
    results = {}
    for mode in MODES:
        model = args.work / f"model-{mode}"
        finetune(FinetuneOptions(task="segmentation", images=args.data / "imagesTr", annotations=labels, out=model,
                                 pretrained=args.pretrained, classes=["anterior", "posterior"], mode=mode,
                                 patch_size=args.patch_size, mlp_members=args.mlp_members, iterations=2,
                                 batch_size=1, checkpoint_every=2, device=args.device, progress="none"))
        child = subprocess.run([sys.executable, __file__, "--pretrained", str(args.pretrained), "--out", "-",
                                "--device", args.device, "--child", str(model), str(images),
                                str(args.work / f"pred-{mode}")], capture_output=True, text=True, check=True)
        results[mode] = json.loads(child.stdout.strip().splitlines()[-1])
        print(mode, results[mode], flush=True)
    report = {"command": " ".join(["python", *sys.argv]), "machine": {"platform": platform.platform(),
              "cpus": os.cpu_count(), "torch_threads": os.environ.get("OMP_NUM_THREADS", "default")},
              "pretrained": str(args.pretrained), "patch_size": args.patch_size, "mlp_members": args.mlp_members,
              "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    beside(args.out, ".json").write_text(json.dumps(report, indent=2) + "\n")
    base = results["full"]["seconds_per_volume"]
    lines = ["| mode | s / volume | x full | peak RSS (MB) |", "|---|---|---|---|"]
    for mode, r in results.items():
        lines.append(f"| {mode} | {r['seconds_per_volume']:.3f} | {r['seconds_per_volume'] / base:.1f} | "
                     f"{r['peak_rss_mb']:.0f} |")
    beside(args.out, ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
