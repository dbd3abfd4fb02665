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
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    apply_quick, beside, by_setting, draw_cases, link_subset, open_report, plot, run_grid,
    scored_split, table)
from benchmarks import sequential  # noqa: E402
from benchmarks.protocol import Run, add_arguments, check_inputs, variants_for  # noqa: E402
from benchmarks.sequential import add_sequential_arguments  # noqa: E402
from benchmarks.supervised_unet import segmentation_task  # noqa: E402
from DiffusionSegLib.evaluation.segmentation import evaluate_segmentations  # noqa: E402
from DiffusionSegLib.vocabulary import case_name  # noqa: E402

CLASSES = ["right_lung", "left_lung", "heart"]


def run_one(args, method: str, n: int, seed: int, train: list[str], test_images: Path, variant: dict,
            cases: list[str] | None = None, keep: Path | None = None) -> dict:
    """One method on the draw ``seed`` of N training cases (or on ``cases``); ``keep``: Run.record's."""
    chosen = draw_cases(train, n, seed) if cases is None else cases
    run = Run(args, method, n, seed, variant)
    labels = link_subset(chosen, args.data / "labels", run.folder / "labels", ".png")
    run.train(args.data / "images", labels, {"task": "segmentation", "classes": CLASSES}, segmentation_task(CLASSES),
              pool=run.pool_of(train, args.data / "images", ".png"))

    def scores(model: Path | None, pred: str) -> dict:
        s = evaluate_segmentations(run.predict(test_images, run.folder / pred, model), args.data / "labels",
                                   CLASSES)["summary"]
        return {"mIoU": s["mIoU"], "mean_dice": s["mean_dice"], "per_class": s["classes"], "n_cases": s["n_cases"]}

    final = run.score(scores)
    return run.record(chosen, {k: v for k, v in final.items() if k != "n_cases"}, final["n_cases"], keep)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p, data=REPO.parent / "shared" / "data" / "jsrt-256",
                  work=REPO / "benchmarks" / "work" / "segmentation", ns=[1, 2, 5, 10], iterations=[200],
                  image_size=[64, 64], protocol="jsrt_protocol", held_out_of="the TRAINING half (never the test half)",
                  quick="N = 1 and 10, one seed, 100 iterations, 40 test cases: under 10 minutes on 2 CPU cores")
    add_sequential_arguments(p)
    args = p.parse_args()
    apply_quick(args, sequential.QUICK if args.sequential else
                {"ns": [1, 10], "seeds": [0], "iterations": [100], "test_limit": 40})
    check_inputs(args, "JSRT")
    cases = sorted(case_name(p) for p in (args.data / "images").glob("*.png"))
    train, test, test_images = scored_split(cases, args, args.data / "images", ".png")
    if args.sequential:
        dataset = sequential.Dataset(
            run_one=lambda n, seed, variant, chosen, keep: run_one(args, "ddpm", n, seed, train, test_images, variant,
                                                                   chosen, keep),
            pool=train, pool_images=link_subset(train, args.data / "images", args.work / "pool-images", ".png"),
            annotations=(args.data / "labels", ".png"), task="segmentation", metric="mIoU", higher_is_better=True,
            scale=100, scored_cases=len(test))
        print(sequential.run(args, dataset, variants_for(args), lambda path: open_report(path, args)))
        return
    json_path = beside(args.out, ".json")
    report = open_report(json_path, args)
    report["split"] = {"train": len(train), "test": len(test)}
    run_grid(args, report, json_path,
             lambda m, n, seed, variant: run_one(args, m, n, seed, train, test_images, variant),
             lambda r: f"mIoU {100 * r['mIoU']:.1f}", variants=variants_for(args), seeds_outer=args.seeds_outer)
    # Each (learning rate, steps) of a sweep is its own column.
    shown = by_setting(report["records"])
    text = table(shown, "mIoU", "mIoU % (mean ± sd over seeds)", scale=100)
    beside(args.out, ".md").write_text(text + "\n")
    plot(shown, "mIoU", "test mIoU (%)", "JSRT: lungs and heart", beside(args.out, ".png"), scale=100)
    print(text)


if __name__ == "__main__":
    main()
