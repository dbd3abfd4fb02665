"""Label efficiency on JSRT: few-shot segmentation from a DDPM-pretrained U-Net against baselines.

For each method (DDPM-pretrained, random initialisation, "other": a model pretrained
with another self-supervised objective, e.g. masked image modelling, and "supervised": a
plain MONAI BasicUNet trained nnU-Net-style from scratch, see supervised_unet.py), each
number of labeled training cases N and each seed (a different draw of the N cases),
fine-tune, predict the fixed test split, and score per-class Dice and IoU (mIoU =
mean IoU over right lung, left lung and heart; background excluded). Results are
appended to the raw JSON after every run, so an interrupted benchmark keeps what it
measured; the table and the plot are made from the JSON.

Learning rate and steps: one value each for every method, a grid (``--lr 3e-4 1e-3
--iterations 200 600``, every combination run, for sweeps with ``--validate``), or per
method and N from a JSON written by ``report.py jsrt_protocol_choose`` (``--settings``).

    python benchmarks/segmentation_jsrt.py --pretrained MODEL_DIR --out benchmarks/results/segmentation_jsrt
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    apply_quick, draw_cases, link_subset, open_report, plot, pretraining_record, run_grid, scored_split, table)
from benchmarks.supervised_unet import SupervisedOptions, train_and_predict  # noqa: E402
from DiffusionSegLib.evaluation.segmentation import evaluate_segmentations  # noqa: E402
from DiffusionSegLib.finetune.run import FinetuneOptions, finetune  # noqa: E402
from DiffusionSegLib.predict.run import PredictOptions, predict  # noqa: E402
from DiffusionSegLib.vocabulary import AUGMENTATIONS, DEFAULT_AUGMENTATION, case_name  # noqa: E402

CLASSES = ["right_lung", "left_lung", "heart"]


def run_one(args, method: str, n: int, seed: int, train: list[str], test_images: Path, work: Path,
            variant: dict) -> dict:
    chosen = draw_cases(train, n, seed)
    lr, iterations = variant["learning_rate"], variant["iterations"]
    # The supervised baseline always has its own (strong) recipe; the DiffusionSeg methods sweep theirs.
    augmentation = SupervisedOptions.augmentation if method == "supervised" else variant["augmentation"]
    run = work / f"{method}-n{n}-s{seed}-lr{lr:g}-it{iterations}-{augmentation}"
    shutil.rmtree(run, ignore_errors=True)
    labels = link_subset(chosen, args.data / "labels", run / "labels", ".png")
    t0 = time.monotonic()
    pretrained = {"ddpm": args.pretrained, "other": args.pretrained_other}.get(method)
    if method == "supervised":
        summary = train_and_predict(args.data / "images", labels, test_images, run / "pred", CLASSES, SupervisedOptions(
            iterations=iterations, batch_size=args.batch_size, learning_rate=lr, image_size=tuple(args.image_size),
            seed=seed))
        train_s = summary["train_seconds"]
        extra = {"recipe": {"network": "monai.networks.nets.BasicUNet", **summary["options"]},
                 "parameters": summary["parameters"]}
    else:
        summary = finetune(FinetuneOptions(
            task="segmentation", images=args.data / "images", annotations=labels, out=run / "model",
            pretrained=pretrained, classes=CLASSES, iterations=iterations,
            batch_size=args.batch_size, learning_rate=lr, timestep=args.timestep, preset=args.preset,
            image_size=args.image_size, modality="xray", checkpoint_every=iterations, seed=seed,
            augmentation=augmentation,
            device=args.device, progress="none"))
        train_s = time.monotonic() - t0
        predict(PredictOptions(model=run / "model", images=test_images, out=run / "pred", device=args.device,
                               progress="none"))
        extra = {"pretraining": pretraining_record(pretrained)} if pretrained else {}
    results = evaluate_segmentations(run / "pred", args.data / "labels", CLASSES)
    s = results["summary"]
    record = {"method": method, "n": n, "seed": seed, "cases": chosen, "mIoU": s["mIoU"], "mean_dice": s["mean_dice"],
              "per_class": s["classes"], "finetune_seconds": round(train_s, 1),
              "wall_seconds": round(time.monotonic() - t0, 1), "final_loss": summary["final_loss"],
              "test_cases": s["n_cases"], "learning_rate": lr, "iterations": iterations,
              "batch_size": args.batch_size, "image_size": list(args.image_size), "augmentation": augmentation,
              "timestep": None if method == "supervised" else args.timestep,
              "settings_from": str(args.settings) if args.settings else "command line",
              "scored_on": "validation" if args.validate else "test", **extra}
    shutil.rmtree(run, ignore_errors=True)
    return record


def variants_for(args):
    """``(method, n) -> [{"learning_rate", "iterations", "augmentation"}, ...]``: the --settings choice, else
    the command-line grid (the supervised baseline has one augmentation, its own)."""
    chosen = json.loads(args.settings.read_text())["choice"] if args.settings else None

    def variants(method: str, n: int) -> list[dict]:
        if chosen is not None:
            per_n = chosen[method]  # {"1": {...}, "2": {...}}; another N takes the nearest N's setting
            nearest = min(per_n, key=lambda k: (abs(int(k) - n), int(k)))
            setting = per_n[nearest]
            return [{"learning_rate": setting["learning_rate"], "iterations": setting["iterations"],
                     # choices from before the augmentation sweep were all made with the then-only recipe
                     **({} if method == "supervised" else {"augmentation": setting.get("augmentation", "mild")})}]
        augmentations = ["strong"] if method == "supervised" else args.augmentation
        return [{"learning_rate": lr, "iterations": it, **({} if method == "supervised" else {"augmentation": a})}
                for lr in args.lr for it in args.iterations for a in augmentations]

    return variants


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "jsrt-256")
    p.add_argument("--pretrained", type=Path, help="DDPM-pretrained model (needed by method ddpm)")
    p.add_argument("--pretrained-other", type=Path, help="another pretraining (e.g. pretrain --objective masked)")
    p.add_argument("--out", type=Path, required=True, help="results prefix: .json, .md and .png are written")
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "segmentation")
    p.add_argument("--methods", nargs="+", default=["ddpm", "random"])
    p.add_argument("--ns", type=int, nargs="+", default=[1, 2, 5, 10])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iterations", type=int, nargs="+", default=[200], help="one value, or a grid to sweep")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, nargs="+", default=[1e-3], help="one value, or a grid to sweep")
    p.add_argument("--augmentation", nargs="+", default=[DEFAULT_AUGMENTATION], choices=AUGMENTATIONS,
                   help="fine-tuning augmentation of the DiffusionSeg methods: one recipe, or a grid to sweep")
    p.add_argument("--settings", type=Path,
                   help="JSON with the learning rate and steps per method and N chosen on validation "
                        "(benchmarks/results/jsrt_protocol/choice.json); replaces --lr and --iterations")
    p.add_argument("--seeds-outer", action="store_true",
                   help="run draw by draw (every N of a draw before the next draw), so a stopped grid has whole pairs")
    p.add_argument("--timestep", type=int, default=0)
    p.add_argument("--preset", default="small", help="for random init (must match the pretrained model)")
    p.add_argument("--image-size", type=int, nargs=2, default=[64, 64])
    p.add_argument("--test-limit", type=int, help="score only the first K test cases (quick mode)")
    p.add_argument("--validate", type=int, metavar="K",
                   help="tuning mode: score on K cases held out of the TRAINING half (never the test half) "
                        "and draw the few-shot cases from the rest")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true",
                   help="N = 1 and 10, one seed, 100 iterations, 40 test cases: under 10 minutes on 2 CPU cores")
    args = p.parse_args()
    apply_quick(args, {"ns": [1, 10], "seeds": [0], "iterations": [100], "test_limit": 40})
    if not args.data.is_dir():
        sys.exit(f"error: {args.data}: JSRT data not found. Fix: pass --data (see ../shared/data/README.md).")
    if "ddpm" in args.methods and args.pretrained is None:
        sys.exit("error: method 'ddpm' needs --pretrained MODEL_DIR.")
    if "other" in args.methods and args.pretrained_other is None:
        sys.exit("error: method 'other' needs --pretrained-other MODEL_DIR.")
    cases = sorted(case_name(p) for p in (args.data / "images").glob("*.png"))
    train, test, test_images = scored_split(cases, args, args.data / "images", ".png")
    json_path = args.out.with_suffix(".json")
    report = open_report(json_path, args)
    report["split"] = {"train": len(train), "test": len(test)}
    run_grid(args, report, json_path,
             lambda m, n, seed, variant: run_one(args, m, n, seed, train, test_images, args.work, variant),
             lambda r: f"mIoU {100 * r['mIoU']:.1f}", variants=variants_for(args), seeds_outer=args.seeds_outer)
    # Each (learning rate, steps) of a sweep is its own column.
    shown = [{**r, "method": f"{r['method']} (lr {r['learning_rate']:g}, {r['iterations']} steps)"}
             if "iterations" in r else r for r in report["records"]]
    text = table(shown, "mIoU", "mIoU % (mean ± sd over seeds)", scale=100)
    args.out.with_suffix(".md").write_text(text + "\n")
    plot(shown, "mIoU", "test mIoU (%)", "JSRT: lungs and heart", args.out.with_suffix(".png"), scale=100)
    print(text)


if __name__ == "__main__":
    main()
