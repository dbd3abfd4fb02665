"""nnU-Net itself (nnunetv2) under the JSRT protocol: the same split, draws and scoring as segmentation_jsrt.py.

nnU-Net is not a DiffusionSeg dependency and pins its own torch, so it runs from its own virtual
environment, named by ``--nnunet-python``:

    python3 -m venv /work/nnunet-venv && /work/nnunet-venv/bin/pip install nnunetv2   # 2.8.1 with torch 2.14.1 here
    OMP_NUM_THREADS=1 python benchmarks/nnunet_jsrt.py --nnunet-python /work/nnunet-venv/bin/python \\
        --validate 25 --ns 1 2 --seeds 0 --epochs 5 10 --out benchmarks/results/jsrt_protocol/validation/nnunet

What nnU-Net gets: the N drawn training cases as a 2D nnU-Net dataset at ``--size`` pixels (64, the
working resolution of every method of the protocol, by default: 4x4 block means of the 256x256
images, a 4x4 block's majority class for the labels). nnU-Net then plans, preprocesses and trains
with its own recipe (its network, SGD with the poly schedule, its augmentation, deep supervision,
mirroring at inference) on the CPU, trained on all N cases (fold ``all``), for ``--epochs`` of its
250 iterations (its trainer variants ``nnUNetTrainer_<E>epochs``; the default 1000 epochs would be
250,000 iterations). The number of epochs, and whether nnU-Net mirrors (``--augmentation``: JSRT's
labels are lateral), are the settings the protocol chooses on validation, as steps and augmentation
are for the other methods; nnU-Net's learning rate (0.01) is its own. Its class probabilities
are resampled to 256x256 (bilinear) and arg-maxed, as every method's are, and scored by DiffusionSeg's
``evaluate`` on the test half (or on ``--validate K`` held-out training cases). nnU-Net's own
threads are held to ``OMP_NUM_THREADS`` (it would take every core) and its augmentation runs in
the training process (``nnUNet_n_proc_DA=0``), so it uses one core like every other benchmark job.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    beside, draw_cases, open_report, provenance, run_grid, scored_split, table)
from benchmarks.segmentation_jsrt import CLASSES  # noqa: E402
from DiffusionSegLib.evaluation.segmentation import evaluate_segmentations  # noqa: E402
from DiffusionSegLib.vocabulary import case_name  # noqa: E402

METHOD = "nnunet"
ITERATIONS_PER_EPOCH = 250   # nnU-Net's nnUNetTrainer.num_iterations_per_epoch
LEARNING_RATE = 1e-2         # nnU-Net's nnUNetTrainer.initial_lr (not a setting here)
EPOCH_VARIANTS = (1, 5, 10, 20, 50, 100)   # nnU-Net's trainers nnUNetTrainer_1epoch, nnUNetTrainer_<E>epochs
# The augmentation setting: nnU-Net's own, or without its mirroring. Why the second: JSRT's labels are
# lateral (right lung, left lung) and a mirrored chest X-ray swaps them, so nnU-Net's mirroring in training
# and at inference teaches and averages the wrong side; an nnU-Net user turns it off for such labels
# (nnUNetTrainerNoMirroring). Chosen on validation like every setting.
AUGMENTATIONS = {"nnU-Net": "", "nnU-Net, no mirroring": "_NoMirroring"}
DATASET_ID = 517             # any free nnU-Net dataset id: every run has its own nnUNet_raw folder
FULL_SIZE = 256              # JSRT's stored size, the size every method is scored at

# Runs an nnU-Net console entry point with torch's threads held to OMP_NUM_THREADS (nnU-Net sets them to
# the number of cores on a CPU, which would make two benchmark jobs on two cores slow each other 5-6x).
RUNNER = """
import importlib, os, sys, torch
threads = int(os.environ.get("OMP_NUM_THREADS") or 0)
if threads:
    set_threads = torch.set_num_threads
    torch.set_num_threads = lambda n: set_threads(max(1, min(n, threads)))
    torch.set_num_interop_threads = lambda n: None
    set_threads(threads)
# nnU-Net's trainers without mirroring exist for 250 epochs and more only; the same for every epoch count
# here, registered where nnU-Net looks trainers up by name (the first module of its trainer package). Their
# __init__ keeps nnU-Net's signature: nnU-Net records a trainer's arguments by reading it.
try:
    from nnunetv2.training.nnUNetTrainer import nnUNetTrainer as trainers
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import (
        nnUNetTrainerNoMirroring)
except ImportError:   # not nnU-Net's environment (the runner's own test)
    trainers = None

def no_mirroring_trainer(epochs):
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        nnUNetTrainerNoMirroring.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_epochs = epochs
    name = f"nnUNetTrainer_{epochs}epochs_NoMirroring"
    setattr(trainers, name, type(name, (nnUNetTrainerNoMirroring,), {"__init__": __init__}))

