"""Merge the raw JSON of benchmark runs that ran in parallel (one file per group) into one table and plot.

Each benchmark invocation writes its own JSON (two processes never share a file); this
gathers every record of a results folder and writes ``summary.md`` and ``summary.png``.

    python benchmarks/report.py hippocampus   # benchmarks/results/hippocampus/*.json (80 fine-tuning steps)
    python benchmarks/report.py hippocampus_160   # the 3D grid at 160 steps, the budget chosen on validation
    python benchmarks/report.py isbi
    python benchmarks/report.py jsrt          # grid_*: JSRT-pretrained; jsrtisbi_*: pretrained on JSRT + ISBI
    python benchmarks/report.py jsrt_sweep hippocampus_validation   # learning-rate sweeps on training cases
    python benchmarks/report.py jsrt_protocol/validation   # per-method sweep on validation -> jsrt_protocol/choice.json
    python benchmarks/report.py jsrt_protocol/test         # test means and paired bootstrap CIs -> summary.md/.json
    python benchmarks/report.py isbi_protocol/validation   # the same for ISBI landmarks (MRE, lower is better)
    python benchmarks/report.py isbi_protocol/test
    python benchmarks/report.py hippocampus_protocol/validation   # hippocampus (mean Dice, higher is better)
    python benchmarks/report.py hippocampus_protocol/test
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import PSEUDO_LABELING, paired_bootstrap, plot, recipe_of, table  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def gather(folder: Path, rename: dict[str, str] | None = None) -> tuple[list[dict], list[dict]]:
    """(every record, every invocation with its file) from the folder's benchmark JSON files.

    ``rename``: file-name prefix -> suffix added to the method names of that file's records
    (two pretrainings both run as method "ddpm" stay apart in the tables).
    """
    records, invocations = [], []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if "records" not in data:
            continue
        suffix = next((v for k, v in (rename or {}).items() if path.name.startswith(k)), "")
        records += [{**r, "method": r["method"] + suffix} for r in data["records"]]
        # A selftrain run also scored its round 0 (the plain fine-tuning it started from): its own row.
        records += [{**r, **r["round_0"], "method": f"{r['method']}-r0{suffix}", "round_0": None}
                    for r in data["records"] if r.get("round_0")]
        invocations += [{"file": path.name, **inv} for inv in data.get("invocations", [])]
    return records, invocations


def commands(invocations: list[dict]) -> str:
    lines = [f"- `{inv['file']}`: `{inv['command']}` ({inv.get('wall_seconds', '?')} s wall)" for inv in invocations]
    return "\n".join(lines)


HIPPOCAMPUS_CLASSES = ["anterior", "posterior"]   # label values 1, 2 of MSD Task04


def hippocampus_tables(records: list[dict], scored_on: str = "test") -> list[str]:
    """Mean Dice, anterior and posterior tables, Markdown sections (``scored_on``: test or validation)."""
    return [f"## {scored_on.capitalize()} mean Dice (anterior and posterior hippocampus), mean ± sd over draws (runs)",
            table(records, "mean_dice", "mean Dice", digits=3),
            "## Anterior", table(records, "dice_anterior", "anterior", digits=3),
            "## Posterior", table(records, "dice_posterior", "posterior", digits=3)]


def hippocampus(folder: Path, title: str = "MSD hippocampus (MRI), 3D, 80 steps") -> str:
    # mlp_lr1e-2_*: the MLP ensemble at the head learning rate chosen on validation (probe_s0 holds it at 1e-3);
    # pre1200_*: the same methods from a 3x longer DDPM pretraining (1200 instead of 400 iterations)
    records, invocations = gather(folder, rename={"mlp_lr1e-2": " (lr 1e-2)", "pre1200": " (1200 it)"})
    main = [r for r in records if not r["method"].startswith("probe-t") and "coords" not in r["method"]]
    text = hippocampus_tables(main)
    ablation = [r for r in records if (r["method"] == "probe" or r["method"].startswith("probe-t"))
                and r["n"] == 5 and r["seed"] == 0]
    if len(ablation) > 1:
        text += ["## Probing timestep ablation (N = 5, seed 0; 'probe' = t 10, 30, 60 together)",
                 table(ablation, "mean_dice", "mean Dice", digits=3)]
    coords = [r for r in records if r["n"] == 5 and r["method"] in
              ("random", "ddpm", "probe", "random-coords", "ddpm-coords", "probe-coords")]
    if any("coords" in r["method"] for r in coords):
        text += ["## Coordinate conditioning (N = 5; mean ± sd over the seeds run)",
                 table(coords, "mean_dice", "mean Dice", digits=3)]
    plot(main, "mean_dice", "test mean Dice", title, folder / "summary.png")
    return "\n\n".join(text + ["## Runs", commands(invocations)]) + "\n"


def isbi_tables(records: list[dict]) -> list[str]:
    """MRE and SDR@2mm tables of test1 and test2 (the splits the records were scored on)."""
    text = []
    for split in ("test1", "test2"):
        on_split = [{**r, **r["splits"][split]} for r in records if split in r.get("splits", {})]
        if on_split:
            text += [f"## {split}: MRE (mm)", table(on_split, "mre_mm", "MRE mm", digits=2),
                     f"## {split}: SDR@2mm (%)", table(on_split, "sdr2", "SDR@2mm %")]
    return text


def isbi(folder: Path) -> str:
    records, invocations = gather(folder)
    text = isbi_tables(records)
    plot(records, "mre_mm", "test1 MRE (mm)", "ISBI 2015 cephalograms (64x80)", folder / "summary.png")
    return "\n\n".join(text + ["## Runs", commands(invocations)]) + "\n"


def jsrt(folder: Path) -> str:
    """The JSRT test grid: JSRT-pretrained methods and the DDPM pretraining on JSRT + ISBI."""
    records, invocations = gather(folder, rename={"jsrtisbi": " (JSRT+ISBI)"})
    text = ["## Test mIoU (%), right lung, left lung, heart; mean ± sd over seeds (runs)",
            table(records, "mIoU", "mIoU %", scale=100),
            "## Test mean Dice (%)", table(records, "mean_dice", "mean Dice %", scale=100)]
    plot(records, "mIoU", "test mIoU (%)", "JSRT: lungs and heart (64x64)", folder / "summary.png", scale=100)
    return "\n\n".join(text + ["## Runs", commands(invocations)]) + "\n"


def sweep(folder: Path, metric: str, label: str, scale: float, digits: int) -> str:
    """Validation score (cases held out of the training half) per method and (learning rate, timestep, steps)."""
    records, invocations = gather(folder)
    key = lambda r: (r["learning_rate"], r.get("timestep", 0), r.get("iterations", 0))  # noqa: E731
    settings = sorted({key(r) for r in records})
    methods = sorted({r["method"] for r in records})
    name = lambda lr, t, it: f"lr {lr:g}, t {t}" + (f", {it} steps" if it else "")  # noqa: E731
    lines = ["| method | " + " | ".join(name(*s) for s in settings) + " | best |",
             "|---|" + "---|" * (len(settings) + 1)]
    for m in methods:
        cells, best = [], None
        for setting in settings:
            v = [scale * r[metric] for r in records if r["method"] == m and key(r) == setting]
            cells.append(f"{v[0]:.{digits}f}" if v else "-")
            if v and (best is None or v[0] > best[0]):
                best = (v[0], *setting)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {name(*best[1:])} |")
    held = {r["test_cases"] for r in records}
    head = (f"## Validation {label}, N = 5 (seed 0), scored on {'/'.join(map(str, sorted(held)))} cases held out "
            "of the training half\n\nThe test half is never used here; the best setting per method is what the "
            "test grid should use.")
    return "\n\n".join([head, "\n".join(lines), "## Runs", commands(invocations)]) + "\n"


def augmentation_of(record: dict) -> str:
    """A record's augmentation recipe; records from before the augmentation sweep used the only recipe
    their method had then (supervised: its strong recipe, DiffusionSeg fine-tuning: mild)."""
    return recipe_of(record["method"], record.get("augmentation"))


def keep_fraction_of(record: dict) -> float | None:
    """A selftrain or synthesize record's pseudo-label keep fraction (records from before it was a setting kept every
    pseudo-label above the threshold: 1); None for the other methods."""
    if record["method"].split("-inductive")[0] not in PSEUDO_LABELING:
        return None
    return record.get("keep_fraction") or 1.0


def recipe_text(augmentation: str, keep_fraction: float | None, always_keep: bool = False) -> str:
    """``strong``, or ``strong, keep 0.5`` for a pseudo-labeling method (its keep 1 only with ``always_keep``)."""
    shown = keep_fraction is not None and (always_keep or keep_fraction != 1.0)
    return augmentation + (f", keep {keep_fraction:g}" if shown else "")


def recipe_label(record: dict) -> str:
    """The augmentation recipe, and selftrain's keep fraction when it is not 1 (``strong, keep 0.5``)."""
    return recipe_text(augmentation_of(record), keep_fraction_of(record))


