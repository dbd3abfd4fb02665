"""Few-shot landmark detection on ISBI 2015 cephalograms: DDPM-pretrained against baselines.

For each method (DDPM-pretrained, random initialisation, "other": a model pretrained with
another self-supervised objective, and "supervised": a plain MONAI BasicUNet trained from
scratch on the heatmaps with the product's landmark loss and the strong augmentation
recipe, see supervised_unet.py), each N (training images drawn from the official train
split 001-150) and seed (a different draw, the same for every method), fine-tune, predict
test1 (151-300) and test2 (301-400), and score the mean radial error (MRE, mm; lower is
better) and the success detection rates (SDR at 2, 2.5, 3, 4 mm). Results are appended
after every run.

The protocol is JSRT's (benchmarks/protocol.py): ``--validate K`` scores K images held out
of the train split instead of test1/test2 (which are then never read) and draws the N
images from the rest; ``--lr``, ``--iterations`` and ``--augmentation`` take grids, every
combination run; ``report.py isbi_protocol/validation`` writes the best per method and N to
``choice.json``, which ``--settings`` then uses on test.

    python benchmarks/landmarks_isbi.py --pretrained MODEL_DIR --out benchmarks/results/landmarks_isbi
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    apply_quick, beside, by_setting, draw_cases, link_subset, open_report, plot, run_grid, scored_sets, table)
from benchmarks import sequential  # noqa: E402
from benchmarks.protocol import Run, add_arguments, check_inputs, variants_for  # noqa: E402
from benchmarks.sequential import add_sequential_arguments  # noqa: E402
from DiffusionSegLib.evaluation.landmarks import evaluate_landmarks  # noqa: E402
from DiffusionSegLib.finetune.cases import LANDMARK_SUFFIXES, annotation_files  # noqa: E402
from DiffusionSegLib.finetune.tasks import LandmarkTask  # noqa: E402
from DiffusionSegLib.landmarks import read_landmarks  # noqa: E402


def splits(data: Path) -> dict[str, list[str]]:
    doc = json.loads((data / "dataset.json").read_text())
    return {name: [str(c) for c in cases] for name, cases in doc["splits"].items()}


def _scores(pred: Path, data: Path) -> dict:
    summary = evaluate_landmarks(pred, data / "landmarks")["summary"]
    overall = summary["overall"]
    return {"mre_mm": overall["mre_mm"], "sd_mm": overall["sd_mm"], "sdr_percent": overall["sdr_percent"],
            "sdr2": overall["sdr_percent"]["2"], "n_cases": summary["n_cases"]}


def landmark_task(marks: Path, sigma_mm: float) -> LandmarkTask:
    """The landmarks to learn as ``finetune`` names them: every name of the files, in order of first appearance."""
    names = [n for path in annotation_files(marks, LANDMARK_SUFFIXES).values() for n in read_landmarks(path).names]
    return LandmarkTask(names=list(dict.fromkeys(names)), sigma_mm=sigma_mm)


def run_one(args, method: str, n: int, seed: int, train: list[str], scored: dict[str, Path], variant: dict,
            cases: list[str] | None = None, keep: Path | None = None) -> dict:
    """Train on N drawn training images (or on ``cases``); the headline numbers are on the first scored set
    (test1, or validation); ``keep``: Run.record's."""
    chosen = draw_cases(train, n, seed) if cases is None else cases
    run = Run(args, method, n, seed, variant)
    marks = link_subset(chosen, args.data / "landmarks", run.folder / "landmarks", ".mrk.json")
    run.train(args.data / "images", marks, {"task": "landmarks", "sigma_mm": args.sigma_mm},
              landmark_task(marks, args.sigma_mm), pool=run.pool_of(train, args.data / "images", ".nrrd"))

    def scores(model: Path | None, pred: str) -> dict:
        """The headline scores (first scored set) and every set's under "splits"."""
        on = {name: _scores(run.predict(images, run.folder / f"{pred}-{name}", model), args.data)
              for name, images in scored.items()}
        return {**on[next(iter(scored))], "splits": on}

    final = run.score(scores)
    return run.record(chosen, {k: v for k, v in final.items() if k != "n_cases"}, final["n_cases"], keep)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p, data=REPO.parent / "shared" / "data" / "isbi-ceph",
                  work=REPO / "benchmarks" / "work" / "landmarks", ns=[1, 5, 10, 25], iterations=[200],
                  image_size=[64, 80], protocol="isbi_protocol",
                  held_out_of="the official TRAINING split 001-150 (test1 and test2 are never read)",
                  quick="N = 5 and 25, one seed, 150 iterations, 30 test1 images at 64x80: about 10 minutes")
    p.add_argument("--sigma-mm", type=float, default=3.0)
    p.add_argument("--test-splits", nargs="+", default=["test1", "test2"],
                   help="scored splits; the first gives the headline numbers")
    add_sequential_arguments(p)
    args = p.parse_args()
    apply_quick(args, {"ns": [5, 25], "seeds": [0], "iterations": [150], "test_limit": 30, "image_size": [64, 80],
                       "test_splits": ["test1"]})
    if args.sequential:
        apply_quick(args, sequential.QUICK)
    check_inputs(args, "ISBI")
    split = splits(args.data)
    train, scored_cases, scored = scored_sets(split["train"], {name: split[name] for name in args.test_splits}, args,
                                              args.data / "images", ".nrrd")
    if args.sequential:
        dataset = sequential.Dataset(
            run_one=lambda n, seed, variant, chosen, keep: run_one(args, "ddpm", n, seed, train, scored, variant,
                                                                   chosen, keep),
            pool=train, pool_images=link_subset(train, args.data / "images", args.work / "pool-images", ".nrrd"),
            annotations=(args.data / "landmarks", ".mrk.json"), task="landmarks", metric="mre_mm",
            higher_is_better=False, scored_cases=len(next(iter(scored_cases.values()))))
        print(sequential.run(args, dataset, variants_for(args), lambda path: open_report(path, args)))
        return
    json_path = beside(args.out, ".json")
    report = open_report(json_path, args)
    report["split"] = {"train": len(train), **{name: len(cases) for name, cases in scored_cases.items()}}
    report["scored_cases"] = scored_cases
    run_grid(args, report, json_path,
             lambda m, n, seed, variant: run_one(args, m, n, seed, train, scored, variant),
             lambda r: f"MRE {r['mre_mm']:.2f} mm, SDR@2mm {r['sdr2']:.1f} %", variants=variants_for(args),
             seeds_outer=args.seeds_outer)
    shown = by_setting(report["records"], augmentation=True)  # each setting of a sweep is its own column
    text = ""
    for name in scored:
        on_split = [{**r, **r["splits"][name]} for r in shown if name in r.get("splits", {})]
        text += (f"### {name}\n\n" + table(on_split, "mre_mm", "MRE mm", digits=2) + "\n\n"
                 + table(on_split, "sdr2", "SDR@2mm %") + "\n\n")
    beside(args.out, ".md").write_text(text + "\n")
    plot(shown, "mre_mm", f"{next(iter(scored))} MRE (mm)", "ISBI 2015 cephalograms", beside(args.out, ".png"))
    print(text)


if __name__ == "__main__":
    main()
