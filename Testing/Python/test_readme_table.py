"""The README's results table is what the committed benchmark records say (benchmarks/readme_table.py)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import readme_table  # noqa: E402
from benchmarks.report import HIPPOCAMPUS, ISBI, JSRT, protocol_test  # noqa: E402

PROTOCOLS = {"jsrt_protocol": JSRT, "isbi_protocol": ISBI, "hippocampus_protocol": HIPPOCAMPUS}


def test_readme_table_is_up_to_date():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme_table.replace_block(text, readme_table.block()) == text, \
        "README.md's results table is out of date: run python benchmarks/readme_table.py"


@pytest.mark.parametrize("folder", sorted(PROTOCOLS))
def test_each_summary_is_what_its_raw_records_give(folder, tmp_path):
    """summary.json (which the README table reads) regenerated from the raw per-run JSON equals the committed one:
    a run added or removed without `report.py` fails here."""
    source = readme_table.RESULTS / folder
    copy = tmp_path / folder
    shutil.copytree(source / "test", copy / "test", ignore=shutil.ignore_patterns("*.png"))
    if (source / "choice.json").is_file():
        shutil.copy(source / "choice.json", copy / "choice.json")
    protocol_test(copy / "test", PROTOCOLS[folder])
    assert json.loads((copy / "test" / "summary.json").read_text()) == \
        json.loads((source / "test" / "summary.json").read_text())


def summary(draws: int, diff_pairs: int) -> dict:
    return {"means": {"supervised": {"1": {"mean": 80.0, "sd": 1.0, "draws": 5}},
                      "ddpm": {"1": {"mean": 82.0, "sd": 1.5, "draws": draws}},
                      "selftrain-r0-inductive": {"1": {"mean": 81.0, "sd": 1.0, "draws": 5}}},
            "differences": {"ddpm - supervised": {"1": {"mean": 2.0, "ci95": [0.5, 3.5], "pairs": diff_pairs,
                                                        "wins": diff_pairs}}},
            "target": "ddpm - supervised >= 5.0 with the CI above 0",
            "target_status": {"ddpm - supervised, N = 1": "not met"}}


def test_rows_show_intervals_only_from_three_draws_and_name_every_shortfall():
    bench = readme_table.BENCHMARKS[0]
    rows, caveats = readme_table.benchmark_rows(bench, summary(draws=5, diff_pairs=5))
    assert len(rows) == 2                       # round 0 of self-training is not a README row
    assert "+2.0 [+0.5, +3.5], better on 5 of 5" in rows[1]
    assert rows[0].startswith(f"| {bench.name}") and rows[1].startswith("|  |")
    assert not any("Fewer than" in c for c in caveats)
    assert any("DiffusionSeg against supervised, N = 1: not met" in c for c in caveats)

    rows, caveats = readme_table.benchmark_rows(bench, summary(draws=2, diff_pairs=2))
    assert "+2.0 (no interval from 2 draws)" in rows[1] and "[" not in rows[1]
    assert any("Fewer than the protocol's 5 draws: DiffusionSeg at N = 1 (2)" in c for c in caveats)


def test_check_fails_on_a_stale_table(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro ±\n{readme_table.BEGIN}\nold numbers\n{readme_table.END}\nrest\n", encoding="utf-8")
    monkeypatch.setattr(readme_table, "README", readme)
    monkeypatch.setattr(sys, "argv", ["readme_table.py", "--check"])
    with pytest.raises(SystemExit, match="out of date"):
        readme_table.main()
    monkeypatch.setattr(sys, "argv", ["readme_table.py"])
    readme_table.main()
    assert readme.read_text(encoding="utf-8").startswith("intro ±\n") and readme.read_text(encoding="utf-8").endswith("\nrest\n")
    monkeypatch.setattr(sys, "argv", ["readme_table.py", "--check"])
    readme_table.main()   # up to date now: no exit