def by_recipe(records: list[dict]) -> list[dict]:
    """Records whose method ran with several recipes in one folder are told apart by name
    (``ddpm`` -> ``ddpm (mild)``, ``ddpm (strong)``; ``selftrain (strong, keep 0.5)``); a method with one
    recipe keeps its name."""
    recipes: dict[str, set] = {}
    for r in records:
        recipes.setdefault(r["method"], set()).add(recipe_label(r))
    return [{**r, "method": f"{r['method']} ({recipe_label(r)})"} if len(recipes[r["method"]]) > 1 else r
            for r in records]


@dataclass(frozen=True)
class Metric:
    """The score a protocol chooses settings by and compares methods on."""
    key: str                  # the record's field
    name: str                 # in sentences
    label: str                # in tables
    axis: str                 # on a plot's axis
    scale: float              # record value -> shown value
    digits: int
    higher_is_better: bool
    unit: str                 # of a paired difference


@dataclass(frozen=True)
class Protocol:
    """What differs between the benchmarks that follow the protocol (benchmarks/protocol.py)."""
    metric: Metric
    held_out_of: str                                      # where validation cases come from
    title: str                                            # of the test plot
    tables: Callable[[list[dict]], list[str]]             # the test tables, Markdown sections
    target: str                                           # the target, as summary.json states it
    meets: Callable[[str, str, dict], str]                # (A, B, paired result) -> the row's target column
    notes: Callable[[list[dict], list[str]], list[str]]   # (records, methods) -> text after the paired table
    # (records, methods) -> {"what was compared": "met" | "not met"} for targets that are not paired differences
    targets: Callable[[list[dict], list[str]], dict[str, str]] = lambda records, methods: {}


