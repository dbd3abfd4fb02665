"""benchmarks/sequential.py's bookkeeping, without training: chains grow nested in the order their strategy picks,
each strategy asks ``suggest`` what issue 15 says it should, a stopped run resumes without repeating a
fine-tuning, matching protocol records are reused for the random strategy, and the summary compares
suggest with the best baseline in the metric's own direction."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import sequential  # noqa: E402
from benchmarks.common import draw_cases  # noqa: E402

POOL = [f"c{i:02d}" for i in range(12)]
VARIANT = {"learning_rate": 1e-3, "iterations": 30, "augmentation": "strong"}


def fake_suggest(calls: list):
    """``suggest`` that records its options and picks the unlabeled cases in name order (cold start: from the end)."""
    def suggest(opts):
        labeled = {p.name.split(".")[0] for p in Path(opts.labels or opts.landmarks).iterdir()} \
            if (opts.labels or opts.landmarks) else set()
        calls.append({"model": str(opts.model), "strategy": opts.strategy, "count": opts.count,
                      "weight": opts.uncertainty_weight, "labeled": sorted(labeled)})
        free = [c for c in POOL if c not in labeled]
        picks = free[::-1][:opts.count] if opts.strategy == "kmedoids" else free[:opts.count]
        return {"suggestions": [{"case": c} for c in picks]}
    return suggest


@pytest.fixture
def setup(tmp_path, monkeypatch):
    calls, trained = [], []
    monkeypatch.setattr(sequential, "suggest", fake_suggest(calls))
    annotations = tmp_path / "labels"
    annotations.mkdir()
    for case in POOL:
        (annotations / f"{case}.png").write_text("label")

    def run_one(n, seed, variant, cases, keep):
        trained.append((n, tuple(cases), keep is not None))
        if keep is not None:
            keep.mkdir(parents=True)
        # A score that grows with N and prefers low case numbers, so strategies differ.
        return {"method": "ddpm", "n": n, "seed": seed, "cases": cases, "mIoU": 0.5 + 0.03 * n
                - 0.001 * sum(int(c[1:]) for c in cases), "wall_seconds": 1.0, **variant}

    dataset = sequential.Dataset(run_one=run_one, pool=POOL, pool_images=tmp_path / "images",
                                 annotations=(annotations, ".png"), task="segmentation", metric="mIoU",
                                 higher_is_better=True, scale=100, scored_cases=5)
    args = argparse.Namespace(out=tmp_path / "res" / "seq", work=tmp_path / "work", ns=[1, 2, 4], seeds=[0, 1],
                              tta_seeds=[0], strategies=list(sequential.STRATEGIES), reuse=None, stop_at="99:99",
                              pretrained=tmp_path / "pretrained", device="cpu")
    return args, dataset, calls, trained


def open_report(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"records": []}


def test_chains_grow_as_their_strategy_picks_and_resume(setup):
    args, dataset, calls, trained = setup
    text = sequential.run(args, dataset, lambda method, n: [VARIANT], open_report)
    report = json.loads(args.json.read_text())
    chains = report["chains"]
    # suggest: cold start (k-medoids on the pretrained model), then the mix with the model of the previous N.
    assert chains["suggest-s0"] == ["c11", "c00", "c01", "c02"]
    assert [(c["strategy"], c["count"], c["weight"], c["labeled"]) for c in calls[:3]] == [
        ("kmedoids", 1, 0.5, []), ("mix", 1, 0.5, ["c11"]), ("mix", 2, 0.5, ["c00", "c11"])]
    assert calls[0]["model"] == str(args.pretrained) and calls[1]["model"].endswith("suggest-s0/model-n1")
    # tta: a random first draw, then uncertainty only (MONAI Label's strategy).
    first = draw_cases(POOL, 1, 0)
    assert chains["tta-s0"][:1] == first and all(c["weight"] == 1.0 for c in calls[3:])
    # random: independent draws at every N, no model kept; nested chains keep a model only for the next pick.
    random_runs = [t for t in trained if t[1] in {tuple(draw_cases(POOL, n, s)) for n in (1, 2, 4) for s in (0, 1)}]
    assert len(trained) == 3 + 3 + 6 and len(random_runs) >= 6
    assert [t[2] for t in trained[:3]] == [True, True, False]
    assert len(report["records"]) == 12 and {r["strategy"] for r in report["records"]} == set(sequential.STRATEGIES)
    assert "| 4 |" in text and text == args.out.with_suffix(".md").read_text()

    # A second run finds every record and trains nothing.
    before = len(trained)
    sequential.run(args, dataset, lambda method, n: [VARIANT], open_report)
    assert len(trained) == before and len(json.loads(args.json.read_text())["records"]) == 12


def test_random_records_of_the_protocol_are_reused(setup, tmp_path):
    args, dataset, calls, trained = setup
    grid = tmp_path / "grid.json"
    matching = {"method": "ddpm", "n": 2, "seed": 1, "cases": draw_cases(POOL, 2, 1), "mIoU": 0.9,
                "learning_rate": 1e-3, "iterations": 30, "augmentation": "strong", "scored_on": "test", "test_cases": 5}
    other = {**matching, "seed": 0, "iterations": 600}          # another setting: not reused
    grid.write_text(json.dumps({"records": [matching, other]}))
    args.reuse, args.strategies = [str(grid)], ["random"]
    sequential.run(args, dataset, lambda method, n: [VARIANT], open_report)
    records = json.loads(args.json.read_text())["records"]
    reused = [r for r in records if "reused_from" in r]
    assert [(r["n"], r["seed"]) for r in reused] == [(2, 1)] and len(trained) == 5


def test_summary_compares_in_the_metrics_direction():
    records = [{"strategy": s, "n": 1, "mre_mm": v} for s, v in
               (("suggest", 2.0), ("tta", 2.5), ("random", 3.0), ("random", 2.2))]
    dataset = sequential.Dataset(run_one=None, pool=[], pool_images=Path("."), annotations=(Path("."), ".mrk.json"),
                                 task="landmarks", metric="mre_mm", higher_is_better=False)
    row = sequential.summary_md({"records": records}, [1], dataset).splitlines()[2]
    assert row.startswith("| 1 | 2 | 2.5 | 2.6 [") and row.endswith("| +0.5 |")   # 2.0 mm beats tta's 2.5 by 0.5
