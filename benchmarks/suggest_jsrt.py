"""``diffusionseg suggest`` on JSRT: its cost (first and cached call), and k-medoids against k-centre.

1. Timing: ``suggest`` cold start on all 247 JSRT images with the DDPM-pretrained model, first call
   (empty feature cache) and second call (cached).
2. Coverage, on the training half of the benchmarks' fixed split (the pool the few-shot cases are drawn
   from), for K = 1, 2, 5, 10, of the k-medoids picks, the k-centre picks and 5 random draws
   (``draw_cases`` seeds 0-4, the segmentation benchmark's draws):
   - feature coverage: mean distance of every pool image to its nearest pick, in the embedded feature space
     ``suggest`` uses (what k-medoids minimises, so it favours k-medoids by construction);
   - pixel coverage: the same in raw pixels (each image 32x32, intensities scaled to [0, 1]): a space
     neither method saw;
   - mask coverage: mean over the pool of the smallest ``1 - mIoU`` (lungs and heart) between the image's
     ground-truth mask and a pick's mask: how well the picks' anatomy represents the pool's (labels are
     used for scoring only).
3. mIoU (optional, ``--miou-ns``): fine-tune from the picks at N = 1, 2 against the same 5 random draws,
   with ``segmentation_jsrt.run_one`` (method ddpm, the same settings for every draw), scored on the test
   half. Each record is appended to the JSON as it finishes.

    python benchmarks/suggest_jsrt.py --pretrained benchmarks/work/jsrt64-small --out benchmarks/results/suggest/suggest_jsrt
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import benchmarks.segmentation_jsrt as seg  # noqa: E402
from benchmarks.common import beside, draw_cases, link_subset, pretraining_record, scored_split, split  # noqa: E402
from DiffusionSegLib.atomic import write_json_atomic  # noqa: E402
from DiffusionSegLib.imageio import list_images, resample_to_size  # noqa: E402
from DiffusionSegLib.suggest import select  # noqa: E402
from DiffusionSegLib.vocabulary import AUGMENTATIONS, case_name  # noqa: E402
from DiffusionSegLib.suggest.cache import weights_sha256  # noqa: E402
from DiffusionSegLib.suggest.features import load_extractor  # noqa: E402
from DiffusionSegLib.suggest.run import SuggestOptions, open_cache, pool_features, suggest  # noqa: E402

STRATEGIES = ("kmedoids", "kcentre")


def timed_suggest(args, images: Path, count: int, strategy: str, out: Path) -> dict:
    return suggest(SuggestOptions(model=args.pretrained, images=images, count=count, out=out, strategy=strategy,
                                  cache_dir=args.work / "cache", device=args.device, progress="none"))


def pool_arrays(args, images: Path, cases: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embedded features as suggest embeds them, pixels 32x32 in [0, 1], masks 64x64) of ``cases``, in order."""
    extractor = load_extractor(args.pretrained, args.device)
    opts = SuggestOptions(model=args.pretrained, images=images, count=1, out="", cache_dir=args.work / "cache")
    paths = list_images(images)
    assert [case_name(p) for p in paths] == cases
    rows, computed = pool_features(extractor, open_cache(opts, extractor, weights_sha256(extractor.weights)), paths)
    assert computed == 0, "the features should be cached by the timing step"
    X = select.embed(np.stack([r["features"] for r in rows]), rows[0]["info"]["widths"])
    pixels, masks = [], []
    for case in cases:
        image = sitk.ReadImage(str(args.data / "images" / f"{case}.png"), sitk.sitkFloat32)
        small = sitk.GetArrayFromImage(resample_to_size(image, [32, 32]))
        pixels.append(((small - small.min()) / max(np.ptp(small), 1e-6)).ravel())
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(args.data / "labels" / f"{case}.png")))
        masks.append(label[::4, ::4])
    return X, np.array(pixels), np.array(masks)


