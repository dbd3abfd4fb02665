"""The benchmark protocol of issue 17, shared by segmentation_jsrt.py, landmarks_isbi.py and
segmentation_hippocampus.py.

- the command line (``add_arguments``): methods, N, draws, the learning-rate, step and
  augmentation grids (every combination one variant, run by ``common.run_grid``),
  ``--settings`` (the ``choice.json`` that ``report.py`` writes from a validation sweep
  replaces the grids, per method and N), ``--validate K``, ``--seeds-outer``, ``--quick``;
- one run (``Run``): the methods ``ddpm`` and ``other`` fine-tune a pretrained model and
  ``random`` the same U-Net from random weights (the product's ``finetune`` and
  ``predict``), ``selftrain`` runs the product's ``selftrain`` from the DDPM model on the
  training pool (the labeled draw plus the pool's other images, unlabeled; never the scored
  cases), ``synthesize`` is PTDR's artificial labeled data (fine-tune on the draw, draw images
  from the DDPM model with the product's ``synthesize``, label them with that model, fine-tune
  again on real + drawn cases), ``supervised`` trains the plain MONAI BasicUNet of supervised_unet.py,
  ``plain`` the same BasicUNet through the product's own ``finetune --init random --preset plain``
  (its fine-tuning recipe: AdamW, EMA, the product's schedule), all on the benchmark's network
  grid (``Grid``: 2D images resized whole, or 3D volumes resampled to a spacing and trained on
  patches);
- the fields every record carries beside its scores (``Run.record``): the settings it ran
  with, where they came from, whether it was scored on validation or test, wall times and,
  for pretrained methods, the pretraining's own record. ``common.run_grid`` adds the
  variant and the provenance (git commit, library versions, machine).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.common import PSEUDO_LABELING, link_subset, pretraining_record, recipe_of
from DiffusionSegLib import modelconfig
from DiffusionSegLib.vocabulary import PLAIN_PRESET
from benchmarks.supervised_unet import SupervisedOptions, Task, predict_folder, train
from DiffusionSegLib.finetune.run import FinetuneOptions, finetune
from DiffusionSegLib.predict.run import PredictOptions, predict
from DiffusionSegLib.synthesize.options import DEFAULT_KEEP_FRACTION
from DiffusionSegLib.synthesize.run import SynthesizeOptions, synthesize
from DiffusionSegLib.synthesize.selftrain import SelftrainOptions, selftrain
from DiffusionSegLib.vocabulary import AUGMENTATIONS, DEFAULT_AUGMENTATION


def add_arguments(p: argparse.ArgumentParser, *, data: Path, work: Path, ns: list[int], iterations: list[int],
                  image_size: list[int] | None, protocol: str, held_out_of: str, quick: str, batch_size: int = 4,
                  preset: str = "small", test_limit: int | None = None) -> None:
    """The options every protocol benchmark has; ``protocol`` names its results folder
    (``benchmarks/results/<protocol>/choice.json``), ``held_out_of`` what --validate holds cases out of.
    ``image_size`` None: a 3D benchmark, which adds its own grid options (see ``Grid``)."""
    p.add_argument("--data", type=Path, default=data)
    p.add_argument("--pretrained", type=Path, help="DDPM-pretrained model (needed by method ddpm)")
    p.add_argument("--pretrained-other", type=Path, help="another pretraining (e.g. pretrain --objective masked)")
    p.add_argument("--out", type=Path, required=True, help="results prefix: .json, .md and .png are written")
    p.add_argument("--work", type=Path, default=work)
    p.add_argument("--methods", nargs="+", default=["ddpm", "random"])
    p.add_argument("--ns", type=int, nargs="+", default=ns)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iterations", type=int, nargs="+", default=iterations, help="one value, or a grid to sweep")
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, nargs="+", default=[1e-3], help="one value, or a grid to sweep")
    p.add_argument("--augmentation", nargs="+", default=[DEFAULT_AUGMENTATION], choices=AUGMENTATIONS,
                   help="fine-tuning augmentation of the DiffusionSeg methods: one recipe, or a grid to sweep")
    p.add_argument("--settings", type=Path,
                   help="JSON with the learning rate and steps per method and N chosen on validation "
                        f"(benchmarks/results/{protocol}/choice.json); replaces --lr and --iterations")
    p.add_argument("--seeds-outer", action="store_true",
                   help="run draw by draw (every N of a draw before the next draw), so a stopped grid has whole pairs")
    p.add_argument("--timestep", type=int, default=0)
    p.add_argument("--selftrain-rounds", type=int, default=SelftrainOptions.rounds,
                   help="rounds of method selftrain (pseudo-label the pool, fine-tune again)")
    p.add_argument("--min-confidence", type=float,
                   help="methods selftrain and synthesize: the pseudo-label threshold (default: the product's)")
    p.add_argument("--keep-fraction", type=float, nargs="+",
                   help="methods selftrain and synthesize: keep the surest fraction of the pseudo-labels "
                        "(--keep-fraction of the product; default: the product's, per command); one value, or a "
                        "grid to sweep")
    p.add_argument("--synthesize-count", type=int, default=128,
                   help="method synthesize: images drawn from the DDPM model (about the size of a training pool)")
    p.add_argument("--preset", default=preset, help="for random init (must match the pretrained model)")
    if image_size is not None:
        p.add_argument("--image-size", type=int, nargs=2, default=image_size)
    p.add_argument("--test-limit", type=int, default=test_limit,
                   help="score only the first K test cases (quick mode)" if test_limit is None else
                   f"score only the first K test (or validation) cases (default {test_limit}; 0: all)")
    p.add_argument("--validate", type=int, metavar="K",
                   help=f"tuning mode: score on K cases held out of {held_out_of} "
                        "and draw the few-shot cases from the rest")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help=quick)


def check_inputs(args, dataset: str) -> None:
    """Exit with the fix when the data or a method's pretrained model is missing."""
    if not args.data.is_dir():
        sys.exit(f"error: {args.data}: {dataset} data not found. Fix: pass --data (see ../shared/data/README.md).")
    for method in ("ddpm", *PSEUDO_LABELING):
        if method in args.methods and args.pretrained is None:
            sys.exit(f"error: method '{method}' needs --pretrained MODEL_DIR.")
    if "other" in args.methods and args.pretrained_other is None:
        sys.exit("error: method 'other' needs --pretrained-other MODEL_DIR.")


