"""3D prediction cost and agreement (issue 16): wall time and peak memory of `diffusionseg predict`,
and the Dice of its output against another run's output and against ground truth.

Each run is one fresh `diffusionseg predict` process, so its peak resident memory is its own.
``--commit`` runs the DiffusionSegLib of an earlier commit instead of this tree's (extracted with
``git archive`` into the work folder), which is how "before" is measured after the change.

    # the CT, before (the commit before the lean path) and after
    OMP_NUM_THREADS=1 python benchmarks/prediction_3d.py --name ct-before --commit c39e7d6 --model M \
        --images CT_FOLDER --out benchmarks/results/performance/prediction_3d.json
    OMP_NUM_THREADS=1 python benchmarks/prediction_3d.py --name ct-after --model M --images CT_FOLDER \
        --out benchmarks/results/performance/prediction_3d.json
    # hippocampus: the new output against the old one and against the labels
    ... --name hippo-after --images TEST --truth ../shared/data/hippocampus/labelsTr --reference hippo-before
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import provenance, save_report  # noqa: E402
from benchmarks.flops import machine_load  # noqa: E402


def checkout(commit: str, work: Path) -> Path:
    """A folder holding ``commit``'s DiffusionSegLib (for PYTHONPATH), extracted once."""
    target = work / f"code-{commit}"
    if not (target / "DiffusionSegLib").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit, "DiffusionSegLib"], cwd=REPO, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def run_predict(args, pred: Path) -> dict:
    """One predict process: seconds, peak RSS (MB) of the process, load before and after."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    cwd = REPO
    if args.commit:
        cwd = checkout(args.commit, args.work)
        env["PYTHONPATH"] = str(cwd)  # before the installed (editable) package
    command = [sys.executable, "-m", "DiffusionSegLib", "predict", "--model", str(args.model), "--images",
               str(args.images), "--out", str(pred), "--device", "cpu", "--progress", "none", *args.predict_args]
    load = machine_load()
    t0 = time.monotonic()
    subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True)
    seconds = time.monotonic() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Why CPU seconds too: beside other jobs on the same cores the wall time grows with their
    # load, the CPU time of a one-thread process much less.
    return {"predict_command": " ".join(command), "seconds": round(seconds, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            # the largest child so far: the predict process (git and tar are far smaller)
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "load_before": load, "load_after": machine_load()}


def dice(pred: Path, truth: Path, classes: list[str]) -> dict:
    """Mean Dice per class and over classes of the predictions in ``pred`` against ``truth``."""
    from DiffusionSegLib.evaluation.segmentation import evaluate_segmentations

    summary = evaluate_segmentations(pred, truth, classes)["summary"]
    return {"n_cases": summary["n_cases"], "mean_dice": round(summary["mean_dice"], 4),
            "classes": {k: round(v["dice"], 4) for k, v in summary["classes"].items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="this run's name in the results file")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True, help="an image or a folder of images")
    p.add_argument("--out", type=Path, required=True, help="results JSON (runs are added to it)")
    p.add_argument("--work", type=Path, default=Path("/tmp/prediction_3d"), help="predictions and checkouts")
    p.add_argument("--commit", help="run this commit's DiffusionSegLib instead of this tree's")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--truth", type=Path, help="ground-truth label folder: Dice against it")
    p.add_argument("--reference", help="name of an earlier run in --out: Dice against its predictions")
    p.add_argument("--classes", default="", help="class names, comma-separated (default: the model's)")
    p.add_argument("predict_args", nargs="*", help="passed to `diffusionseg predict` (after --)")
    args = p.parse_args()

    from DiffusionSegLib import modelconfig

    report = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}}
    pred = args.work / args.name
    if pred.exists():
        sys.exit(f"{pred} exists: choose another --name or remove it.")
    classes = [c for c in args.classes.split(",") if c] or list(modelconfig.load(args.model).task.classes)
    record = {"command": " ".join(["python", *sys.argv]), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "commit_run": args.commit or "this tree", "threads": args.threads, "model": str(args.model),
              "images": str(args.images), "predictions": str(pred), **run_predict(args, pred),
              "provenance": provenance()}
    if args.truth:
        record["dice_vs_truth"] = dice(pred, args.truth, classes)
    if args.reference:
        record["reference"] = args.reference
        record["dice_vs_reference"] = dice(pred, Path(report["runs"][args.reference]["predictions"]), classes)
    report["runs"][args.name] = record
    save_report(args.out, report)
    print(json.dumps({k: v for k, v in record.items() if k != "provenance"}, indent=2))


if __name__ == "__main__":
    main()
