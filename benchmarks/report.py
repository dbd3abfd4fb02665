"""Merge the raw JSON of benchmark runs that ran in parallel (one file per group) into one table and plot.

Each benchmark invocation writes its own JSON (two processes never share a file); this
gathers every record of a results folder and writes ``summary.md`` and ``summary.png``.

    python benchmarks/report.py hippocampus   # benchmarks/results/hippocampus/*.json
    python benchmarks/report.py isbi
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import plot, table  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def gather(folder: Path) -> tuple[list[dict], list[dict]]:
    """(every record, every invocation with its file) from the folder's benchmark JSON files."""
    records, invocations = [], []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if "records" not in data:
            continue
        records += data["records"]
        invocations += [{"file": path.name, **inv} for inv in data.get("invocations", [])]
    return records, invocations


def commands(invocations: list[dict]) -> str:
    lines = [f"- `{inv['file']}`: `{inv['command']}` ({inv.get('wall_seconds', '?')} s wall)" for inv in invocations]
    return "\n".join(lines)


def hippocampus(folder: Path) -> str:
    records, invocations = gather(folder)
    main = [r for r in records if not r["method"].startswith("probe-t") and "coords" not in r["method"]]
    text = ["## Mean Dice (anterior and posterior hippocampus), mean ± sd over seeds (runs)",
            table(main, "mean_dice", "mean Dice", digits=3),
            "## Anterior", table(main, "dice_anterior", "anterior", digits=3),
            "## Posterior", table(main, "dice_posterior", "posterior", digits=3)]
    ablation = [r for r in records if r["method"].startswith("probe") and r["n"] == 5 and r["seed"] == 0
                and "coords" not in r["method"]]
    if len(ablation) > 1:
        text += ["## Probing timestep ablation (N = 5, seed 0; 'probe' = t 10, 30, 60 together)",
                 table(ablation, "mean_dice", "mean Dice", digits=3)]
    coords = [r for r in records if r["n"] == 5 and r["seed"] == 0 and r["method"].split("-")[0] in ("random", "ddpm")
              and (r["method"] in ("random", "ddpm") or "coords" in r["method"])]
    if any("coords" in r["method"] for r in coords):
        text += ["## Coordinate conditioning (N = 5, seed 0)", table(coords, "mean_dice", "mean Dice", digits=3)]
    plot(main, "mean_dice", "test mean Dice", "MSD hippocampus (MRI), 3D", folder / "summary.png")
    return "\n\n".join(text + ["## Runs", commands(invocations)]) + "\n"


def isbi(folder: Path) -> str:
    records, invocations = gather(folder)
    text = []
    for split in ("test1", "test2"):
        on_split = [{**r, **r["splits"][split]} for r in records if split in r.get("splits", {})]
        if on_split:
            text += [f"## {split}: MRE (mm)", table(on_split, "mre_mm", "MRE mm", digits=2),
                     f"## {split}: SDR@2mm (%)", table(on_split, "sdr2", "SDR@2mm %")]
    plot(records, "mre_mm", "test1 MRE (mm)", "ISBI 2015 cephalograms (64x80)", folder / "summary.png")
    return "\n\n".join(text + ["## Runs", commands(invocations)]) + "\n"


def jsrt_sweep(folder: Path) -> str:
    """Validation mIoU (held-out training cases) per method and (learning rate, timestep)."""
    records, invocations = gather(folder)
    settings = sorted({(r["learning_rate"], r["timestep"]) for r in records})
    methods = sorted({r["method"] for r in records})
    lines = ["| method | " + " | ".join(f"lr {lr:g}, t {t}" for lr, t in settings) + " | best |",
             "|---|" + "---|" * (len(settings) + 1)]
    for m in methods:
        cells, best = [], None
        for lr, t in settings:
            v = [100 * r["mIoU"] for r in records if r["method"] == m and (r["learning_rate"], r["timestep"]) == (lr, t)]
            cells.append(f"{v[0]:.1f}" if v else "-")
            if v and (best is None or v[0] > best[0]):
                best = (v[0], lr, t)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | lr {best[1]:g}, t {best[2]} |")
    head = ("## Validation mIoU (%), N = 5 (seed 0), scored on 25 cases held out of the JSRT training half\n\n"
            "The test half is never used here; the best setting per method is what the test grid should use.")
    return "\n\n".join([head, "\n".join(lines), "## Runs", commands(invocations)]) + "\n"


def main() -> None:
    name = sys.argv[1]
    folder = RESULTS / name
    text = {"hippocampus": hippocampus, "isbi": isbi, "jsrt_sweep": jsrt_sweep}[name](folder)
    (folder / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