def mask_distance(masks: np.ndarray, picks: list[int]) -> float:
    """Mean over the pool of min over picks of 1 - mIoU (classes 1..3) between the two masks."""
    def miou(a, b):
        scores = []
        for c in (1, 2, 3):
            union = np.logical_or(a == c, b == c).sum()
            scores.append(np.logical_and(a == c, b == c).sum() / union if union else 1.0)
        return float(np.mean(scores))
    return float(np.mean([min(1 - miou(m, masks[p]) for p in picks) for m in masks]))


def coverage_table(args, report: dict, train: list[str], train_images: Path) -> None:
    X, P, M = pool_arrays(args, train_images, train)
    rows = []
    for k in args.ks:
        sets = {}
        for strategy in STRATEGIES:
            r = timed_suggest(args, train_images, k, strategy, args.work / f"picks_{strategy}_k{k}")
            sets[strategy] = [train.index(s["case"]) for s in r["suggestions"]]
        for seed in args.random_seeds:
            sets[f"random_s{seed}"] = [train.index(c) for c in draw_cases(train, k, seed)]
        for name, idx in sets.items():
            rows.append({"k": k, "set": name, "cases": [train[i] for i in idx],
                         "feature_coverage": round(select.coverage(X, idx), 4),
                         "pixel_coverage": round(select.coverage(P, idx), 4),
                         "mask_coverage": round(mask_distance(M, idx), 4)})
    report["coverage"] = rows


def miou_runs(args, report: dict, train: list[str], train_images: Path) -> None:
    cases = sorted(case_name(p) for p in (args.data / "images").glob("*.png"))
    margs = argparse.Namespace(data=args.data, batch_size=args.batch_size, pretrained=args.pretrained,
                               pretrained_other=None, timestep=0, preset="small", image_size=[64, 64],
                               device=args.device, settings=None, validate=None, test_limit=args.test_limit,
                               work=args.work / "seg")
    _, test, test_images = scored_split(cases, margs, args.data / "images", ".png")
    variant = {"learning_rate": args.lr, "iterations": args.iterations, "augmentation": args.augmentation}
    done = {(r["set"], r["n"], r["seed"]) for r in report.setdefault("miou", [])}
    for n in args.miou_ns:
        # The picks are fine-tuned with training seeds --pick-train-seeds (a random draw's seed is also its
        # training seed), so the picks' spread over training runs can be told from the draws' spread.
        plan = [(s, seed, True) for seed in args.pick_train_seeds for s in STRATEGIES]
        plan += [(f"random_s{seed}", seed, False) for seed in args.random_seeds]
        plan.sort(key=lambda item: item[1] != 0)   # training seed 0 of everything first
        for name, seed, picked in plan:
            if (name, n, seed) in done:
                continue
            if time.strftime("%H:%M") >= args.stop_at:
                print(f"stopping: it is past {args.stop_at}", flush=True)
                return
            picks = None
            if picked:
                picks = sorted(s["case"] for s in timed_suggest(args, train_images, n, name,
                                                                args.work / f"picks_{name}_n{n}")["suggestions"])
            record = seg.run_one(margs, "ddpm", n, seed, train, test_images, variant, cases=picks)
            record["set"] = name
            report["miou"].append(record)
            write_json_atomic(args.json, report)
            print(f"n={n} {name}: mIoU {100 * record['mIoU']:.1f} ({record['wall_seconds']} s)", flush=True)


