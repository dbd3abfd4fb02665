"""How well ``diffusionseg curve`` predicts the next N's accuracy on JSRT.

For each seed, a seeded order of the training half's cases; the first N of it are the
user's labeled cases (nested: N+1 is N plus the next case of the order). For each N in
``--ns``, ``curve`` (the library function, its default sizes and folds) is run on those N
cases with the JSRT benchmark's validated fine-tuning settings (small preset at 64 x 64,
learning rate 1e-3, 200 steps, batch 4, timestep 0; benchmarks/results/jsrt/summary.md) and
predicts the mIoU at N and N+1; the model fine-tuned with the same settings on the first N
and N+1 cases is scored on the fixed test half (as segmentation_jsrt.py scores it). The
raw JSON is rewritten after every step (a re-run continues), with each curve's own
curve.json and curve.png copied beside it.

    python benchmarks/curve_jsrt.py --pretrained benchmarks/work/jsrt64-small
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import beside, link_subset, open_report, scored_split  # noqa: E402
from DiffusionSegLib.curve.run import CurveOptions, curve  # noqa: E402
from DiffusionSegLib.evaluation.segmentation import evaluate_segmentations  # noqa: E402
from DiffusionSegLib.finetune.run import FinetuneOptions, finetune  # noqa: E402
from DiffusionSegLib.predict.run import PredictOptions, predict  # noqa: E402
from DiffusionSegLib.vocabulary import case_name  # noqa: E402

CLASSES = ["right_lung", "left_lung", "heart"]


def order_of(train: list[str], seed: int) -> list[str]:
    return [train[i] for i in np.random.default_rng(2000 + seed).permutation(len(train))]


def measured(args, cases: list[str], test_images: Path, work: Path) -> dict:
    """Fine-tune on ``cases`` with the validated settings and score the test half (mIoU, mean Dice)."""
    shutil.rmtree(work, ignore_errors=True)
    labels = link_subset(cases, args.data / "labels", work / "labels", ".png")
    t0 = time.monotonic()
    finetune(FinetuneOptions(task="segmentation", images=args.data / "images", annotations=labels, out=work / "model",
                             pretrained=args.pretrained, classes=CLASSES, iterations=args.iterations,
                             batch_size=args.batch_size, learning_rate=args.lr, timestep=0,
                             checkpoint_every=args.iterations, seed=args.seed_finetune, device=args.device,
                             progress="none"))
    predict(PredictOptions(model=work / "model", images=test_images, out=work / "pred", device=args.device,
                           progress="none"))
    s = evaluate_segmentations(work / "pred", args.data / "labels", CLASSES)["summary"]
    shutil.rmtree(work, ignore_errors=True)
    return {"mIoU": s["mIoU"], "mean_dice": s["mean_dice"], "test_cases": s["n_cases"],
            "seconds": round(time.monotonic() - t0, 1)}


def estimated(args, cases: list[str], work: Path, copy_to: Path) -> dict:
    """``curve`` on ``cases`` (mIoU), its JSON and PNG copied to ``copy_to``.json/.png."""
    shutil.rmtree(work, ignore_errors=True)
    labels = link_subset(cases, args.data / "labels", work / "labels", ".png")
    result = curve(CurveOptions(task="segmentation", pretrained=args.pretrained, images=args.data / "images",
                                annotations=labels, out=work / "curve", folds=args.folds, iterations=args.iterations,
                                metric="iou", batch_size=args.batch_size, learning_rate=args.lr, classes=CLASSES,
                                seed=args.seed_finetune, device=args.device, progress="none",
                                command=f"curve_jsrt.py: curve on {len(cases)} JSRT cases"))
    copy_to.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "curve" / "curve.json", beside(copy_to, ".json"))
    shutil.copyfile(work / "curve" / "curve.png", beside(copy_to, ".png"))
    shutil.rmtree(work, ignore_errors=True)
    return {k: result[k] for k in ("predictions", "fit", "sizes", "sentence", "settings", "seconds")}


def report_md(report: dict) -> str:
    rows = report["records"]
    meas = {(r["seed"], r["n"]): r for r in rows if r["kind"] == "measured"}
    lines = ["## curve's prediction of test mIoU (%) at N+1 from N labeled JSRT cases",
             "",
             "| seed | N | fine-tunings | predicted N (80% band) | measured N | predicted N+1 (80% band) | "
             "measured N+1 | error N+1 | predicted gain (band) | measured gain | in band |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    errors, gain_errors, covered = [], [], []
    for r in sorted((r for r in rows if r["kind"] == "curve"), key=lambda r: (r["seed"], r["n"])):
        now, one = r["predictions"][0], r["predictions"][1]
        m0, m1 = meas.get((r["seed"], r["n"])), meas.get((r["seed"], r["n"] + 1))
        if m1 is None:
            continue
        err = 100 * (one["estimate"] - m1["mIoU"])
        inside = one["lower"] <= m1["mIoU"] <= one["upper"]
        errors.append(abs(err))
        covered.append(inside)
        gain = f"{100 * (m1['mIoU'] - m0['mIoU']):+.1f}" if m0 else "-"
        if m0:
            gain_errors.append(abs(100 * one["gain"] - 100 * (m1["mIoU"] - m0["mIoU"])))
        m0_text = f"{100 * m0['mIoU']:.1f}" if m0 else "-"
        lines.append(f"| {r['seed']} | {r['n']} | {r['settings']['finetunings']} | {100 * now['estimate']:.1f} "
                     f"({100 * now['lower']:.1f}-{100 * now['upper']:.1f}) | {m0_text} | "
                     f"{100 * one['estimate']:.1f} ({100 * one['lower']:.1f}-{100 * one['upper']:.1f}) | "
                     f"{100 * m1['mIoU']:.1f} | {err:+.1f} | {100 * one['gain']:+.2f} "
                     f"({100 * one['gain_lower']:+.2f} to {100 * one['gain_upper']:+.2f}) | {gain} | "
                     f"{'yes' if inside else 'no'} |")
    if errors:
        lines += ["", f"Mean absolute error of the N+1 prediction: {np.mean(errors):.2f} mIoU points over "
                      f"{len(errors)} prediction(s) (target: within 2); measured N+1 inside the 80% band: "
                      f"{sum(covered)} of {len(covered)}."]
    if gain_errors:
        lines.append(f"Mean absolute error of the predicted gain N -> N+1: {np.mean(gain_errors):.2f} mIoU points.")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "jsrt-256")
    p.add_argument("--pretrained", type=Path, default=REPO / "benchmarks" / "work" / "jsrt64-small")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "curve" / "curve_jsrt")
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "curve")
    p.add_argument("--ns", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--seed-finetune", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    args.validate, args.test_limit = None, None
    cases = sorted(case_name(q) for q in (args.data / "images").glob("*.png"))
    train, test, test_images = scored_split(cases, args, args.data / "images", ".png")
    json_path = beside(args.out, ".json")
    report = open_report(json_path, args)
    report["split"] = {"train": len(train), "test": len(test)}

    def save():
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1) + "\n")
        beside(args.out, ".md").write_text(report_md(report))

    done = {(r["kind"], r["seed"], r["n"]) for r in report["records"]}
    for seed in args.seeds:
        order = order_of(train, seed)
        for n in args.ns:
            for kind, size in (("measured", n), ("curve", n), ("measured", n + 1)):
                if (kind, seed, size) in done:
                    continue
                chosen = sorted(order[:size])
                print(f"seed {seed}: {kind} N={size} ...", flush=True)
                if kind == "measured":
                    record = measured(args, chosen, test_images, args.work / f"measured-s{seed}-n{size}")
                else:
                    record = estimated(args, chosen, args.work / f"curve-s{seed}-n{size}",
                                       args.out.parent / f"curve_jsrt_s{seed}_n{size}")
                report["records"].append({"kind": kind, "seed": seed, "n": size, "cases": chosen, **record})
                done.add((kind, seed, size))
                save()
                print(f"  {json.dumps({k: v for k, v in record.items() if k in ('mIoU', 'sentence', 'seconds')})}",
                      flush=True)
    save()
    print(report_md(report))


if __name__ == "__main__":
    main()
