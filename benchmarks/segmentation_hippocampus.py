"""Label efficiency in 3D on MSD hippocampus MRI: full fine-tuning, the supervised U-Net, probing, baselines.

Methods (the DiffusionSeg ones through the product's own finetune/predict code, every one
scored by the product's evaluate):
- ``ddpm``: full fine-tuning of the DDPM-pretrained U-Net (PTDR);
- ``random``: the same network and budget from random initialisation;
- ``other``: full fine-tuning of the masked-image-modelling pretraining (``--pretrained-other``);
- ``supervised``: the plain MONAI BasicUNet in 3D trained nnU-Net-style from scratch
  (supervised_unet.py), on the same grid and patches, predicted through the product's
  sliding windows;
- ``plain``: the same BasicUNet as the product's preset plain, trained by the product's own
  ``finetune --init random --preset plain``;
- ``selftrain``: ``ddpm``, then the product's ``selftrain`` on the rest of the training half's volumes
  (never a validation or test volume), ``synthesize``: PTDR's drawn 3D patches (benchmarks/protocol.py);
- ``probe``: the frozen DDPM U-Net's decoder features at t = 10, 30, 60 read by a small conv head;
- ``mlp``: the same features read by a pixel-MLP ensemble (Baranchuk et al.);
- ``probe-tT``: probing with the single timestep T (the timestep ablation);
- ``ddpm-coords``/``probe-coords``: as ``ddpm``/``probe`` from a model pretrained with
  ``--coordinates position`` (``--pretrained-coords``); ``random-coords``: random init with them.

The protocol is JSRT's and ISBI's (benchmarks/protocol.py): ``--validate K`` scores K cases
held out of the training half (the test half is then never read) and draws the N cases
from the rest; ``--lr``, ``--iterations`` and ``--augmentation`` take grids, every
combination run (every method, the heads of probe and mlp included, takes its learning
rate from them); ``report.py hippocampus_protocol/validation`` writes the best per method
and N (highest mean Dice) to ``choice.json``, which ``--settings`` then uses on test.

Grid: every volume resampled to ``--spacing`` (1 mm), fine-tuned on random ``--patch-size``
crops (40x56x40, nearly a whole volume, as nnU-Net plans for this task; a pretrained model
keeps its own spacing), predicted with sliding windows back in the original geometry.
Split: a seeded half/half permutation of the 260 sorted case names (seed 0), fixed for
every method and N; few-shot cases are drawn from the training half only. Scores are
Dice per structure (anterior, posterior) on the test half (its first --test-limit cases).

    python benchmarks/segmentation_hippocampus.py --pretrained MODEL_DIR --out benchmarks/results/hippocampus/run
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    apply_quick, beside, by_setting, draw_cases, link_subset, open_report, plot, run_grid, scored_sets, split)
from benchmarks import sequential  # noqa: E402
from benchmarks.protocol import Grid, Run, add_arguments, check_inputs, variants_for  # noqa: E402
from benchmarks.sequential import add_sequential_arguments  # noqa: E402
from benchmarks.report import HIPPOCAMPUS_CLASSES as CLASSES, hippocampus_tables  # noqa: E402
from benchmarks.supervised_unet import segmentation_task  # noqa: E402
from DiffusionSegLib.evaluation.segmentation import evaluate_segmentations  # noqa: E402

METHODS = re.compile(r"ddpm|random|other|plain|supervised|selftrain|synthesize|probe|mlp|(ddpm|random|probe)-coords"
                     r"|probe-t\d+")


def check_methods(args) -> None:
    """Exit with the fix for an unknown method or one whose pretrained model is missing."""
    for method in args.methods:
        if not METHODS.fullmatch(method):
            sys.exit(f"error: unknown method '{method}'. Fix: use ddpm, random, other, plain, supervised, selftrain, "
                     "synthesize, probe, mlp, probe-tT, ddpm-coords, probe-coords or random-coords.")
        base, _, variant = method.partition("-")
        if variant == "coords" and base != "random" and args.pretrained_coords is None:
            sys.exit(f"error: method '{method}' needs --pretrained-coords MODEL_DIR.")
        if base in ("probe", "mlp") and variant != "coords" and args.pretrained is None:
            sys.exit(f"error: method '{method}' needs --pretrained MODEL_DIR.")


def method_options(args, method: str) -> dict:
    """FinetuneOptions fields of the methods beyond the protocol's (initialisation, mode, timesteps);
    ``ddpm``, ``random``, ``other``, ``plain``, ``supervised``, ``selftrain`` and ``synthesize`` are the protocol's
    own (protocol.Run)."""
    base, _, variant = method.partition("-")
    options = {"mlp_members": args.mlp_members}
    if base in ("probe", "mlp"):
        options["mode"] = base
    if variant == "coords":
        options["pretrained"] = args.pretrained_coords if base != "random" else None
        options["coordinates"] = "position" if base == "random" else None
    elif base in ("probe", "mlp"):
        options["pretrained"] = args.pretrained
    if variant.startswith("t"):
        options["probe_timesteps"] = [int(variant[1:])]
    return options


def run_one(args, method: str, n: int, seed: int, train: list[str], scored_images: Path, variant: dict,
            cases: list[str] | None = None, keep: Path | None = None) -> dict:
    """One method on the draw ``seed`` of N training cases (or on ``cases``); ``keep``: Run.record's."""
    chosen = draw_cases(train, n, seed) if cases is None else cases
    run = Run(args, method, n, seed, variant, Grid(spacing=args.spacing, patch_size=args.patch_size, modality="mri"))
    labels = link_subset(chosen, args.data / "labelsTr", run.folder / "labels", ".nii.gz")
    run.train(args.data / "imagesTr", labels,
              {"task": "segmentation", "classes": CLASSES, **method_options(args, method)}, segmentation_task(CLASSES),
              pool=run.pool_of(train, args.data / "imagesTr", ".nii.gz"))

    def scores(model: Path | None, pred: str) -> dict:
        t0 = time.monotonic()
        predicted = run.predict(scored_images, run.folder / pred, model)
        predict_s = (time.monotonic() - t0) / max(1, len(list(scored_images.iterdir())))
        s = evaluate_segmentations(predicted, args.data / "labelsTr", CLASSES)["summary"]
        return {"mean_dice": s["mean_dice"], "mIoU": s["mIoU"], "per_class": s["classes"],
                **{f"dice_{c}": s["classes"][c]["dice"] for c in CLASSES},
                "predict_seconds_per_volume": round(predict_s, 3), "n_cases": s["n_cases"]}

    final = run.score(scores)
    return run.record(chosen, {k: v for k, v in final.items() if k != "n_cases"}, final["n_cases"], keep)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p, data=REPO.parent / "shared" / "data" / "hippocampus",
                  work=REPO / "benchmarks" / "work" / "hippocampus", ns=[1, 2, 5, 10], iterations=[160],
                  image_size=None, protocol="hippocampus_protocol",
                  held_out_of="the TRAINING half (never the test half)",
                  quick="N = 2 and 10, one seed, 40 iterations, 10 test volumes: under 10 minutes on one CPU core",
                  batch_size=2, preset="tiny", test_limit=30)
    p.add_argument("--pretrained-coords", type=Path, help="DDPM pretraining with --coordinates position")
    p.add_argument("--mlp-members", type=int, default=5)
    p.add_argument("--spacing", type=float, nargs=3, default=[1.0, 1.0, 1.0],
                   help="network grid in mm (x y z) for random init and the supervised U-Net "
                        "(a pretrained model keeps its own)")
    p.add_argument("--patch-size", type=int, nargs=3, default=[40, 56, 40],
                   help="fine-tuning patch (x y z) of every method: nearly a whole volume, as nnU-Net plans for "
                        "this task")
    add_sequential_arguments(p)
    args = p.parse_args()
    apply_quick(args, sequential.QUICK if args.sequential else
                {"ns": [2, 10], "seeds": [0], "iterations": [40], "test_limit": 10})
    check_inputs(args, "hippocampus")
    check_methods(args)
    cases = sorted(p.name[: -len(".nii.gz")] for p in (args.data / "labelsTr").glob("*.nii.gz"))
    train, test = split(cases)
    train, scored_cases, scored = scored_sets(train, {"test": test}, args, args.data / "imagesTr", ".nii.gz")
    (name, scored_images), = scored.items()
    if args.sequential:
        dataset = sequential.Dataset(
            run_one=lambda n, seed, variant, chosen, keep: run_one(args, "ddpm", n, seed, train, scored_images,
                                                                   variant, chosen, keep),
            pool=train, pool_images=link_subset(train, args.data / "imagesTr", args.work / "pool-images", ".nii.gz"),
            annotations=(args.data / "labelsTr", ".nii.gz"), task="segmentation", metric="mean_dice",
            higher_is_better=True, scored_cases=len(scored_cases[name]))
        print(sequential.run(args, dataset, variants_for(args), lambda path: open_report(path, args)))
        return
    json_path = beside(args.out, ".json")
    report = open_report(json_path, args)
    report["split"] = {"train": len(train), name: len(scored_cases[name])}
    report["scored_cases"] = scored_cases
    run_grid(args, report, json_path,
             lambda m, n, seed, variant: run_one(args, m, n, seed, train, scored_images, variant),
             lambda r: f"Dice {r['mean_dice']:.3f} (ant {r['dice_anterior']:.3f}, post {r['dice_posterior']:.3f})",
             variants=variants_for(args), seeds_outer=args.seeds_outer)
    shown = by_setting(report["records"], augmentation=True)  # each setting of a sweep is its own column
    text = "\n\n".join(hippocampus_tables(shown, name))
    beside(args.out, ".md").write_text(text + "\n")
    plot(shown, "mean_dice", f"{name} mean Dice", "MSD hippocampus (MRI)", beside(args.out, ".png"))
    print(text)


if __name__ == "__main__":
    main()