def summary_md(report: dict) -> str:
    t = report["timing"]
    lines = ["# `diffusionseg suggest` on JSRT", "",
             f"Model: {report['pretrained']} (DDPM, small preset, 64x64). Machine: {report['machine']}.", "",
             "## Cost (cold start, all 247 images, K = 10)", "",
             "| call | seconds | features computed | cached |", "|---|---|---|---|"]
    for name in ("first", "cached"):
        lines.append(f"| {name} | {t[name]['seconds']} | {t[name]['computed']} | {t[name]['cached']} |")
    lines += ["", "## Coverage of the training pool (lower is better; random: mean ± sd of 5 draws)", "",
              "| K | measure | k-medoids | k-centre | random |", "|---|---|---|---|---|"]
    for k in sorted({r["k"] for r in report["coverage"]}):
        rows = [r for r in report["coverage"] if r["k"] == k]
        for measure in ("feature_coverage", "pixel_coverage", "mask_coverage"):
            value = {r["set"]: r[measure] for r in rows}
            rnd = [v for s, v in value.items() if s.startswith("random")]
            lines.append(f"| {k} | {measure.replace('_coverage', '')} | {value['kmedoids']:.4f} | "
                         f"{value['kcentre']:.4f} | {np.mean(rnd):.4f} ± {np.std(rnd):.4f} |")
    if report.get("miou"):
        lines += ["", "## Fine-tuning from the picks (test mIoU %, ddpm, "
                  f"lr {report['miou'][0]['learning_rate']:g}, {report['miou'][0]['iterations']} steps)", "",
                  "| N | k-medoids (mean; each training seed) | k-centre | random (each draw) | random mean |",
                  "|---|---|---|---|---|"]
        for n in sorted({r["n"] for r in report["miou"]}):
            runs = [r for r in report["miou"] if r["n"] == n]
            rows = {r["set"]: 100 * r["mIoU"] for r in runs if r["set"].startswith("random")}
            rnd = list(rows.values())

            def fmt(name):
                values = [100 * r["mIoU"] for r in runs if r["set"] == name]
                if not values:
                    return "-"
                each = f" ({', '.join(f'{v:.1f}' for v in values)})" if len(values) > 1 else ""
                return f"{np.mean(values):.1f}{each}"
            lines.append(f"| {n} | {fmt('kmedoids')} | {fmt('kcentre')} | {', '.join(f'{v:.1f}' for v in rnd)} | "
                         f"{np.mean(rnd):.1f} |" if rnd else f"| {n} | {fmt('kmedoids')} | {fmt('kcentre')} | - | - |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "jsrt-256")
    p.add_argument("--pretrained", type=Path, default=REPO / "benchmarks" / "work" / "jsrt64-small")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "suggest" / "suggest_jsrt")
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "suggest")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 5, 10])
    p.add_argument("--random-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--miou-ns", type=int, nargs="*", default=[1, 2])
    p.add_argument("--pick-train-seeds", type=int, nargs="+", default=[0],
                   help="training seeds the picks are fine-tuned with (each a separate run)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--augmentation", default="mild", choices=AUGMENTATIONS,
                   help="fine-tuning recipe of the mIoU runs (mild: the recipe of the published table)")
    p.add_argument("--test-limit", type=int)
    p.add_argument("--stop-at", default="09:25", help="start no fine-tuning run after this time (HH:MM)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    args.json = beside(args.out, ".json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = json.loads(args.json.read_text()) if args.json.exists() else {}
    report.update(command=" ".join(["python", *sys.argv]), pretrained=str(args.pretrained),
                  pretraining=pretraining_record(args.pretrained),
                  machine=f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
                          f"load average at start {os.getloadavg()[0]:.1f}")
    if "timing" not in report:
        shutil.rmtree(args.work / "cache", ignore_errors=True)
        first = timed_suggest(args, args.data / "images", 10, "kmedoids", args.work / "all_first")
        second = timed_suggest(args, args.data / "images", 10, "kmedoids", args.work / "all_cached")
        report["timing"] = {name: {**r["timing"], "computed": r["features"]["computed"],
                                   "cached": r["features"]["cached"], "load_average": round(os.getloadavg()[0], 1)}
                            for name, r in (("first", first), ("cached", second))}
        report["all_images_picks"] = [s["case"] for s in second["suggestions"]]
        write_json_atomic(args.json, report)
        print(json.dumps(report["timing"]), flush=True)
    cases = sorted(case_name(p) for p in (args.data / "images").glob("*.png"))
    train, _ = split(cases)
    train_images = link_subset(train, args.data / "images", args.work / "train-images", ".png")
    coverage_table(args, report, train, train_images)
    write_json_atomic(args.json, report)
    beside(args.out, ".md").write_text(summary_md(report))
    print(summary_md(report), flush=True)
    if args.miou_ns:
        miou_runs(args, report, train, train_images)
        beside(args.out, ".md").write_text(summary_md(report))
        print(summary_md(report), flush=True)


if __name__ == "__main__":
    main()