#: Methods whose settings, when a choice.json has none for them, are those of another method.
SETTINGS_OF = {"selftrain": "ddpm", "synthesize": "ddpm"}


def variants_for(args):
    """``(method, n) -> [{"learning_rate", "iterations", "augmentation"}, ...]``: the --settings choice, else
    the command-line grid (the supervised baseline has one augmentation, its own)."""
    chosen = json.loads(args.settings.read_text())["choice"] if args.settings else None

    def variants(method: str, n: int) -> list[dict]:
        if chosen is not None:
            # {"1": {...}, "2": {...}}; another N takes the nearest N's setting. Self-training's rounds are
            # DDPM fine-tunings, so without a validated choice of its own it takes ddpm's.
            per_n = chosen[method if method in chosen else SETTINGS_OF.get(method, method)]
            nearest = min(per_n, key=lambda k: (abs(int(k) - n), int(k)))
            setting = per_n[nearest]
            return [{"learning_rate": setting["learning_rate"], "iterations": setting["iterations"],
                     **({} if method == "supervised"
                        else {"augmentation": recipe_of(method, setting.get("augmentation"))}),
                     **({"keep_fraction": setting.get("keep_fraction", DEFAULT_KEEP_FRACTION[method])}
                        if method in PSEUDO_LABELING else {})}]
        augmentations = [None] if method == "supervised" else args.augmentation  # the baseline has its own
        fractions = ([None] if method not in PSEUDO_LABELING
                     else args.keep_fraction or [DEFAULT_KEEP_FRACTION[method]])
        return [{"learning_rate": lr, "iterations": it, **({} if a is None else {"augmentation": a}),
                 **({} if f is None else {"keep_fraction": f})}
                for lr in args.lr for it in args.iterations for a in augmentations for f in fractions]

    return variants


@dataclass
class Grid:
    """Where every method of a benchmark sees the images: 2D images resized whole to ``image_size``
    (x, y), or 3D volumes resampled to ``spacing`` (mm) and trained on random ``patch_size`` crops
    (x, y, z), predicted with the product's sliding windows; ``modality`` chooses the normalisation."""
    image_size: list[int] | None = None
    spacing: list[float] | None = None
    patch_size: list[int] | None = None
    modality: str = "xray"

    def finetune_options(self) -> dict:
        """FinetuneOptions fields (a pretrained model keeps its own spacing; ``patch_size`` replaces its patch)."""
        return {"image_size": self.image_size, "spacing": self.spacing, "patch_size": self.patch_size,
                "modality": self.modality}

    def supervised_options(self) -> dict:
        """SupervisedOptions fields: the same grid for the plain U-Net."""
        if self.image_size is not None:
            return {"image_size": tuple(self.image_size)}
        return {"image_size": None, "spacing": tuple(self.spacing), "patch_size": tuple(self.patch_size),
                "modality": self.modality}

    def record(self) -> dict:
        """The record's grid fields (2D: ``image_size`` alone, as before 3D benchmarks followed the protocol)."""
        if self.image_size is not None:
            return {"image_size": list(self.image_size)}
        return {"spacing": list(self.spacing), "patch_size": list(self.patch_size), "modality": self.modality}