def jsrt_tables(records: list[dict]) -> list[str]:
    for r in records:  # class-mean HD95 (mm) and heart IoU, from the per-class metrics every record keeps
        r["hd95_mm"] = float(np.nanmean([c["hd95_mm"] for c in r["per_class"].values()]))
        r["heart_iou"] = r["per_class"]["heart"]["iou"]
    return ["## Test mIoU (%), right lung, left lung, heart; mean ± sd over draws (runs)",
            table(records, "mIoU", "mIoU %", scale=100),
            "## Test HD95 (mm, mean over the three classes; lower is better)",
            table(records, "hd95_mm", "HD95 mm"),
            "## Test heart IoU (%)", table(records, "heart_iou", "heart IoU %", scale=100)]


JSRT_TARGET = 5.0   # mIoU points of ddpm - supervised (issue 17)


BASELINES = ("random", "plain", "nnunet", "supervised")   # methods that are not DiffusionSeg variants
TARGET_BASELINES = ("supervised", "nnunet")   # the supervised recipes a DiffusionSeg variant must beat (issue 17)


def beats_supervised(margin: float) -> Callable[[str, str, dict], str]:
    """The target column of a DiffusionSeg variant A against a supervised baseline B: met when the mean paired
    difference is at least ``margin`` and its 95% interval lies above 0."""
    def meets(a: str, b: str, result: dict) -> str:
        if b in TARGET_BASELINES and a.split(" (")[0] not in BASELINES:
            return "met" if result["mean"] >= margin and result["ci95"][0] > 0 else "not met"
        return ""

    return meets


