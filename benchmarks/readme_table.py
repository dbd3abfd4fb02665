"""The README's table of test results, generated from the protocol benchmarks' summaries (issue 17).

    python benchmarks/report.py jsrt_protocol/test isbi_protocol/test hippocampus_protocol/test   # summary.json
    python benchmarks/readme_table.py           # rewrite the block between the markers in README.md
    python benchmarks/readme_table.py --check   # exit 1 when README.md's block differs (the test suite checks it)

Why generated: a number typed into the README by hand drifts from the records it came from (the
README's first table kept the mild-recipe means of three draws for sessions after the protocol
replaced them). Only what the summaries say is printed, with the caveats beside it: fewer draws
than the protocol's five, pretraining that saw the test images, targets met or not.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.report import HIPPOCAMPUS, ISBI, JSRT, RESULTS, Protocol  # noqa: E402

README = REPO / "README.md"
BEGIN = "<!-- begin: benchmarks/readme_table.py -->"
END = "<!-- end: benchmarks/readme_table.py -->"
PROTOCOL_DRAWS = 5   # draws of the N labeled cases the protocol asks for (issue 17)
BASELINE = "supervised"
MIN_PAIRS_FOR_INTERVAL = 3

#: summary.json method -> what the README calls it, in the order shown. Methods not listed (superseded
#: recipes, round 0 of self-training) are in benchmarks/results/RESULTS.md only.
SHOWN = {
    "supervised": ("supervised baseline: MONAI BasicUNet from scratch, strong augmentation", "supervised"),
    "plain": ("the same BasicUNet trained by DiffusionSeg (`--network plain`)", "plain"),
    "nnunet": ("nnU-Net (nnunetv2) from scratch, its own recipe, at 64x64", "nnU-Net"),
    "random (strong)": ("DiffusionSeg's U-Net, random init (no pretraining)", "random init"),
    "random": ("DiffusionSeg's U-Net, random init (no pretraining)", "random init"),
    "ddpm (strong)": ("**DiffusionSeg**: DDPM pretraining, fine-tuned", "DiffusionSeg"),
    "ddpm": ("**DiffusionSeg**: DDPM pretraining, fine-tuned", "DiffusionSeg"),
    "ddpm-pre2000": ("**DiffusionSeg**: DDPM pretraining of the default length (2000 iterations), fine-tuned",
                     "DiffusionSeg (2000-iteration pretraining)"),
    "selftrain-inductive": ("**DiffusionSeg + self-training** (pretrained on training images only)",
                            "DiffusionSeg + self-training"),
}


@dataclass(frozen=True)
class Benchmark:
    name: str           # as the README names it
    folder: str         # under benchmarks/results/, holding test/summary.json
    protocol: Protocol
    pretraining: str    # what the DDPM pretraining read: a caveat printed under the table


BENCHMARKS = (
    Benchmark("JSRT chest X-rays, lungs + heart", "jsrt_protocol", JSRT,
              "DDPM pretraining on all 247 images (it saw the test images) except the self-training row's, "
              "which read the 123 training images only"),
    Benchmark("ISBI 2015 cephalograms, 19 landmarks, test1", "isbi_protocol", ISBI,
              "DDPM pretraining on all 400 images (it saw test1 and test2)"),
    Benchmark("MSD hippocampus, 3D MRI", "hippocampus_protocol", HIPPOCAMPUS,
              "DDPM pretraining on all 260 volumes (it saw the test volumes), 400 iterations of the tiny preset, "
              "2000 in the row that says so"),
)


def fmt(value: float, digits: int, sign: bool = False) -> str:
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def versus(diff: dict | None, digits: int) -> str:
    """A paired difference to the baseline; its interval only from MIN_PAIRS_FOR_INTERVAL draws on (the percentile
    bootstrap of one or two differences is not an interval)."""
    if diff is None:
        return ""
    mean, (low, high), pairs = diff["mean"], diff["ci95"], diff["pairs"]
    if pairs < MIN_PAIRS_FOR_INTERVAL:
        draws = f"{pairs} draw{'s' if pairs > 1 else ''}"
        return f"{fmt(mean, digits, True)} (no interval from {draws}), better on {diff['wins']} of {pairs}"
    return (f"{fmt(mean, digits, True)} [{fmt(low, digits, True)}, {fmt(high, digits, True)}], "
            f"better on {diff['wins']} of {pairs}")


def benchmark_rows(bench: Benchmark, summary: dict) -> tuple[list[str], list[str]]:
    """(table rows, caveats) of one benchmark from its test summary.json."""
    metric, d = bench.protocol.metric, bench.protocol.metric.digits
    better = "higher" if metric.higher_is_better else "lower"
    rows, few = [], []
    means, differences = summary["means"], summary["differences"]
    ns = sorted({int(n) for v in means.values() for n in v})
    for n in ns:
        for method, (label, short) in SHOWN.items():
            mean = means.get(method, {}).get(str(n))
            if mean is None:
                continue
            first = not rows
            rows.append(f"| {f'{bench.name} ({metric.label}, {better} is better)' if first else ''} | {n} | {label} | "
                        f"{fmt(mean['mean'], d)} ± {fmt(mean['sd'], d)} | {mean['draws']} | "
                        f"{versus(differences.get(f'{method} - {BASELINE}', {}).get(str(n)), d)} |")
            if mean["draws"] < PROTOCOL_DRAWS:
                few.append(f"{short} at N = {n} ({mean['draws']})")
    caveats = [bench.pretraining + "."]
    if few:
        caveats.append(f"Fewer than the protocol's {PROTOCOL_DRAWS} draws: " + "; ".join(few) + ".")
    met = []
    for key, status in summary.get("target_status", {}).items():
        method = key.split(" - ")[0].split(",")[0]
        if method in SHOWN:
            met.append(f"{SHOWN[method][1]}{key[len(method):].replace(' - ', ' against ')}: {status}")
    if met:
        caveats.append(f"Target (issue 17): {summary['target']}. " + "; ".join(met) + ".")
    return rows, caveats


def block() -> str:
    """The Markdown between the README's markers."""
    lines = [BEGIN, "",
             "| benchmark (metric) | N | method | test score, mean ± sd over draws | draws "
             f"| paired difference to the {BASELINE} baseline [95% bootstrap CI], draws where better |",
             "|---|---|---|---|---|---|"]
    notes = []
    for bench in BENCHMARKS:
        summary = json.loads((RESULTS / bench.folder / "test" / "summary.json").read_text())
        rows, caveats = benchmark_rows(bench, summary)
        lines += rows
        notes.append(f"- {bench.name}: " + " ".join(caveats))
    lines += ["", "Each method's learning rate, steps and augmentation were chosen on cases held out of the "
              "training split, never on the test split; a draw is one random choice of the N labeled cases, the "
              "same for every method. With 5 draws the percentile bootstrap interval is narrow-biased.", "",
              *notes, "", END]
    return "\n".join(lines)


def replace_block(text: str, new: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + new + text[end:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md's table is not up to date")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        sys.exit(f"{README}: the markers {BEGIN} and {END} are missing; put them where the table goes.")
    updated = replace_block(text, block())
    if args.check:
        if updated != text:
            sys.exit(f"{README}: the results table is out of date; run python benchmarks/readme_table.py")
        return
    README.write_text(updated, encoding="utf-8")


if __name__ == "__main__":
    main()
