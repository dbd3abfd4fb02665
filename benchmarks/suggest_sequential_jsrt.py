"""A simulated JSRT user who annotates cases as a strategy suggests them, against MONAI Label's strategies.

Issue 15's sequential benchmark. A *chain* is one simulated user: the labeled set grows along
``--ns`` (e.g. 1 2 5 10; ``--ns 1 2 3 ... 10`` adds one case at a time), and after each growth
the DDPM-pretrained model is fine-tuned on the labeled set with the protocol's settings
(``--settings benchmarks/results/jsrt_protocol/choice.json``: chosen on validation, never on test)
and scored on the test half, as segmentation_jsrt.py scores it. Strategies:

- ``suggest``: DiffusionSeg's own: the first ``ns[0]`` cases are ``suggest``'s cold start
  (k-medoids of the pretrained U-Net's features: no label needed); every later step asks
  ``suggest --strategy mix`` with the model fine-tuned at the previous N (its uncertainty
  mixed with the distance from the labeled cases). Deterministic: one chain.
- ``tta``: MONAI Label's test-time-augmentation strategy, reimplemented: start from a random
  draw (``draw_cases``, seed = the chain's seed), then add the unlabeled cases whose
  predictions disagree most over test-time augmentations (``suggest --strategy mix
  --uncertainty-weight 1``: uncertainty only, the same augmentations ``suggest`` uses).
  One chain per ``--tta-seeds`` seed.
- ``random``: MONAI Label's random strategy: at every N an independent random draw of N cases
  (``draw_cases`` seeds ``--seeds``: the very draws of the protocol's test grid, so its records
  are reused with ``--reuse FILE``, when the settings match).

MONAI Label's third strategy, MC-dropout ("epistemic"), is not reimplemented: MONAI's
DiffusionModelUNet has no dropout layer to sample (it would change the network under test).

Every chain's order of additions is saved as soon as a pick exists, and every record as soon as it
is scored, so a stopped run resumes (a model needed for the next pick is kept in ``--work``).

    python benchmarks/suggest_sequential_jsrt.py --pretrained benchmarks/work/jsrt64-small \
      --settings benchmarks/results/jsrt_protocol/choice.json --ns 1 2 5 10 \
      --reuse benchmarks/results/jsrt_protocol/test/ddpm_strong_n1.json ... \
      --out benchmarks/results/suggest/sequential_jsrt
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

from benchmarks.common import (  # noqa: E402
    apply_quick, draw_cases, link_subset, open_report, paired_bootstrap, provenance, save_report, scored_split)
from benchmarks.protocol import Run, add_arguments, check_inputs, variants_for  # noqa: E402
from benchmarks.segmentation_jsrt import CLASSES  # noqa: E402
from benchmarks.supervised_unet import segmentation_task  # noqa: E402
from DiffusionSegLib.evaluation.segmentation import evaluate_segmentations  # noqa: E402
from DiffusionSegLib.suggest.run import SuggestOptions, suggest  # noqa: E402
from DiffusionSegLib.vocabulary import case_name  # noqa: E402

STRATEGIES = ("suggest", "tta", "random")


class Chain:
    """One simulated user: ``order`` = the cases in the order they were annotated (saved in the report)."""

    def __init__(self, args, report: dict, strategy: str, seed: int, train: list[str], train_images: Path):
        self.args, self.report, self.strategy, self.seed = args, report, strategy, seed
        self.train, self.train_images = train, train_images
        self.name = f"{strategy}-s{seed}"
        self.folder = args.work / self.name
        self.cache = args.work / "cache"     # features and uncertainties, shared by every chain
        self.order: list[str] = report.setdefault("chains", {}).setdefault(self.name, [])

    def cases(self, n: int, model: Path | None) -> list[str]:
        """The first ``n`` cases of the chain, picking the missing ones now (``model``: the model fine-tuned
        on the cases so far, None before the first fine-tuning)."""
        if self.strategy == "random":
            return draw_cases(self.train, n, self.seed)
        missing = n - len(self.order)
        if missing > 0:
            if not self.order:
                first = self._cold_start(n) if self.strategy == "suggest" else draw_cases(self.train, n, self.seed)
                self.order.extend(first)
            else:
                if model is None:
                    raise RuntimeError(f"{self.name}: the model fine-tuned on {len(self.order)} cases is gone; "
                                       "delete the chain from the JSON to run it again")
                self.order.extend(self._next(model, missing))
            save_report(self.args.json, self.report)
        return self.order[:n]

    def _suggest(self, model: Path, count: int, out: str, **options) -> list[str]:
        report = suggest(SuggestOptions(model=model, images=self.train_images, count=count,
                                        out=self.folder / out, cache_dir=self.cache,
                                        device=self.args.device, progress="none", **options))
        return [s["case"] for s in report["suggestions"]]

    def _cold_start(self, n: int) -> list[str]:
        return self._suggest(self.args.pretrained, n, "cold-start", strategy="kmedoids")

    def _next(self, model: Path, count: int) -> list[str]:
        labels = link_subset(self.order, self.args.data / "labels", self.folder / f"labels-{len(self.order)}", ".png")
        weight = 1.0 if self.strategy == "tta" else None
        return self._suggest(model, count, f"picks-{len(self.order)}", labels=labels, strategy="mix",
                             **({} if weight is None else {"uncertainty_weight": weight}))


def reused_records(args, variants) -> dict:
    """``(n, seed) -> record`` of the protocol's test grid that match this run's settings (method ddpm)."""
    found = {}
    for path in args.reuse or []:
        for r in json.loads(Path(path).read_text())["records"]:
            if r["method"] != "ddpm" or r["n"] not in args.ns:
                continue
            variant = variants("ddpm", r["n"])[0]
            same = (r["learning_rate"] == variant["learning_rate"]
                    and r["iterations"] == variant["iterations"] and r.get("augmentation") == variant["augmentation"]
                    and r["scored_on"] == "test" and r["test_cases"] == args.test_cases)
            if same:
                found[(r["n"], r["seed"])] = {**r, "reused_from": str(path)}
    return found


def fine_tune_and_score(args, chain: Chain, n: int, cases: list[str], test_images: Path, variant: dict,
                        keep: Path | None) -> dict:
    """Fine-tune on ``cases``, score on the test half; the model is copied to ``keep`` (for the next pick)."""
    run = Run(args, "ddpm", n, chain.seed, variant)
    labels = link_subset(cases, args.data / "labels", run.folder / "labels", ".png")
    run.train(args.data / "images", labels, {"task": "segmentation", "classes": CLASSES}, segmentation_task(CLASSES))
    s = evaluate_segmentations(run.predict(test_images, run.folder / "pred"), args.data / "labels", CLASSES)["summary"]
    if keep is not None:
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(run.folder / "model", keep)
    return run.record(cases, {"mIoU": s["mIoU"], "mean_dice": s["mean_dice"], "per_class": s["classes"]},
                      s["n_cases"])


def run_chain(args, report: dict, chain: Chain, test_images: Path, variants, reused: dict) -> None:
    done = {(r["strategy"], r["n"], r["seed"]) for r in report["records"]}
    ns = sorted(args.ns)
    model = None
    for i, n in enumerate(ns):
        last = i == len(ns) - 1
        keep = chain.folder / f"model-n{n}"
        if (chain.strategy, n, chain.seed) in done:
            model = keep if keep.is_dir() else None
            continue
        if time.strftime("%H:%M") >= args.stop_at:
            print(f"stopping: it is past {args.stop_at}", flush=True)
            sys.exit(0)
        cases = chain.cases(n, model)
        if chain.strategy == "random" and (n, chain.seed) in reused:
            record = reused[(n, chain.seed)]
        else:
            record = fine_tune_and_score(args, chain, n, cases, test_images, variants("ddpm", n)[0],
                                         None if last or chain.strategy == "random" else keep)
        record.update(strategy=chain.strategy, chain=chain.name, order=list(cases))
        record.setdefault("provenance", provenance())
        report["records"].append(record)
        save_report(args.json, report)
        print(f"{chain.name} N={n}: mIoU {100 * record['mIoU']:.1f} ({record.get('wall_seconds')} s)"
              f"{' (reused)' if 'reused_from' in record else ''}", flush=True)
        if model is not None and model != keep:
            shutil.rmtree(model, ignore_errors=True)   # the previous N's model is no longer needed
        model = keep if keep.is_dir() else None


def summary_md(report: dict, ns: list[int]) -> str:
    """Per N: each strategy's mean test mIoU (random and tta: mean ± sd over chains), and suggest - best
    baseline. The random draws' 95% interval of the mean is a bootstrap over draws (no pairing exists
    between one deterministic chain and random draws)."""
    by = {}
    for r in report["records"]:
        by.setdefault((r["strategy"], r["n"]), []).append(100 * r["mIoU"])
    lines = ["# Sequential suggestion on JSRT (test mIoU %)", "",
             "| N | suggest | tta (MONAI Label), mean ± sd | random, mean [95% CI] | suggest - best baseline |",
             "|---|---|---|---|---|"]
    for n in ns:
        cells, means = [], {}
        for strategy in STRATEGIES:
            values = by.get((strategy, n), [])
            if not values:
                cells.append("-")
                continue
            means[strategy] = float(np.mean(values))
            if strategy == "random" and len(values) > 1:
                boot = paired_bootstrap(dict(enumerate(values)), dict.fromkeys(range(len(values)), 0.0))
                cells.append(f"{means[strategy]:.1f} [{boot['ci95'][0]:.1f}, {boot['ci95'][1]:.1f}] "
                             f"(n={len(values)})")
            elif len(values) > 1:
                cells.append(f"{means[strategy]:.1f} ± {np.std(values, ddof=1):.1f} (n={len(values)})")
            else:
                cells.append(f"{means[strategy]:.1f}")
        baselines = [means[s] for s in ("tta", "random") if s in means]
        gap = f"{means['suggest'] - max(baselines):+.1f}" if "suggest" in means and baselines else "-"
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {gap} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p, data=REPO.parent / "shared" / "data" / "jsrt-256",
                  work=REPO / "benchmarks" / "work" / "sequential", ns=[1, 2, 5, 10], iterations=[200],
                  image_size=[64, 64], protocol="jsrt_protocol", held_out_of="the TRAINING half (never the test half)",
                  quick="N = 1 and 2, one chain per strategy, 30 steps, 20 test cases: a few minutes")
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    p.add_argument("--tta-seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="the random first draws the tta chains start from (one chain each)")
    p.add_argument("--reuse", nargs="*", help="protocol test-grid JSONs whose matching ddpm records "
                                                         "are the random strategy's")
    p.add_argument("--stop-at", default="99:99", help="start no fine-tuning after this time of day (HH:MM)")
    args = p.parse_args()
    apply_quick(args, {"ns": [1, 2], "seeds": [0], "tta_seeds": [0], "iterations": [30], "test_limit": 20})
    args.methods = ["ddpm"]
    check_inputs(args, "JSRT")
    args.json = args.out.with_suffix(".json")
    cases = sorted(case_name(q) for q in (args.data / "images").glob("*.png"))
    train, test, test_images = scored_split(cases, args, args.data / "images", ".png")
    args.test_cases = len(test)
    train_images = link_subset(train, args.data / "images", args.work / "train-images", ".png")
    report = open_report(args.json, args)
    report["split"] = {"train": len(train), "test": len(test)}
    variants = variants_for(args)
    reused = reused_records(args, variants)
    seeds = {"suggest": [0], "tta": args.tta_seeds, "random": args.seeds}
    base_work = args.work
    for strategy in args.strategies:
        for seed in seeds[strategy]:
            chain = Chain(args, report, strategy, seed, train, train_images)
            args.work = chain.folder            # Run's folder, per chain (chains never share a work folder)
            try:
                run_chain(args, report, chain, test_images, variants, reused)
            finally:
                args.work = base_work
    text = summary_md(report, sorted(args.ns))
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