JSRT = Protocol(
    metric=Metric("mIoU", "mIoU", "mIoU %", "mIoU (%)", 100, 1, True, "mIoU points"),
    held_out_of="the training half (never the test half)",
    title="JSRT: lungs and heart (64x64), validated settings", tables=jsrt_tables,
    target=f"ddpm - supervised >= {JSRT_TARGET} with the CI above 0", meets=beats_supervised(JSRT_TARGET),
    notes=lambda records, methods: [
        f"Target (issue 17): the best DiffusionSeg variant beats the best supervised baseline by >= {JSRT_TARGET:g} "
        "mIoU at N = 1 and N = 2 with the 95% interval above 0. With 5 draws the percentile bootstrap "
        "interval is narrow-biased (it cannot reflect more spread than the 5 differences show)."])

ISBI_TARGET_N, ISBI_TARGET_MRE, ISBI_TARGET_SDR2 = 25, 2.0, 65.0   # test1 (issue 17)


def isbi_target_rows(records: list[dict], methods: list[str]) -> list[tuple[str, float, float, int, str]]:
    """(method, test1 MRE mm, test1 SDR@2mm %, draws, "met" | "not met") at N = 25, means over draws."""
    rows = []
    for m in methods:
        on_test1 = [r["splits"]["test1"] for r in records
                    if r["method"] == m and r["n"] == ISBI_TARGET_N and "test1" in r.get("splits", {})]
        if on_test1:
            mre, sdr = float(np.mean([r["mre_mm"] for r in on_test1])), float(np.mean([r["sdr2"] for r in on_test1]))
            met = "met" if mre <= ISBI_TARGET_MRE and sdr >= ISBI_TARGET_SDR2 else "not met"
            rows.append((m, mre, sdr, len(on_test1), met))
    return rows


def isbi_targets(records: list[dict], methods: list[str]) -> list[str]:
    """Each method at N = 25 on test1 against the MRE and SDR@2mm targets."""
    goal = f"MRE <= {ISBI_TARGET_MRE:.1f} mm and SDR@2mm >= {ISBI_TARGET_SDR2:g} %"
    lines = [f"| method | N | test1 MRE mm | test1 SDR@2mm % | draws | {goal} |", "|---|---|---|---|---|---|"]
    lines += [f"| {m} | {ISBI_TARGET_N} | {mre:.2f} | {sdr:.1f} | {draws} | {met} |"
              for m, mre, sdr, draws, met in isbi_target_rows(records, methods)]
    return [f"Targets (issue 17): at N = {ISBI_TARGET_N} on test1, {goal} (means over draws). A negative "
            "difference above means A's error is smaller. With 5 draws the percentile bootstrap interval is "
            "narrow-biased.", "\n".join(lines) if len(lines) > 2 else f"(no N = {ISBI_TARGET_N} test1 runs yet)"]


ISBI = Protocol(
    metric=Metric("mre_mm", "MRE", "MRE mm", "MRE (mm)", 1, 2, False, "mm; negative: A better"),
    held_out_of="the official train split 001-150 (never test1 or test2)",
    title="ISBI 2015 cephalograms, validated settings", tables=isbi_tables,
    target=f"N = {ISBI_TARGET_N} test1: MRE <= {ISBI_TARGET_MRE:.1f} mm and SDR@2mm >= {ISBI_TARGET_SDR2:g} %",
    meets=lambda a, b, result: "", notes=isbi_targets,
    targets=lambda records, methods: {
        f"{m}, N = {ISBI_TARGET_N}: test1 MRE {mre:.2f} mm, SDR@2mm {sdr:.1f} %": met
        for m, mre, sdr, _, met in isbi_target_rows(records, methods)})