class Run:
    """One method trained on one draw of N cases with one variant, in a fresh work folder.

    ``Run(...)`` makes the folder; ``train`` fits the method; ``predict`` writes predictions of a
    folder of images (the product's files); ``record`` gives the record and removes the folder.
    ``grid``: the benchmark's network grid; default ``--image-size`` (2D).
    """

    def __init__(self, args, method: str, n: int, seed: int, variant: dict, grid: Grid | None = None):
        self.args, self.method, self.n, self.seed = args, method, n, seed
        self.grid = grid or Grid(image_size=args.image_size)
        self.learning_rate, self.iterations = variant["learning_rate"], variant["iterations"]
        # The supervised baseline always has its own (strong) recipe; the DiffusionSeg methods sweep theirs.
        self.augmentation = SupervisedOptions.augmentation if method == "supervised" else variant["augmentation"]
        self.keep_fraction = variant.get("keep_fraction")   # PSEUDO_LABELING methods only
        self.folder = args.work / (f"{method}-n{n}-s{seed}-lr{self.learning_rate:g}-it{self.iterations}-"
                                   f"{self.augmentation}" + (f"-keep{self.keep_fraction:g}" if self.keep_fraction
                                                             else ""))
        shutil.rmtree(self.folder, ignore_errors=True)
        self.pretrained = {"ddpm": args.pretrained, "selftrain": args.pretrained, "synthesize": args.pretrained,
                           "other": args.pretrained_other}.get(method)

    def pool_of(self, cases: list[str], src: Path, suffix: str) -> Path | None:
        """Method selftrain's images: links to the training pool ``cases`` in this run's own folder (so a
        validation pool and a test pool never mix); None for the other methods."""
        return link_subset(cases, src, self.folder / "pool", suffix) if self.method == "selftrain" else None

    def train(self, images: Path, annotations: Path, finetune_task: dict, supervised_task: Task,
              pool: Path | None = None) -> None:
        """``finetune_task``: the task's FinetuneOptions (task and classes, or task and sigma_mm; a
        benchmark's own methods may add theirs, e.g. ``pretrained`` and ``mode`` for probing);
        ``supervised_task``: the same task for the supervised baseline (supervised_unet.py);
        ``pool``: method selftrain's images, the labeled ones and those it pseudo-labels (the
        training pool: the scored cases must not be in it)."""
        args = self.args
        self.started = time.monotonic()
        if self.method == "supervised":
            self.model, self.summary = train(images, annotations, supervised_task, SupervisedOptions(
                iterations=self.iterations, batch_size=args.batch_size, learning_rate=self.learning_rate,
                seed=self.seed, **self.grid.supervised_options()))
            self.train_seconds = self.summary["train_seconds"]
            self.extra = {"recipe": {"network": "monai.networks.nets.BasicUNet", **self.summary["options"]},
                          "parameters": self.summary["parameters"]}
            return
        options = {"pretrained": self.pretrained, **self.grid.finetune_options(), **finetune_task}
        self.pretrained = options["pretrained"]
        finetuning = FinetuneOptions(
            **options, images=images, annotations=annotations, out=self.folder / "model",
            iterations=self.iterations, batch_size=args.batch_size,
            learning_rate=self.learning_rate, timestep=args.timestep,
            preset=PLAIN_PRESET if self.method == PLAIN_PRESET else args.preset,
            checkpoint_every=self.iterations, seed=self.seed, augmentation=self.augmentation,
            device=args.device, progress="none")
        self.extra = {"pretraining": pretraining_record(self.pretrained)} if self.pretrained else {}
        if self.method == "selftrain":
            if pool is None:
                raise ValueError("method selftrain needs the training pool's images (Run.train(pool=...))")
            done = selftrain(SelftrainOptions(finetune=replace(finetuning, images=pool), rounds=args.selftrain_rounds,
                                              min_confidence=args.min_confidence, keep_fraction=self.keep_fraction))
            # Round 0 is a plain ddpm fine-tuning of the same pretrained model with the same draw and seed:
            # scored beside the final model, it pairs self-training with its own starting point.
            self.round_0 = Path(done["rounds"][0]["model"])
            # Each round's pseudo-labels: how many were kept, at which confidence, so a reader can judge them.
            self.extra["selftrain"] = {"rounds": args.selftrain_rounds, "final_round": done["final_round"],
                                       "pool": len(list(pool.iterdir())), "pseudo_labels": [
                                           {k: r[k] for k in ("round", "kept", "rejected", "min_confidence",
                                                              "keep_fraction", "measure", "confidence_quartiles")}
                                           for r in done["rounds"][1:]]}
            self.summary = {"final_loss": None}   # several fine-tunings: each round's loss is in its own run folder
        elif self.method == "synthesize":
            self._synthesize(finetuning)
        else:
            self.summary = finetune(finetuning)
        if self.method == PLAIN_PRESET:   # the network the product built, as its model folder records it
            network = modelconfig.load(finetuning.out).network
            self.extra["recipe"] = {"network": network.architecture, "preset": network.preset}
        self.train_seconds = time.monotonic() - self.started

    def _synthesize(self, finetuning: FinetuneOptions) -> None:
        """PTDR: round 0 on the draw; ``--synthesize-count`` images drawn from the DDPM model (DDIM, seeded by
        the draw) and labeled by round 0, the confident ones kept; round 1 from the DDPM model on real + drawn."""
        args = self.args
        self.round_0 = self.folder / "round_0"
        finetune(replace(finetuning, out=self.round_0))
        drawn = self.folder / "drawn"
        done = synthesize(SynthesizeOptions(pretrained=self.pretrained, model=self.round_0, out=drawn,
                                            count=args.synthesize_count, seed=self.seed,
                                            min_confidence=args.min_confidence, keep_fraction=self.keep_fraction,
                                            keep_rejected=False, device=args.device, progress="none"))
        self.extra["synthesize"] = {k: done[k] for k in ("count", "steps", "kept", "rejected", "min_confidence",
                                                         "keep_fraction", "measure", "confidence_quartiles")}
        if done["kept"]:
            self.summary = finetune(replace(finetuning, extra=[*finetuning.extra, drawn]))
        else:   # nothing confident to learn from: the result is round 0, as selftrain does
            shutil.copytree(self.round_0, finetuning.out)
            self.summary = {"final_loss": None}

    def predict(self, images: Path, out: Path, model: Path | None = None) -> Path:
        """The trained method's predictions of ``images`` in ``out``; ``model``: another of the run's
        DiffusionSeg models instead (selftrain's ``round_0``)."""
        if self.method == "supervised" and model is None:
            predict_folder(self.model, images, out)
        else:
            predict(PredictOptions(model=model or self.folder / "model", images=images, out=out,
                                   device=self.args.device, progress="none"))
        return out

    def score(self, scores: Callable[[Path | None, str], dict]) -> dict:
        """``scores(model, prediction folder name)`` of the trained method (``model`` None) and, for a pseudo-labeling
        method, of its round 0 too, under "round_0" (a plain fine-tuning of the same draw and seed: report.py pairs
        selftrain - selftrain-r0, so the pair isolates the pseudo-labels)."""
        final = scores(None, "pred")
        if self.method in PSEUDO_LABELING:
            final["round_0"] = {k: v for k, v in scores(self.round_0, "pred-round0").items() if k != "n_cases"}
        return final

    def record(self, cases: list[str], scores: dict, test_cases: int, keep: Path | None = None) -> dict:
        """The record of this run (``scores``: the benchmark's metrics); the work folder is removed, its
        fine-tuned model first copied to ``keep`` when given (benchmarks/sequential.py picks with it)."""
        if keep is not None:   # moved out of the folder that is removed below
            shutil.rmtree(keep, ignore_errors=True)
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(self.folder / "model"), str(keep))
        args = self.args
        record = {"method": self.method, "n": self.n, "seed": self.seed, "cases": cases, **scores,
                  "finetune_seconds": round(self.train_seconds, 1),
                  "wall_seconds": round(time.monotonic() - self.started, 1), "final_loss": self.summary["final_loss"],
                  "test_cases": test_cases, "learning_rate": self.learning_rate, "iterations": self.iterations,
                  "batch_size": args.batch_size, **self.grid.record(),
                  "augmentation": self.augmentation, "timestep": None if self.method == "supervised" else args.timestep,
                  **({"keep_fraction": self.keep_fraction} if self.keep_fraction is not None else {}),
                  "settings_from": str(args.settings) if args.settings else "command line",
                  "scored_on": "validation" if args.validate else "test", **self.extra}
        shutil.rmtree(self.folder, ignore_errors=True)
        return record