for epochs in EPOCH_VARIANTS if trainers else ():
    no_mirroring_trainer(epochs)
module, function = sys.argv[1].split(":")
sys.argv = [function, *sys.argv[2:]]
getattr(importlib.import_module(module), function)()
""".replace("EPOCH_VARIANTS", repr(EPOCH_VARIANTS))


def downsample(path: Path, size: int, label: bool) -> np.ndarray:
    """``(size, size)`` uint8: block means of the image, or each block's majority class of a label map."""
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    f = a.shape[0] // size
    if f == 1:
        return a.astype(np.uint8)
    blocks = a.reshape(size, f, size, f).transpose(0, 2, 1, 3).reshape(size, size, f * f)
    if not label:
        return np.round(blocks.mean(-1)).astype(np.uint8)
    counts = np.stack([(blocks == c).sum(-1) for c in range(len(CLASSES) + 1)])
    return counts.argmax(0).astype(np.uint8)


def write_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))


def nnunet(args, env: dict, entry: str, *argv: str, log: Path) -> None:
    """One nnU-Net command in its own environment; its output goes to ``log``; a failure exits naming the log."""
    with log.open("a") as out:
        done = subprocess.run([str(args.nnunet_python), "-c", RUNNER, entry, *argv], env=env, stdout=out,
                              stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"error: nnU-Net's {entry} failed (exit {done.returncode}); its output is in {log}")


def trainer_name(epochs: int, augmentation: str) -> str:
    """nnU-Net's trainer class for ``epochs`` with ``augmentation``: its own (nnUNetTrainer_1epoch is the one
    irregular name) or the runner's no-mirroring ones."""
    if epochs == 1 and not AUGMENTATIONS[augmentation]:
        return "nnUNetTrainer_1epoch"
    return f"nnUNetTrainer_{epochs}epochs{AUGMENTATIONS[augmentation]}"


def nnunet_inputs(args, scored: list[str], scored_images: Path) -> Path:
    """The scored images as nnU-Net reads them (``<case>_0000.png`` at ``--size``), written once for every run."""
    folder = args.work / f"{scored_images.name}-nnunet-size{args.size}"
    for case in scored:
        target = folder / f"{case}_0000.png"
        if not target.exists():   # written beside, then renamed: an interrupted run leaves no half file
            write_png(downsample(scored_images / f"{case}.png", args.size, False), folder / f"{case}.partial.png")
            os.replace(folder / f"{case}.partial.png", target)
    return folder


@functools.lru_cache(maxsize=1)
def nnunet_versions(python: Path) -> list[str]:
    """nnunetv2's and torch's versions in nnU-Net's environment (asked once per benchmark process)."""
    code = "import importlib.metadata as m; print(m.version('nnunetv2'), m.version('torch'))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True).stdout.split()