HIPPOCAMPUS = Protocol(
    metric=Metric("mean_dice", "mean Dice", "mean Dice", "mean Dice", 1, 3, True, "Dice"),
    held_out_of="the training half (never the test half)",
    title="MSD hippocampus (MRI, 3D), validated settings", tables=hippocampus_tables,
    target="ddpm - supervised > 0 with the CI above 0 at N = 1 and N = 2", meets=beats_supervised(0.0),
    notes=lambda records, methods: [
        "Target (issue 17): at N = 1 and N = 2 the best DiffusionSeg variant beats the best supervised baseline "
        "(the plain 3D BasicUNet, and random init of the same U-Net) with the 95% interval of the paired "
        "difference above 0. With 5 draws the percentile bootstrap interval is narrow-biased. A DDPM pretraining "
        "on all of imagesTr has seen the test volumes (transductive): each record's `pretraining.training.images` "
        "says how many volumes it read (260: all, the test half included)."])


def choose_settings(folder: Path, protocol: Protocol = JSRT) -> str:
    """The validation sweep of the protocol: the mean validation score per method, N and (learning rate, steps,
    augmentation) over the draws run; the best per method and N is written to ``../choice.json`` for the test runs."""
    metric = protocol.metric
    records, invocations = gather(folder, PRETRAININGS)
    records = [r for r in records if r.get("scored_on") == "validation"]
    setting = lambda r: (r["learning_rate"], r["iterations"], augmentation_of(r), keep_fraction_of(r))  # noqa: E731
    choice, lines = {}, [f"| method | N | lr | steps | augmentation | validation {metric.label} (mean over draws) "
                         "| draws | per draw |", "|---|---|---|---|---|---|---|---|"]
    best_of = max if metric.higher_is_better else min
    for m in sorted({r["method"] for r in records}):
        for n in sorted({r["n"] for r in records if r["method"] == m}):
            rows = [r for r in records if r["method"] == m and r["n"] == n]
            # Compare settings on the draws every setting of this method and N has (paired), then by mean.
            settings = sorted({setting(r) for r in rows})
            common = set.intersection(*({r["seed"] for r in rows if setting(r) == st} for st in settings))
            scored = []
            for st in settings:
                v = {r["seed"]: metric.scale * r[metric.key] for r in rows if setting(r) == st}
                on_common = [v[k] for k in sorted(common)] or list(v.values())
                scored.append((float(np.mean(on_common)), st, v))
            best = best_of(scored, key=lambda x: x[0])
            for mean, (lr, it, aug, kf), v in scored:
                mark = " **best**" if (lr, it, aug, kf) == best[1] else ""
                recipe = recipe_text(aug, kf, always_keep=True)
                lines.append(f"| {m} | {n} | {lr:g} | {it} | {recipe} | {mean:.{metric.digits}f}{mark} | {len(v)} | "
                             + ", ".join(f"s{k}: {x:.{metric.digits}f}" for k, x in sorted(v.items())) + " |")
            lr, it, aug, kf = best[1]
            if m.endswith("-r0"):   # a pseudo-labeling run's round 0: shown beside it, never a method to run
                continue
            choice.setdefault(m, {})[str(n)] = {"learning_rate": lr, "iterations": it, "augmentation": aug,
                                                **({} if kf is None else {"keep_fraction": kf}),
                                                f"validation_{metric.key}": round(best[0], max(2, metric.digits)),
                                                "draws": sorted(common)}
    held = sorted({r["test_cases"] for r in records})
    rule = (f"{'highest' if metric.higher_is_better else 'lowest'} mean validation {metric.name} over the draws "
            "every setting has, per method and N")
    source = folder.resolve()
    out = {"choice": choice, "rule": rule, "validation_cases": held,
           "source": str(source.relative_to(REPO) if source.is_relative_to(REPO) else source)}
    (folder.parent / "choice.json").write_text(json.dumps(out, indent=2) + "\n")
    head = (f"## Validation sweep: {metric.name} on {'/'.join(map(str, held))} cases held out of "
            f"{protocol.held_out_of}; the best setting per method and N goes to `choice.json`")
    return "\n\n".join([head, "\n".join(lines), "## Runs", commands(invocations)]) + "\n"


