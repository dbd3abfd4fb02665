"""Peak memory against the size of the data (issue 16): pretraining on 100 and 1,000 images, prediction of
10 and 100 cases. The product reads cases from disk when asked (data/datasets.py: a bounded cache of
preprocessed cases) and streams prediction case by case, so neither peak should grow with the count.

Each measurement is one fresh ``diffusionseg`` process; its peak resident memory (``ru_maxrss`` of the
finished child, which for ``pretrain`` includes any data-loader worker as a separate child, reported
apart) is its own. The images are synthetic 256x256 PNGs (a few smooth blobs on a gradient, seeded; the
masks are the blobs), generated into ``--work``: memory depends on the count and size of the images,
not on what they show.

    OMP_NUM_THREADS=1 python benchmarks/memory_scaling.py --out benchmarks/results/performance/memory_scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import beside, provenance, save_report  # noqa: E402
from benchmarks.flops import machine_load  # noqa: E402


def synthetic_case(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(image uint8 (size, size), mask uint8 (size, size) in {0, 1})``: 2-4 Gaussian blobs on a gradient."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = 0.3 * xx + 0.1 * rng.random()
    mask = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(2, 5)):
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.15)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r ** 2))
        image = image + 0.6 * blob
        mask |= (blob > 0.5).astype(np.uint8)
    image = image + 0.03 * rng.standard_normal((size, size))
    return np.clip(255 * image / image.max(), 0, 255).astype(np.uint8), mask


def make_pool(folder: Path, count: int, seed: int = 0) -> tuple[Path, Path]:
    """``folder/images`` and ``folder/labels`` with ``count`` cases (kept between runs: made once)."""
    images, labels = folder / "images", folder / "labels"
    if len(list(images.glob("*.png"))) != count:
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        for i in range(count):
            image, mask = synthetic_case(rng)
            sitk.WriteImage(sitk.GetImageFromArray(image), str(images / f"case{i:04d}.png"))
            sitk.WriteImage(sitk.GetImageFromArray(mask), str(labels / f"case{i:04d}.png"))
    return images, labels


def first_files(source: Path, count: int, folder: Path) -> Path:
    """``folder`` holding links to the first ``count`` PNGs of ``source`` (made once)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.png"))[:count]:
        if not (folder / path.name).exists():
            os.symlink(path, folder / path.name)
    return folder


def run(command: list[str], threads: int) -> dict:
    """One ``diffusionseg`` process: wall seconds and peak RSS (MB), with the machine load around it.
    ``ru_maxrss`` of RUSAGE_CHILDREN is the largest child so far, so every measurement runs in its own
    wrapper process (``--one``) and reads only its own children."""
    wrapper = [sys.executable, __file__, "--one", "--threads", str(threads), "--", *command]
    load = machine_load()
    t0 = time.monotonic()
    done = subprocess.run(wrapper, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall_seconds": round(time.monotonic() - t0, 1),
            "load_before": load, "load_after": machine_load()}


def one(argv: list[str], threads: int) -> None:
    """Run ``python -m DiffusionSegLib ARGV`` as a child and print its peak RSS (MB) as JSON."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-m", "DiffusionSegLib", *argv], env=env, cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"command": "diffusionseg " + " ".join(argv), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                      "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "performance" / "memory_scaling.json")
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "memory")
    p.add_argument("--pretrain-counts", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--predict-counts", type=int, nargs="+", default=[10, 100])
    p.add_argument("--iterations", type=int, default=60, help="pretraining steps per measurement (batch 8: "
                   "480 images drawn, so the 100-image pool is seen about 5 times and the 1,000-image one half)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args, rest = p.parse_known_args()
    if args.one:
        one(rest[1:] if rest[:1] == ["--"] else rest, args.threads)
        return
    largest = max(args.pretrain_counts + args.predict_counts)
    images, labels = make_pool(args.work / f"pool-{largest}", largest)
    # A re-run keeps the measurements it has (each with its own provenance) and makes the missing ones.
    report = json.loads(args.out.read_text()) if args.out.exists() else {"pretrain": [], "predict": []}
    report.update(command=" ".join(["python", *sys.argv]), provenance=provenance())
    for count in args.pretrain_counts:
        if any(r["images"] == count for r in report["pretrain"]):
            continue
        subset = first_files(images, count, args.work / f"images-{count}")
        record = run(["pretrain", "--images", str(subset), "--out", str(args.work / f"pre-{count}"), "--overwrite",
                      "--preset", "tiny", "--image-size", "128", "128", "--iterations", str(args.iterations),
                      "--batch-size", "8", "--checkpoint-every", str(args.iterations), "--device", "cpu",
                      "--progress", "none"], args.threads)
        report["pretrain"].append({"images": count, **record, "provenance": provenance()})
        save_report(args.out, report)
        print(f"pretrain on {count} images: peak RSS {record['peak_rss_mb']} MB ({record['wall_seconds']} s)",
              flush=True)
    model = args.work / "seg"
    train, train_labels = args.work / "train-images", args.work / "train-labels"
    first_files(images, 2, train)
    first_files(labels, 2, train_labels)
    subprocess.run([sys.executable, "-m", "DiffusionSegLib", "finetune", "--task", "segmentation", "--pretrained",
                    str(args.work / f"pre-{args.pretrain_counts[0]}"), "--images", str(train), "--labels", str(train_labels),
                    "--classes", "blob", "--out", str(model), "--overwrite", "--iterations", "5", "--device", "cpu",
                    "--progress", "none"], cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    for count in args.predict_counts:
        if any(r["cases"] == count for r in report["predict"]):
            continue
        subset = first_files(images, count, args.work / f"images-{count}")
        out = args.work / f"pred-{count}"
        shutil.rmtree(out, ignore_errors=True)   # predict refuses to mix its output with an earlier run's
        record = run(["predict", "--model", str(model), "--images", str(subset), "--out", str(out),
                      "--device", "cpu", "--progress", "none"], args.threads)
        report["predict"].append({"cases": count, **record, "provenance": provenance()})
        save_report(args.out, report)
        print(f"predict {count} cases: peak RSS {record['peak_rss_mb']} MB ({record['wall_seconds']} s)", flush=True)
    beside(args.out, ".md").write_text(summary_md(report))
    print(summary_md(report))


def summary_md(report: dict) -> str:
    lines = ["# Peak memory against the number of images (issue 16)", "",
             f"`{report['command']}`; commit {report['provenance']['git_commit']}, "
             f"torch {report['provenance']['versions']['torch']}, one thread.", "",
             "| command | images | peak RSS MB | wall s | CPU s | load before / after |", "|---|---|---|---|---|---|"]
    for kind, key in (("pretrain", "images"), ("predict", "cases")):
        for r in report[kind]:
            lines.append(f"| {kind} | {r[key]} | {r['peak_rss_mb']} | {r['wall_seconds']} | {r['cpu_seconds']} | "
                         f"{r['load_before']['load_1min']} / {r['load_after']['load_1min']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
