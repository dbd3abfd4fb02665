"""Few-shot landmark detection on ISBI 2015 cephalograms: DDPM-pretrained against baselines.

For each method (DDPM-pretrained, random initialisation, and any other pretrained model
given with --pretrained-other), each N (training images drawn from the official train
split 001-150) and seed, fine-tune with the same budget, predict test1 (151-300), and
score the mean radial error (MRE, mm) and the success detection rates (SDR at 2, 2.5,
3, 4 mm). Results are appended after every run.

    python benchmarks/landmarks_isbi.py --pretrained MODEL_DIR --out benchmarks/results/landmarks_isbi
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

from benchmarks.common import apply_quick, draw_cases, link_subset, open_report, plot, run_grid, table
from DiffusionSegLib.evaluation.landmarks import evaluate_landmarks
from DiffusionSegLib.finetune.run import FinetuneOptions, finetune
from DiffusionSegLib.predict.run import PredictOptions, predict


def splits(data: Path) -> dict[str, list[str]]:
    doc = json.loads((data / "dataset.json").read_text())
    return {name: [str(c) for c in cases] for name, cases in doc["splits"].items()}


def _scores(pred: Path, data: Path) -> dict:
    overall = evaluate_landmarks(pred, data / "landmarks")["summary"]["overall"]
    return {"mre_mm": overall["mre_mm"], "sd_mm": overall["sd_mm"], "sdr_percent": overall["sdr_percent"],
            "sdr2": overall["sdr_percent"]["2"]}


def run_one(args, method: str, n: int, seed: int, train: list[str], test_images: dict[str, Path]) -> dict:
    """Fine-tune on N drawn training images; the headline numbers are on the first test split."""
    chosen = draw_cases(train, n, seed)
    run = args.work / f"{method}-n{n}-s{seed}"
    shutil.rmtree(run, ignore_errors=True)
    marks = link_subset(chosen, args.data / "landmarks", run / "landmarks", ".mrk.json")
    pretrained = {"ddpm": args.pretrained, "other": args.pretrained_other}.get(method)
    t0 = time.monotonic()
    summary = finetune(FinetuneOptions(
        task="landmarks", images=args.data / "images", annotations=marks, out=run / "model", pretrained=pretrained,
        iterations=args.iterations, batch_size=args.batch_size, learning_rate=args.lr, sigma_mm=args.sigma_mm,
        preset=args.preset, image_size=args.image_size, modality="xray", checkpoint_every=args.iterations,
        seed=seed, device=args.device, progress="none"))
    train_s = time.monotonic() - t0
    scores = {}
    for name, images in test_images.items():
        predict(PredictOptions(model=run / "model", images=images, out=run / f"pred-{name}", device=args.device,
                               progress="none"))
        scores[name] = _scores(run / f"pred-{name}", args.data)
    shutil.rmtree(run, ignore_errors=True)
    first = scores[args.test_splits[0]]
    return {"method": method, "n": n, "seed": seed, "cases": chosen, **first, "splits": scores,
            "finetune_seconds": round(train_s, 1), "final_loss": summary["final_loss"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "isbi-ceph")
    p.add_argument("--pretrained", type=Path, required=True, help="DDPM-pretrained model")
    p.add_argument("--pretrained-other", type=Path, help="another pretraining (e.g. --objective masked)")
    p.add_argument("--out", type=Path, required=True, help="results prefix: .json, .md and .png are written")
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "landmarks")
    p.add_argument("--methods", nargs="+", default=["ddpm", "random"])
    p.add_argument("--ns", type=int, nargs="+", default=[1, 5, 10, 25])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sigma-mm", type=float, default=3.0)
    p.add_argument("--preset", default="small", help="for random init (must match the pretrained model)")
    p.add_argument("--image-size", type=int, nargs=2, default=[128, 160])
    p.add_argument("--test-splits", nargs="+", default=["test1", "test2"],
                   help="scored splits; the first gives the headline numbers")
    p.add_argument("--test-limit", type=int, help="score only the first K test images (quick mode)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true",
                   help="N = 5 and 25, one seed, 150 iterations, 30 test images at 64x80: about 10 minutes")
    args = p.parse_args()
    apply_quick(args, {"ns": [5, 25], "seeds": [0], "iterations": 150, "test_limit": 30, "image_size": [64, 80],
                       "test_splits": ["test1"]})
    if not args.data.is_dir():
        sys.exit(f"error: {args.data}: ISBI data not found. Fix: pass --data (see ../shared/data/README.md).")
    if "other" in args.methods and args.pretrained_other is None:
        sys.exit("error: method 'other' needs --pretrained-other MODEL_DIR.")
    split = splits(args.data)
    test_images = {}
    for name in args.test_splits:
        test = split[name][: args.test_limit] if args.test_limit else split[name]
        test_images[name] = link_subset(test, args.data / "images", args.work / f"{name}-images-{len(test)}", ".nrrd")
    json_path = args.out.with_suffix(".json")
    report = open_report(json_path, args)
    report["split"] = {"train": len(split["train"]),
                       **{name: len(list(folder.iterdir())) for name, folder in test_images.items()}}
    run_grid(args, report, json_path, lambda m, n, seed: run_one(args, m, n, seed, split["train"], test_images),
             lambda r: f"MRE {r['mre_mm']:.2f} mm, SDR@2mm {r['sdr2']:.1f} %")
    text = ""
    for name in args.test_splits:
        on_split = [{**r, **r["splits"][name]} for r in report["records"] if name in r.get("splits", {})]
        text += (f"### {name}\n\n" + table(on_split, "mre_mm", "MRE mm", digits=2) + "\n\n"
                 + table(on_split, "sdr2", "SDR@2mm %") + "\n\n")
    args.out.with_suffix(".md").write_text(text + "\n")
    plot(report["records"], "mre_mm", "test MRE (mm)", "ISBI 2015 cephalograms", args.out.with_suffix(".png"))
    print(text)


if __name__ == "__main__":
    main()