#: File-name prefixes of runs from another pretraining than the benchmark's own, and the suffix their methods
#: get, so they stand beside the runs of the usual pretraining (in the validation choice and the test tables):
#: ``inductive_*.json`` read the training cases only (the usual one read every image); ``pre2000_*.json``, the
#: hippocampus's 2000-iteration 3D pretraining (the usual one has 400).
PRETRAININGS = {"inductive_": "-inductive", "pre2000_": "-pre2000"}
PAIRS = (("ddpm", "supervised"), ("ddpm", "random"), ("random", "supervised"),
         ("selftrain", "supervised"), ("selftrain", "selftrain-r0"), ("selftrain", "ddpm"),
         ("selftrain-inductive", "supervised"), ("selftrain-inductive", "selftrain-r0-inductive"),
         ("selftrain-r0-inductive", "supervised"), ("selftrain-r0-inductive", "ddpm"),
         ("synthesize", "supervised"), ("synthesize", "synthesize-r0"), ("selftrain", "synthesize"),
         ("ddpm", "plain"), ("plain", "supervised"),
         ("ddpm", "nnunet"), ("selftrain-inductive", "nnunet"), ("nnunet", "supervised"),
         ("ddpm-pre2000", "supervised"), ("ddpm-pre2000", "ddpm"), ("ddpm-pre2000", "plain"))


def validated_only(records: list[dict], choice_path: Path) -> tuple[list[dict], list[str]]:
    """Where a method, N and recipe has test runs at several (learning rate, steps) and some at the setting
    ``choice.json`` holds now (a later validation sweep can change it), keep only those: a mean over draws
    never mixes settings, even while the rerun is incomplete. The older runs stay on disk and are named in
    the notes. Returns (records kept, one line per set of runs left out)."""
    if not choice_path.is_file():
        return records, []
    choice = json.loads(choice_path.read_text())["choice"]
    group = lambda r: (r["method"], r["n"], recipe_label(r))  # noqa: E731
    setting = lambda r: (r["learning_rate"], r["iterations"])  # noqa: E731
    settings_of: dict[tuple, set] = {}
    for r in records:
        settings_of.setdefault(group(r), set()).add(setting(r))
    kept, left_out = [], {}
    for r in records:
        chosen = choice.get(r["method"], {}).get(str(r["n"]))
        validated = chosen and (chosen["learning_rate"], chosen["iterations"])
        if validated in settings_of[group(r)] and setting(r) != validated:
            key = f"{r['method']} N={r['n']} lr {r['learning_rate']:g} {r['iterations']} steps"
            left_out[key] = left_out.get(key, 0) + 1
        else:
            kept.append(r)
    return kept, [f"{k} ({v} run{'s' if v > 1 else ''})" for k, v in left_out.items()]


