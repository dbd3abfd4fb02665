"""Shared pieces of the label-efficiency benchmarks: case subsets, the results file, table, plot,
and the protocol: provenance of every record, the pretraining's own record, paired bootstrap CIs."""

from __future__ import annotations

import csv
import functools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from DiffusionSegLib import modelconfig


def link_subset(cases: list[str], src: Path, dst: Path, suffix: str) -> Path:
    """A folder of symbolic links to ``src/<case><suffix>`` (the data is never copied)."""
    dst.mkdir(parents=True, exist_ok=True)
    for case in cases:
        target = dst / f"{case}{suffix}"
        if not target.exists():
            os.symlink(src / f"{case}{suffix}", target)
    return dst


def draw_cases(pool: list[str], n: int, seed: int) -> list[str]:
    """The N training cases of seed ``seed`` (a different draw per seed, the same for every method)."""
    return sorted(np.random.default_rng(1000 + seed).choice(pool, size=min(n, len(pool)), replace=False))


def split(cases: list[str], seed: int = 0) -> tuple[list[str], list[str]]:
    """The fixed split: a seeded half/half permutation of the sorted case list (train, test)."""
    order = np.random.default_rng(seed).permutation(len(cases))
    half = len(cases) // 2
    return sorted(cases[i] for i in order[:half]), sorted(cases[i] for i in order[half:])


def hold_out(train: list[str], k: int, seed: int = 7) -> tuple[list[str], list[str]]:
    """Tuning split of the TRAINING cases only: (cases to draw few-shot sets from, K validation cases).

    Learning rates and timesteps are chosen on these K cases, so the test half is never seen.
    """
    held = set(np.random.default_rng(seed).choice(train, size=k, replace=False))
    return [c for c in train if c not in held], sorted(held)


def scored_sets(train: list[str], tests: dict[str, list[str]], args, src: Path, suffix: str
                ) -> tuple[list[str], dict[str, list[str]], dict[str, Path]]:
    """(training pool, scored cases per set, folder of links to each set's images) for a benchmark run.

    ``tests``: the test sets by name, in order (the first gives the headline numbers). With
    ``args.validate`` they are replaced by one set, "validation": K cases held out of
    ``train`` (the test sets are never read); ``args.test_limit`` keeps the first cases only.
    """
    if args.validate:  # learning rates and timesteps are chosen here, on training cases only
        train, held = hold_out(train, args.validate)
        tests = {"validation": held}
    scored, folders = {}, {}
    for name, cases in tests.items():
        cases = cases[: args.test_limit] if args.test_limit else cases
        folder = f"validation-{len(cases)}" if args.validate else f"{name}-images-{len(cases)}"
        scored[name], folders[name] = cases, link_subset(cases, src, args.work / folder, suffix)
    return train, scored, folders


def scored_split(cases: list[str], args, src: Path, suffix: str) -> tuple[list[str], list[str], Path]:
    """(training pool, scored cases, folder of links to the scored images) for a benchmark run.

    The test half of the fixed split, or with ``args.validate`` K cases held out of the
    training half; ``args.test_limit`` keeps the first cases only.
    """
    train, test = split(cases)
    train, scored, folders = scored_sets(train, {"test": test}, args, src, suffix)
    (name,) = scored
    return train, scored[name], folders[name]


def open_report(json_path: Path, args) -> dict:
    """The results so far (a re-run continues where an interrupted one stopped), with the command and machine."""
    report = json.loads(json_path.read_text()) if json_path.exists() else {"records": []}
    # Every invocation that added records is kept, with its settings, in order.
    report.setdefault("invocations", []).append({
        "command": " ".join(["python", *sys.argv]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}})
    report.update(machine={"platform": platform.platform(), "cpus": os.cpu_count()})
    return report