def run_one(args, n: int, seed: int, epochs: int, augmentation: str, train: list[str], scored: list[str],
            scored_inputs: Path) -> dict:
    """Train nnU-Net on the draw ``seed`` of N training cases for ``epochs`` with ``augmentation`` (a key of
    AUGMENTATIONS); predict ``scored`` from ``scored_inputs`` (:func:`nnunet_inputs`) and score them."""
    started = time.monotonic()
    chosen = draw_cases(train, n, seed)
    work = args.work / f"{METHOD}-n{n}-s{seed}-e{epochs}{AUGMENTATIONS[augmentation]}-size{args.size}"
    shutil.rmtree(work, ignore_errors=True)
    raw = work / "raw" / f"Dataset{DATASET_ID}_JSRT"
    for case in chosen:
        write_png(downsample(args.data / "images" / f"{case}.png", args.size, False),
                  raw / "imagesTr" / f"{case}_0000.png")
        write_png(downsample(args.data / "labels" / f"{case}.png", args.size, True), raw / "labelsTr" / f"{case}.png")
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "X-ray"}, "labels": {"background": 0, **{c: i + 1 for i, c in enumerate(CLASSES)}},
        "numTraining": len(chosen), "file_ending": ".png"}, indent=2))
    env = {**os.environ, "nnUNet_raw": str(work / "raw"), "nnUNet_preprocessed": str(work / "preprocessed"),
           "nnUNet_results": str(work / "results"), "nnUNet_n_proc_DA": "0", "nnUNet_compile": "false"}
    log = work / "nnunet.log"
    trainer = trainer_name(epochs, augmentation)
    nnunet(args, env, "nnunetv2.experiment_planning.plan_and_preprocess_entrypoints:plan_and_preprocess_entry",
           "-d", str(DATASET_ID), "-c", "2d", "-np", "1", "--verify_dataset_integrity", log=log)
    t_train = time.monotonic()
    nnunet(args, env, "nnunetv2.run.run_training:run_training_entry", str(DATASET_ID), "2d", "all", "-tr", trainer,
           "-device", "cpu", log=log)
    train_seconds = time.monotonic() - t_train
    probabilities = work / "test-out"
    nnunet(args, env, "nnunetv2.inference.predict_from_raw_data:predict_entry_point", "-i", str(scored_inputs),
           "-o", str(probabilities), "-d", str(DATASET_ID), "-c", "2d", "-f", "all", "-tr", trainer,
           "--save_probabilities", "-device", "cpu", "-npp", "1", "-nps", "1", log=log)
    pred = work / "pred"
    pred.mkdir()
    for case in scored:   # softmax resampled to the stored size, then arg-max, as every method's output is
        p = torch.from_numpy(np.load(probabilities / f"{case}.npz")["probabilities"]).float()   # (C, 1, H, W)
        p = F.interpolate(p[:, 0][None], size=(FULL_SIZE, FULL_SIZE), mode="bilinear", align_corners=False)[0]
        write_png(p.argmax(0).numpy().astype(np.uint8), pred / f"{case}.png")
    s = evaluate_segmentations(pred, args.data / "labels", CLASSES)["summary"]
    plans = json.loads((work / "preprocessed" / raw.name / "nnUNetPlans.json").read_text())["configurations"]["2d"]
    record = {"method": METHOD, "n": n, "seed": seed, "cases": chosen, "mIoU": s["mIoU"],
              "mean_dice": s["mean_dice"], "per_class": s["classes"], "test_cases": s["n_cases"],
              "learning_rate": LEARNING_RATE, "iterations": epochs * ITERATIONS_PER_EPOCH, "epochs": epochs,
              "augmentation": augmentation, "trainer": trainer, "image_size": [args.size, args.size],
              "nnunet_plan": {"patch_size": plans["patch_size"], "batch_size": plans["batch_size"]},
              "finetune_seconds": round(train_seconds, 1), "wall_seconds": round(time.monotonic() - started, 1),
              "scored_on": "validation" if args.validate else "test", "provenance": provenance(),
              "nnunet_versions": nnunet_versions(args.nnunet_python)}
    if args.settings:
        record["settings_from"] = str(args.settings)
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nnunet-python", type=Path, required=True, help="the Python of a venv with nnunetv2 installed")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "jsrt-256")
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "nnunet")
    p.add_argument("--out", type=Path, required=True, help="results prefix (.json and .md are written)")
    p.add_argument("--ns", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, nargs="+", default=[10], choices=EPOCH_VARIANTS,
                   help="nnU-Net epochs of 250 iterations (a grid; the values nnU-Net has a trainer for)")
    p.add_argument("--augmentation", nargs="+", default=list(AUGMENTATIONS), choices=list(AUGMENTATIONS),
                   help="nnU-Net's augmentation, with or without its mirroring (a grid)")
    p.add_argument("--settings", type=Path,
                   help="choice.json: each N's epochs and augmentation chosen on validation (replace the grids)")
    p.add_argument("--size", type=int, default=64, choices=[64, 128, 256], help="pixels nnU-Net works at")
    p.add_argument("--validate", type=int, help="score K cases held out of the training half (never the test half)")
    p.add_argument("--test-limit", type=int, help="score the first cases only")
    p.add_argument("--keep-work", action="store_true", help="keep nnU-Net's folders (deleted after each run)")
    args = p.parse_args()
    cases = sorted(case_name(x) for x in (args.data / "images").glob("*.png"))
    train, scored, scored_images = scored_split(cases, args, args.data / "images", ".png")
    json_path = beside(args.out, ".json")
    report = open_report(json_path, args)
    chosen = json.loads(args.settings.read_text())["choice"].get(METHOD, {}) if args.settings else {}

    def variants(method: str, n: int) -> list[dict]:   # report.py's choice holds steps, as for every method
        if str(n) in chosen:
            return [{"epochs": chosen[str(n)]["iterations"] // ITERATIONS_PER_EPOCH,
                     "augmentation": chosen[str(n)]["augmentation"]}]
        return [{"epochs": e, "augmentation": a} for e in args.epochs for a in args.augmentation]

    args.methods = [METHOD]
    inputs = nnunet_inputs(args, scored, scored_images)
    run_grid(args, report, json_path,
             lambda method, n, seed, variant: run_one(args, n, seed, variant["epochs"],
                                                      variant.get("augmentation", "nnU-Net"), train, scored, inputs),
             lambda r: f"mIoU {100 * r['mIoU']:.1f}", variants=variants)
    shown = [{**r, "method": f"nnunet ({r['epochs']} epochs, {r['augmentation']})"} for r in report["records"]]
    beside(args.out, ".md").write_text(table(shown, "mIoU", "mIoU %", scale=100) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
