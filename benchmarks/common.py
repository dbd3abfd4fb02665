"""Shared pieces of the label-efficiency benchmarks: case subsets, the results file, table, plot."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


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


def scored_split(cases: list[str], args, src: Path, suffix: str) -> tuple[list[str], list[str], Path]:
    """(training pool, scored cases, folder of links to the scored images) for a benchmark run.

    The test half of the fixed split, or with ``args.validate`` K cases held out of the
    training half; ``args.test_limit`` keeps the first cases only.
    """
    train, test = split(cases)
    if args.validate:  # learning rates and timesteps are chosen here, on training cases only
        train, test = hold_out(train, args.validate)
    test = test[: args.test_limit] if args.test_limit else test
    name = f"validation-{len(test)}" if args.validate else f"test-images-{len(test)}"
    return train, test, link_subset(test, src, args.work / name, suffix)


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


def run_grid(args, report: dict, json_path: Path, run_one, describe) -> None:
    """Run ``run_one(method, n, seed)`` for every combination not yet in ``report``.

    Each record is saved as soon as it exists, so an interrupted benchmark resumes
    where it stopped; ``describe(record)`` is the line printed after each run.
    """
    done = {(r["method"], r["n"], r["seed"]) for r in report["records"]}
    t0 = time.monotonic()
    for n in args.ns:
        for seed in args.seeds:
            for method in args.methods:
                if (method, n, seed) in done:
                    continue
                record = run_one(method, n, seed)
                report["records"].append(record)
                save_report(json_path, report)
                print(f"{method} N={n} seed={seed}: {describe(record)} ({record['finetune_seconds']} s)", flush=True)
    report["invocations"][-1]["wall_seconds"] = round(time.monotonic() - t0, 1)
    save_report(json_path, report)