@functools.lru_cache(maxsize=1)
def provenance() -> dict:
    """What produced a record: git commit (and whether the tree was dirty), library versions, machine."""
    repo = Path(__file__).resolve().parent.parent

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=repo, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("torch", "monai", "SimpleITK"):
        try:
            versions[name] = getattr(__import__(name), "__version__", "?")
        except ImportError:
            versions[name] = None
    try:
        import torch

        torch_threads = torch.get_num_threads()
    except ImportError:
        torch_threads = None
    return {"git_commit": git("rev-parse", "HEAD") or None, "git_dirty": bool(git("status", "--porcelain")),
            "versions": versions,
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "cpus": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                        "torch_threads": torch_threads}}


def pretraining_record(model_dir: Path | None) -> dict | None:
    """The pretraining's own record, from its model folder: objective, network preset, training
    settings and step reached (config.json), final loss and wall time (runs/*/loss.csv), and
    the summary of its ``done`` event (images/s) when events.jsonl has one."""
    if model_dir is None:
        return None
    model_dir = Path(model_dir)
    config = modelconfig.load(model_dir)
    training = config.training.to_dict() if config.training else None
    record = {"path": str(model_dir), "objective": config.objective, "preset": config.network.preset,
              "image_size": config.preprocessing.image_size, "training": training, "created_by": config.created_by}
    runs = sorted((model_dir / "runs").glob("*/loss.csv"))
    if runs:
        rows = list(csv.DictReader(runs[-1].open()))
        if rows:
            last = rows[-50:]
            record.update(loss_csv=str(runs[-1].relative_to(model_dir)), steps_logged=int(rows[-1]["step"]),
                          final_loss=float(rows[-1]["loss"]),
                          final_loss_mean_last50=float(np.mean([float(r["loss"]) for r in last])),
                          wall_seconds=round(float(rows[-1]["seconds"]), 1))
            steps, seconds = int(rows[-1]["step"]), float(rows[-1]["seconds"])
            batch = (training or {}).get("batch_size")
            if batch and seconds > 0:
                record["images_per_second"] = round(steps * batch / seconds, 2)
        events = runs[-1].parent / "events.jsonl"
        if events.exists():
            done = [json.loads(line) for line in events.read_text().splitlines() if '"done"' in line]
            if done:
                record["done_event"] = done[-1]
    return record


