"""A simulated user who annotates cases as a strategy suggests them (issue 15), for every protocol benchmark.

``segmentation_jsrt.py``, ``landmarks_isbi.py`` and ``segmentation_hippocampus.py`` take
``--sequential``: instead of their grid of random draws they run *chains*. A chain is one
simulated user: the labeled set grows along ``--ns`` (``--ns 1 2 3 ... 10`` adds one case at a
time; ``--ns 1 2 5 10`` adds them in batches), and after each growth the DDPM-pretrained model
is fine-tuned on the labeled set with the protocol's settings (``--settings``: chosen on
validation, never on test) and scored on the benchmark's test cases, as its grid scores them.

Strategies (``--strategies``):

- ``suggest``: DiffusionSeg's own. The first ``ns[0]`` cases are ``suggest``'s cold start
  (k-medoids of the pretrained U-Net's features: no label needed); every later step asks
  ``suggest --strategy mix`` with the model fine-tuned at the previous N (its test-time-
  augmentation uncertainty mixed with the distance from the labeled cases). One chain.
- ``tta``: MONAI Label's test-time-augmentation strategy, reimplemented: start from a random
  draw (``draw_cases`` with the chain's seed), then add the unlabeled cases whose predictions
  disagree most over test-time augmentations (``suggest --strategy mix --uncertainty-weight 1``:
  uncertainty only, the same augmentations). One chain per ``--tta-seeds`` seed.
- ``random``: MONAI Label's random strategy: at every N an independent random draw of N cases
  (``draw_cases`` seeds ``--seeds``: the very draws of the protocol's test grid, whose records
  are reused with ``--reuse FILE ...`` when method, settings and test cases match).

MONAI Label's third strategy, MC dropout ("epistemic"), is not reimplemented: MONAI's
DiffusionModelUNet has no dropout layer to sample (adding one would change the network under test).

Every chain's order of additions is saved as soon as a pick exists and every record as soon as it
is scored, so a stopped run resumes (the model the next pick needs is kept in ``--work``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import beside, draw_cases, link_subset, paired_bootstrap, provenance, save_report
from DiffusionSegLib.suggest.run import SuggestOptions, suggest

STRATEGIES = ("suggest", "tta", "random")
#: ``--quick`` with ``--sequential``: N = 1 and 2, one chain per strategy, 30 steps, 20 scored cases.
QUICK = {"ns": [1, 2], "seeds": [0], "tta_seeds": [0], "iterations": [30], "test_limit": 20}


def add_sequential_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sequential", action="store_true",
                   help="simulate users who add cases as a strategy suggests (benchmarks/sequential.py)")
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    p.add_argument("--tta-seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="--sequential: the random first draws the tta chains start from (one chain each)")
    p.add_argument("--reuse", nargs="*", help="--sequential: protocol test-grid JSONs whose matching ddpm records "
                                              "are the random strategy's")
    p.add_argument("--stop-at", default="99:99", help="--sequential: start no fine-tuning after HH:MM")


@dataclass
class Dataset:
    """What a chain needs of a benchmark.

    ``run_one(n, seed, variant, cases, keep)``: fine-tune method ddpm on ``cases`` and score it (the
    benchmark's record), copying the model folder to ``keep`` when given; ``pool``: the training
    cases picks come from; ``pool_images``: a folder of exactly their images; ``annotations``: the
    dataset's annotation folder and suffix; ``task``: segmentation or landmarks (suggest's option);
    ``metric``, ``higher_is_better``, ``scale``: the headline figure of a record and its display.
    """

    run_one: Callable[[int, int, dict, list[str], Path | None], dict]
    pool: list[str]
    pool_images: Path
    annotations: tuple[Path, str]
    task: str
    metric: str
    higher_is_better: bool
    scale: float = 1.0
    scored_cases: int = 0


class Chain:
    """One simulated user: ``order`` = the cases in the order they were annotated (saved in the report)."""

    def __init__(self, args, report: dict, dataset: Dataset, strategy: str, seed: int):
        self.args, self.report, self.dataset, self.strategy, self.seed = args, report, dataset, strategy, seed
        self.name = f"{strategy}-s{seed}"
        self.folder = args.work / self.name
        self.cache = args.work / "cache"     # features and uncertainties, shared by every chain
        self.order: list[str] = report.setdefault("chains", {}).setdefault(self.name, [])

    def cases(self, n: int, model: Path | None) -> list[str]:
        """The first ``n`` cases of the chain, picking the missing ones now (``model``: the model fine-tuned
        on the cases so far, None before the first fine-tuning)."""
        if self.strategy == "random":
            return draw_cases(self.dataset.pool, n, self.seed)
        missing = n - len(self.order)
        if missing > 0:
            if not self.order:
                self.order.extend(self._suggest(self.args.pretrained, n, "cold-start", strategy="kmedoids")
                                  if self.strategy == "suggest" else draw_cases(self.dataset.pool, n, self.seed))
            elif model is None:
                raise RuntimeError(f"{self.name}: the model fine-tuned on {len(self.order)} cases is gone; "
                                   "delete the chain and its records from the JSON to run it again")
            else:
                self.order.extend(self._next(model, missing))
            save_report(self.args.json, self.report)
        return self.order[:n]

    def _suggest(self, model: Path, count: int, out: str, **options) -> list[str]:
        report = suggest(SuggestOptions(model=model, images=self.dataset.pool_images, count=count,
                                        out=self.folder / out, cache_dir=self.cache, device=self.args.device,
                                        progress="none", **options))
        return [s["case"] for s in report["suggestions"]]

    def _next(self, model: Path, count: int) -> list[str]:
        source, suffix = self.dataset.annotations
        labeled = link_subset(self.order, source, self.folder / f"annotations-{len(self.order)}", suffix)
        folder = {"labels": labeled} if self.dataset.task == "segmentation" else {"landmarks": labeled}
        weight = {"uncertainty_weight": 1.0} if self.strategy == "tta" else {}
        return self._suggest(model, count, f"picks-{len(self.order)}", strategy="mix", **folder, **weight)


def reused_records(args, variants, scored_cases: int) -> dict:
    """``(n, seed) -> record`` of the protocol's test grid that match this run's settings (method ddpm)."""
    found = {}
    for path in args.reuse or []:
        for r in json.loads(Path(path).read_text())["records"]:
            if r["method"] != "ddpm" or r["n"] not in args.ns:
                continue
            variant = variants("ddpm", r["n"])[0]
            same = (r["learning_rate"] == variant["learning_rate"] and r["iterations"] == variant["iterations"]
                    and r.get("augmentation") == variant["augmentation"] and r["scored_on"] == "test"
                    and r["test_cases"] == scored_cases)
            if same:
                found[(r["n"], r["seed"])] = {**r, "reused_from": str(path)}
    return found


def run_chain(args, report: dict, chain: Chain, variants, reused: dict) -> None:
    done = {(r["strategy"], r["n"], r["seed"]) for r in report["records"] if "strategy" in r}
    ns = sorted(args.ns)
    model = None
    for i, n in enumerate(ns):
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
            needed = i < len(ns) - 1 and chain.strategy != "random"   # the next pick needs this model
            record = chain.dataset.run_one(n, chain.seed, variants("ddpm", n)[0], cases, keep if needed else None)
        record.update(strategy=chain.strategy, chain=chain.name, order=list(cases))
        record.setdefault("provenance", provenance())
        report["records"].append(record)
        save_report(args.json, report)
        print(f"{chain.name} N={n}: {chain.dataset.metric} {chain.dataset.scale * record[chain.dataset.metric]:.3g} "
              f"({record.get('wall_seconds')} s){' (reused)' if 'reused_from' in record else ''}", flush=True)
        if model is not None and model != keep:
            shutil.rmtree(model, ignore_errors=True)   # the previous N's model is no longer needed
        model = keep if keep.is_dir() else None


def run(args, dataset: Dataset, variants, open_report: Callable[[Path], dict]) -> str:
    """Every chain of ``args.strategies``; returns the summary table (also written as OUT.md)."""
    args.json = beside(args.out, ".json")
    report = open_report(args.json)
    reused = reused_records(args, variants, dataset.scored_cases)
    seeds = {"suggest": [0], "tta": args.tta_seeds, "random": args.seeds}
    base_work = args.work
    for strategy in args.strategies:
        for seed in seeds[strategy]:
            chain = Chain(args, report, dataset, strategy, seed)
            args.work = chain.folder            # protocol.Run's folder, per chain (chains never share one)
            try:
                run_chain(args, report, chain, variants, reused)
            finally:
                args.work = base_work
    text = summary_md(report, sorted(args.ns), dataset)
    beside(args.out, ".md").write_text(text)
    return text


def summary_md(report: dict, ns: list[int], dataset: Dataset) -> str:
    """Per N: each strategy's mean (tta: mean ± sd over chains; random: mean and the bootstrap 95% interval
    of the mean over draws) and suggest's margin over the best baseline (positive: suggest is better).
    No pairing exists between one deterministic chain and random draws, so the interval is the draws'."""
    by: dict[tuple[str, int], list[float]] = {}
    for r in report["records"]:
        if "strategy" in r:
            by.setdefault((r["strategy"], r["n"]), []).append(dataset.scale * r[dataset.metric])
    sign = 1 if dataset.higher_is_better else -1
    lines = [f"| N | suggest | tta (MONAI Label), mean ± sd | random, mean [95% CI] | "
             f"suggest better than the best baseline by |", "|---|---|---|---|---|"]
    for n in ns:
        cells, means = [], {}
        for strategy in STRATEGIES:
            values = by.get((strategy, n), [])
            if not values:
                cells.append("-")
                continue
            means[strategy] = float(np.mean(values))
            if strategy == "random" and len(values) > 1:
                ci = paired_bootstrap(dict(enumerate(values)), dict.fromkeys(range(len(values)), 0.0))["ci95"]
                cells.append(f"{means[strategy]:.3g} [{ci[0]:.3g}, {ci[1]:.3g}] (n={len(values)})")
            elif len(values) > 1:
                cells.append(f"{means[strategy]:.3g} ± {np.std(values, ddof=1):.2g} (n={len(values)})")
            else:
                cells.append(f"{means[strategy]:.3g}")
        baselines = [means[s] for s in ("tta", "random") if s in means]
        best = (max if dataset.higher_is_better else min)(baselines) if baselines else None
        gap = f"{sign * (means['suggest'] - best):+.3g}" if "suggest" in means and best is not None else "-"
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {gap} |")
    return "\n".join(lines) + "\n"
