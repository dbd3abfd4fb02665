"""Label efficiency in 3D on MSD hippocampus MRI: full fine-tuning, probing, MLP ensemble, baselines.

Methods (every one through the product's own finetune/predict/evaluate code):
- ``ddpm``: full fine-tuning of the DDPM-pretrained U-Net (PTDR);
- ``random``: the same network and budget from random initialisation;
- ``other``: full fine-tuning of the masked-image-modelling pretraining (``--pretrained-other``);
- ``probe``: the frozen DDPM U-Net's decoder features at t = 10, 30, 60 read by a small conv head;
- ``mlp``: the same features read by a pixel-MLP ensemble (Baranchuk et al.);
- ``probe-tT``: probing with the single timestep T (the timestep ablation);
- ``ddpm-coords``/``probe-coords``: as ``ddpm``/``probe`` from a model pretrained with
  ``--coordinates position`` (``--pretrained-coords``); ``random-coords``: random init with them.

Split: a seeded half/half permutation of the 260 sorted case names (seed 0), fixed for
every method and N; few-shot cases are drawn from the training half only. Scores are
Dice per structure (anterior, posterior) on the test half (or its first --test-limit cases).

    python benchmarks/segmentation_hippocampus.py --pretrained MODEL_DIR --out benchmarks/results/hippocampus/run
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    apply_quick, draw_cases, link_subset, open_report, plot, run_grid, scored_split, table)
from DiffusionSegLib.evaluation.segmentation import evaluate_segmentations  # noqa: E402
from DiffusionSegLib.finetune.run import FinetuneOptions, finetune  # noqa: E402
from DiffusionSegLib.predict.run import PredictOptions, predict  # noqa: E402

CLASSES = ["anterior", "posterior"]


def method_options(args, method: str) -> dict:
    """FinetuneOptions fields that define ``method`` (initialisation, mode, timesteps)."""
    base, _, variant = method.partition("-")
    coords = variant == "coords"
    pretrained = {"ddpm": args.pretrained_coords if coords else args.pretrained, "other": args.pretrained_other,
                  "probe": args.pretrained_coords if coords else args.pretrained, "mlp": args.pretrained}.get(base)
    opts = {"pretrained": pretrained, "mode": base if base in ("probe", "mlp") else "full",
            "coordinates": "position" if coords and base == "random" else None}
    if variant.startswith("t"):
        opts["probe_timesteps"] = [int(variant[1:])]
    if base in ("probe", "mlp"):
        opts["learning_rate"] = args.probe_lr
    return opts


def run_one(args, method: str, n: int, seed: int, train: list[str], test_images: Path) -> dict:
    chosen = draw_cases(train, n, seed)
    run = args.work / f"{method}-n{n}-s{seed}"
    shutil.rmtree(run, ignore_errors=True)
    labels = link_subset(chosen, args.data / "labelsTr", run / "labels", ".nii.gz")
    options = {"learning_rate": args.lr, **method_options(args, method)}
    t0 = time.monotonic()
    summary = finetune(FinetuneOptions(
        task="segmentation", images=args.data / "imagesTr", annotations=labels, out=run / "model",
        classes=CLASSES, iterations=args.iterations, batch_size=args.batch_size, preset=args.preset,
        spacing=[1.0, 1.0, 1.0], patch_size=args.patch_size, modality="mri", mlp_members=args.mlp_members,
        checkpoint_every=args.iterations, seed=seed, device=args.device, progress="none", **options))
    train_s = time.monotonic() - t0
    t0 = time.monotonic()
    predict(PredictOptions(model=run / "model", images=test_images, out=run / "pred", device=args.device,
                           progress="none"))
    n_test = len(list(test_images.iterdir()))
    predict_s = (time.monotonic() - t0) / n_test
    s = evaluate_segmentations(run / "pred", args.data / "labelsTr", CLASSES)["summary"]
    record = {"method": method, "n": n, "seed": seed, "cases": chosen, "mean_dice": s["mean_dice"], "mIoU": s["mIoU"],
              "per_class": s["classes"], **{f"dice_{c}": s["classes"][c]["dice"] for c in CLASSES},
              "finetune_seconds": round(train_s, 1), "predict_seconds_per_volume": round(predict_s, 3),
              "final_loss": summary["final_loss"], "test_cases": s["n_cases"],
              "learning_rate": options["learning_rate"], "iterations": args.iterations,
              "scored_on": "validation" if args.validate else "test"}
    shutil.rmtree(run, ignore_errors=True)
    return record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "hippocampus")
    p.add_argument("--pretrained", type=Path, required=True, help="DDPM-pretrained 3D model")
    p.add_argument("--pretrained-other", type=Path, help="masked-image-modelling pretraining (method 'other')")
    p.add_argument("--pretrained-coords", type=Path, help="DDPM pretraining with --coordinates position")
    p.add_argument("--out", type=Path, required=True, help="results prefix: .json, .md and .png are written")
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "hippocampus")
    p.add_argument("--methods", nargs="+", default=["ddpm", "random"])
    p.add_argument("--ns", type=int, nargs="+", default=[1, 2, 5, 10])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=160,
                   help="fine-tuning steps; 160 was best on the validation split (80 underfits every method)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3, help="full fine-tuning")
    p.add_argument("--probe-lr", type=float, default=1e-3, help="probe and MLP heads")
    p.add_argument("--mlp-members", type=int, default=5)
    p.add_argument("--preset", default="tiny", help="for random init (must match the pretrained model)")
    p.add_argument("--patch-size", type=int, nargs=3, default=[40, 56, 40],
                   help="fine-tuning patch (x y z): nearly a whole volume, as nnU-Net plans for this task")
    p.add_argument("--test-limit", type=int, default=30,
                   help="score the first K test cases (0: all 130); the committed grids used 30")
    p.add_argument("--validate", type=int, metavar="K",
                   help="tuning mode: score on K cases held out of the TRAINING half (never the test half) "
                        "and draw the few-shot cases from the rest")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true",
                   help="N = 2 and 10, one seed, 40 iterations, 10 test volumes: under 10 minutes on one CPU core")
    args = p.parse_args()
    apply_quick(args, {"ns": [2, 10], "seeds": [0], "iterations": 40, "test_limit": 10})
    if not args.data.is_dir():
        sys.exit(f"error: {args.data}: hippocampus data not found. Fix: pass --data (see ../shared/data/README.md).")
    needs = {"other": "pretrained_other", "coords": "pretrained_coords"}
    for method in args.methods:
        for key, attr in needs.items():
            if key in method and not method.startswith("random") and getattr(args, attr) is None:
                sys.exit(f"error: method '{method}' needs --{attr.replace('_', '-')} MODEL_DIR.")
    cases = sorted(p.name[: -len(".nii.gz")] for p in (args.data / "labelsTr").glob("*.nii.gz"))
    train, test, test_images = scored_split(cases, args, args.data / "imagesTr", ".nii.gz")
    json_path = args.out.with_suffix(".json")
    report = open_report(json_path, args)
    report["split"] = {"train": len(train), "test": len(test)}
    run_grid(args, report, json_path, lambda m, n, seed: run_one(args, m, n, seed, train, test_images),
             lambda r: f"Dice {r['mean_dice']:.3f} (ant {r['dice_anterior']:.3f}, post {r['dice_posterior']:.3f})")
    records = report["records"]
    text = "\n\n".join([table(records, "mean_dice", "mean Dice", digits=3),
                        table(records, "dice_anterior", "anterior", digits=3),
                        table(records, "dice_posterior", "posterior", digits=3)])
    args.out.with_suffix(".md").write_text(text + "\n")
    plot(records, "mean_dice", "test mean Dice", "MSD hippocampus (MRI)", args.out.with_suffix(".png"))
    print(text)


if __name__ == "__main__":
    main()