def paired_bootstrap(a: dict, b: dict, resamples: int = 10_000, seed: int = 0,
                     higher_is_better: bool = True) -> dict | None:
    """Mean of the paired difference a - b over the keys (draws) both have, with a 95% percentile
    bootstrap interval (draws resampled with replacement, numpy, seeded); None without pairs.
    "wins": the draws where a is better than b (a larger difference, or a smaller one for a
    metric where lower is better, such as an error in mm)."""
    keys = sorted(set(a) & set(b))
    if not keys:
        return None
    diff = np.array([a[k] - b[k] for k in keys], dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    wins = int((diff > 0 if higher_is_better else diff < 0).sum())
    return {"mean": float(diff.mean()), "ci95": [float(low), float(high)], "pairs": len(keys),
            "wins": wins, "differences": [float(d) for d in diff], "resamples": resamples,
            "seed": seed}


def save_report(json_path: Path, report: dict) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")


def _values(records, method, n, metric, scale):
    return [scale * r[metric] for r in records if r["method"] == method and r["n"] == n]


def table(records: list[dict], metric: str, label: str, scale: float = 1.0, digits: int = 1) -> str:
    """Markdown: one row per N, one column per method, mean ± sd over seeds (count)."""
    methods = sorted({r["method"] for r in records})
    lines = ["| N labeled | " + " | ".join(f"{m}: {label}" for m in methods) + " |", "|---|" + "---|" * len(methods)]
    for n in sorted({r["n"] for r in records}):
        cells = []
        for m in methods:
            v = _values(records, m, n, metric, scale)
            cells.append(f"{np.mean(v):.{digits}f} ± {np.std(v):.{digits}f} ({len(v)})" if v else "-")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: The protocol's methods that fine-tune twice, the second time on pseudo-labels (selftrain: of the training
#: pool's unlabeled images; synthesize: of images drawn from the DDPM model): their round 0 is scored too, and
#: the keep fraction of the pseudo-labels is one of their settings.
PSEUDO_LABELING = ("selftrain", "synthesize")


RESULT_SUFFIXES = (".json", ".md", ".png")


def beside(prefix: Path, suffix: str) -> Path:
    """The results file ``suffix`` (.json, .md, .png) of an ``--out`` prefix. Not ``Path.with_suffix``: a prefix
    such as ``selftrain_keep0.5_n1`` has a dot in its name, and two runs' files would both become
    ``selftrain_keep0.json``. A prefix that already ends in one of the results suffixes has it replaced."""
    if prefix.suffix in RESULT_SUFFIXES:
        return prefix.with_suffix(suffix)
    return prefix.parent / (prefix.name + suffix)


def recipe_of(method: str, recorded: str | None) -> str:
    """The augmentation recipe of a record or a validation choice. Those from before augmentation became
    a setting carry none: each method then had one recipe, the supervised U-Net its own (strong),
    DiffusionSeg's fine-tuning mild."""
    return recorded or ("strong" if method == "supervised" else "mild")


def by_setting(records: list[dict], augmentation: bool = False) -> list[dict]:
    """The records with each (learning rate, steps) of a sweep as its own method, for tables and plots;
    with ``augmentation`` each recipe of the sweep too (otherwise a column pools them)."""
    def name(r):
        recipe = f", {r['augmentation']}" if augmentation and r.get("augmentation") else ""
        return f"{r['method']} (lr {r['learning_rate']:g}, {r['iterations']} steps{recipe})"

    return [{**r, "method": name(r)} if "iterations" in r else r for r in records]


def plot(records: list[dict], metric: str, ylabel: str, title: str, path: Path, scale: float = 1.0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    for m in sorted({r["method"] for r in records}):
        ns = sorted({r["n"] for r in records if r["method"] == m})
        values = [_values(records, m, n, metric, scale) for n in ns]
        ax.errorbar(ns, [np.mean(v) for v in values], yerr=[np.std(v) for v in values], marker="o", capsize=3,
                    label=m)
    ax.set_xscale("log")
    ax.set_xlabel("labeled training cases N")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def apply_quick(args, quick: dict) -> None:
    """``--quick``: overwrite the grid with a small one (under 10 minutes on 2 CPU cores)."""
    if getattr(args, "quick", False):
        for key, value in quick.items():
            setattr(args, key, value)


def _variant_key(variant: dict | None) -> str:
    return json.dumps(variant or {}, sort_keys=True)


def run_grid(args, report: dict, json_path: Path, run_one, describe, variants=None, seeds_outer: bool = False) -> None:
    """Run ``run_one(method, n, seed)`` for every combination not yet in ``report``.

    Each record is saved as soon as it exists, so an interrupted benchmark resumes
    where it stopped; ``describe(record)`` is the line printed after each run.
    ``variants(method, n)``: a list of settings dicts (e.g. learning rate and steps) to run
    each combination with, as ``run_one(method, n, seed, variant)``; the record keeps it
    under "variant". ``seeds_outer``: loop draws outside N, so a stopped grid has whole pairs.
    """
    done = {(r["method"], r["n"], r["seed"], _variant_key(r.get("variant"))) for r in report["records"]}
    t0 = time.monotonic()
    order = ([(n, s) for s in args.seeds for n in args.ns] if seeds_outer else
             [(n, s) for n in args.ns for s in args.seeds])
    for n, seed in order:
        for method in args.methods:
            for variant in (variants(method, n) if variants else [None]):
                if (method, n, seed, _variant_key(variant)) in done:
                    continue
                record = run_one(method, n, seed) if variants is None else run_one(method, n, seed, variant)
                if variant is not None:
                    record["variant"] = variant
                record.setdefault("provenance", provenance())
                report["records"].append(record)
                save_report(json_path, report)
                print(f"{method} N={n} seed={seed} {_variant_key(variant) if variant else ''}: {describe(record)} "
                      f"({record['finetune_seconds']} s)", flush=True)
    report["invocations"][-1]["wall_seconds"] = round(time.monotonic() - t0, 1)
    save_report(json_path, report)