def protocol_test(folder: Path, protocol: Protocol = JSRT, pairs=PAIRS) -> str:
    """Test means per method and N, and the paired bootstrap 95% CI of (A - B) over draws, beside the targets.
    ``selftrain-r0`` is a selftrain run's round 0 (a ddpm fine-tuning); ``-inductive``: see PRETRAININGS."""
    metric = protocol.metric
    records, invocations = gather(folder, PRETRAININGS)
    records, left_out = validated_only([r for r in records if r.get("scored_on", "test") == "test"],
                                       folder.parent / "choice.json")
    records = by_recipe(records)
    methods = sorted({r["method"] for r in records})
    # Each base pair (ddpm, supervised) covers every recipe of its methods (ddpm (mild), ddpm (strong)).
    variants = lambda m: [x for x in methods if x.split(" (")[0] == m]  # noqa: E731
    pairs = [(va, vb) for a, b in pairs for va in variants(a) for vb in variants(b)]
    by = lambda m, n: {r["seed"]: metric.scale * r[metric.key]  # noqa: E731
                       for r in records if r["method"] == m and r["n"] == n}
    ns = sorted({r["n"] for r in records})
    settings = {m: sorted({(r["n"], r["learning_rate"], r["iterations"], augmentation_of(r)) for r in records
                           if r["method"] == m}) for m in methods}
    text = protocol.tables(records) + [
        "Settings (chosen on validation): " + "; ".join(
            f"{m}: " + ", ".join(f"N={n} lr {lr:g} {it} steps {aug} augmentation" for n, lr, it, aug in settings[m])
            for m in methods)]
    lines = [f"| N | A - B | mean difference ({metric.unit}) | 95% bootstrap CI | pairs | A wins | target |",
             "|---|---|---|---|---|---|---|"]
    summary = {"means": {}, "differences": {}, "target": protocol.target, "target_status": {}}
    d = metric.digits
    for n in ns:
        for m in methods:
            v = list(by(m, n).values())
            if v:
                summary["means"].setdefault(m, {})[str(n)] = {"mean": float(np.mean(v)), "sd": float(np.std(v)),
                                                              "draws": len(v)}
        for a, b in pairs:
            result = paired_bootstrap(by(a, n), by(b, n), higher_is_better=metric.higher_is_better)
            if result is None:
                continue
            summary["differences"].setdefault(f"{a} - {b}", {})[str(n)] = result
            met = protocol.meets(a, b, result)
            if met:
                summary["target_status"][f"{a} - {b}, N = {n}"] = met
            lines.append(f"| {n} | {a} - {b} | {result['mean']:+.{d}f} | [{result['ci95'][0]:+.{d}f}, "
                         f"{result['ci95'][1]:+.{d}f}] | {result['pairs']} | {result['wins']}/{result['pairs']} | "
                         f"{met} |")
    summary["target_status"].update(protocol.targets(records, methods))
    text += ["## Paired differences over draws (10,000 bootstrap resamples of the draws, seed 0)",
             "\n".join(lines), *protocol.notes(records, methods)]
    if left_out:
        text.append("Test runs at a setting that is no longer the validated one (`choice.json`), left out of the "
                    "tables above because runs at the validated setting exist: "
                    + "; ".join(left_out) + ".")
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(records, metric.key, f"test {metric.axis}", protocol.title, folder / "summary.png",
         scale=metric.scale)
    return "\n\n".join(text + ["## Runs", commands(invocations)]) + "\n"


def main() -> None:
    reports = {"hippocampus": hippocampus, "isbi": isbi, "jsrt": jsrt,
               "hippocampus_160": lambda f: hippocampus(f, "MSD hippocampus (MRI), 3D, 160 steps"),
               "jsrt_sweep": lambda f: sweep(f, "mIoU", "mIoU (%)", 100, 1),
               "hippocampus_validation": lambda f: sweep(f, "mean_dice", "mean Dice", 1, 3),
               "jsrt_protocol/validation": choose_settings, "jsrt_protocol/test": protocol_test,
               "isbi_protocol/validation": lambda f: choose_settings(f, ISBI),
               "isbi_protocol/test": lambda f: protocol_test(f, ISBI),
               "hippocampus_protocol/validation": lambda f: choose_settings(f, HIPPOCAMPUS),
               "hippocampus_protocol/test": lambda f: protocol_test(f, HIPPOCAMPUS)}
    for name in sys.argv[1:]:
        folder = RESULTS / name
        text = reports[name](folder)
        (folder / "summary.md").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
