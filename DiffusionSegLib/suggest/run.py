"""``diffusionseg suggest``: which images to annotate next, as a ranked list (JSON + CSV).

Strategies (``--strategy``):

- ``kmedoids`` (the cold-start default, see docs/CLI.md for the measurement) and ``kcentre``:
  K images that represent the pool in the model's feature space (:mod:`.select`); labeled
  cases count as centres already there and are never suggested;
- ``mix``: a fine-tuned model's uncertainty (:mod:`.uncertainty`) mixed with the distance from
  the labeled cases (:func:`.select.mix`, weight ``--uncertainty-weight``, default 0.5);
- ``auto`` (default): ``mix`` for a fine-tuned model with at least one labeled case, else the
  cold-start default.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np

from ..atomic import write_atomic, write_json_atomic
from ..errors import UserError
from ..finetune.cases import LANDMARK_SUFFIXES, SEGMENTATION_SUFFIXES, annotation_files
from ..imageio import list_images, read_image
from ..imageio.verify import verify_images
from ..vocabulary import case_name
from ..training.guard import CommandGuard
from ..training.progress import Reporter
from . import select
from .cache import FeatureCache, image_key, model_key, weights_sha256
from .features import load_extractor
from .options import COLD_START_DEFAULT, SuggestOptions  # noqa: F401  (SuggestOptions imported from here too)

REPORT_FORMAT = "diffusionseg-suggestions"
CSV_COLUMNS = ("case", "rank", "score", "reason", "image")


def output_paths(out: str | Path) -> tuple[Path, Path]:
    """``DIR/suggestions.json`` + ``.csv`` for an existing folder or a path ending in a separator; else
    ``PREFIX.json`` + ``PREFIX.csv`` (a given .json or .csv ending is taken off first)."""
    text = str(out)
    if Path(out).is_dir() or text.endswith(("/", "\\")):
        base = Path(out) / "suggestions"
    else:
        base = Path(out)
        if base.suffix.lower() in (".json", ".csv"):
            base = base.with_suffix("")
    return base.with_name(base.name + ".json"), base.with_name(base.name + ".csv")


def command_line(opts: SuggestOptions) -> str:
    parts = ["diffusionseg", "suggest", "--model", str(opts.model), "--images", str(opts.images)]
    if opts.labels:
        parts += ["--labels", str(opts.labels)]
    if opts.landmarks:
        parts += ["--landmarks", str(opts.landmarks)]
    parts += ["--count", str(opts.count), "--out", str(opts.out), "--strategy", opts.strategy]
    if opts.strategy in ("auto", "mix"):
        parts += ["--uncertainty-weight", f"{opts.uncertainty_weight:g}"]
    if opts.cache_dir:
        parts += ["--cache-dir", str(opts.cache_dir)]
    return " ".join(parts + ["--seed", str(opts.seed)])


def _labeled(opts: SuggestOptions, kind: str, cases: set[str]) -> tuple[set[str], Path | None]:
    if opts.labels and opts.landmarks:
        raise UserError("--labels and --landmarks were both given.", fix="pass the one annotation folder of the task.")
    folder = opts.labels or opts.landmarks
    if folder is None:
        return set(), None
    wanted = "segmentation" if opts.labels else "landmarks"
    if kind in ("segmentation", "landmarks") and kind != wanted:
        option = "--landmarks" if kind == "landmarks" else "--labels"
        raise UserError(f"this is a {kind} model but {'--labels' if opts.labels else '--landmarks'} was given.",
                        path=opts.model, fix=f"pass the {kind} annotations with {option}.")
    files = annotation_files(Path(folder), SEGMENTATION_SUFFIXES if opts.labels else LANDMARK_SUFFIXES)
    return set(files) & cases, Path(folder)


def _strategy(opts: SuggestOptions, kind: str, labeled: set[str]) -> str:
    if opts.strategy not in select.STRATEGIES:
        raise UserError(f"unknown strategy '{opts.strategy}'.",
                        fix=f"use --strategy {' or '.join(select.STRATEGIES)}.")
    if not 0.0 <= opts.uncertainty_weight <= 1.0:
        raise UserError(f"--uncertainty-weight {opts.uncertainty_weight:g} is outside 0..1.",
                        fix="use a weight between 0 (distance only) and 1 (uncertainty only).")
    if opts.strategy == "mix" and kind == "pretrained":
        raise UserError("--strategy mix needs a fine-tuned model (its uncertainty); this one is pretrained.",
                        path=opts.model, fix="pass a segmentation or landmark model, or use --strategy kmedoids.")
    if opts.strategy != "auto":
        return opts.strategy
    return "mix" if kind != "pretrained" and labeled else COLD_START_DEFAULT


def open_cache(opts: SuggestOptions, extractor, weights_digest: str) -> FeatureCache:
    root = Path(opts.cache_dir) if opts.cache_dir else Path(opts.model) / "cache" / "suggest"
    return FeatureCache(root, model_key(weights_digest, extractor.recipe))


def pool_features(extractor, cache: FeatureCache, paths: list[Path], on_image=None) -> tuple[list[dict], int]:
    """Every image's cache entry ``{"features": (F,), "info": {"widths": [...], uncertainty...}}`` (computed
    and stored when missing), and how many were computed."""
    rows, computed = [], 0
    dims = extractor.config.dims
    for i, path in enumerate(paths):
        key = image_key(path)
        entry = cache.get(key)
        if entry is None:
            image = read_image(path)
            if image.GetDimension() != dims:
                raise UserError(f"this image is {image.GetDimension()}D but the model is {dims}D.", path=path,
                                fix=f"use {dims}D images with this model (move the others out of the folder).")
            features, widths, info = extractor.describe(image)
            entry = {"features": features, "info": {"widths": widths, **info}}
            cache.put(key, entry)
            computed += 1
        rows.append(entry)
        if on_image is not None:
            on_image(i + 1)
    return rows, computed


def suggest(opts: SuggestOptions) -> dict:
    """Rank ``opts.count`` unlabeled images of ``opts.images``; write the JSON and CSV; return the report."""
    reporter = Reporter("suggest", opts.progress)
    with CommandGuard(reporter):  # the error event; two files written atomically need no folder policy
        return _suggest(opts, reporter)


def _suggest(opts: SuggestOptions, reporter: Reporter) -> dict:
    t0 = time.monotonic()
    if opts.count < 1:
        raise UserError(f"--count {opts.count} asks for no case.", fix="use --count 1 or more.")
    extractor = load_extractor(opts.model, opts.device, opts.precision)
    kind = extractor.kind
    paths = list_images(opts.images)
    # Every image decoded once up front, as predict does: a bad one ends the run before any feature is cached.
    verify_images(paths, extractor.preprocessing.dims, log=reporter.log)
    names = [case_name(p) for p in paths]
    labeled, folder = _labeled(opts, kind, set(names))
    strategy = _strategy(opts, kind, labeled)
    free = len(paths) - len(labeled)
    if opts.count > free:
        raise UserError(f"--count {opts.count} is more than the {free} unlabeled image(s) in the folder "
                        f"({len(paths)} images, {len(labeled)} labeled).", path=opts.images,
                        fix=f"use --count {free} or less, or add images." if free else "add unlabeled images.")
    json_path, csv_path = output_paths(opts.out)

    weights = weights_sha256(extractor.weights)
    cache = open_cache(opts, extractor, weights)
    reporter.start(len(paths), out=str(json_path), model=str(opts.model), strategy=strategy)
    t_features = time.monotonic()
    rows, computed = pool_features(extractor, cache, paths, lambda i: reporter.progress(i, len(paths)))
    seconds_features = time.monotonic() - t_features
    widths = rows[0]["info"]["widths"]
    X = select.embed(np.stack([r["features"] for r in rows]), widths)
    fixed = [i for i, n in enumerate(names) if n in labeled]
    if strategy == "mix":
        u = np.array([r["info"]["uncertainty"] for r in rows])
        picks = select.mix(X, u, opts.count, fixed, opts.uncertainty_weight)
    elif strategy == "kcentre":
        picks = select.kcentre(X, opts.count, fixed)
    else:
        picks = select.kmedoids(X, opts.count, fixed, seed=opts.seed)
    counts = select.represented(X, fixed + [p.index for p in picks])[len(fixed):]
    suggestions = []
    for rank, (pick, n) in enumerate(zip(picks, counts), 1):
        info = {k: v for k, v in rows[pick.index]["info"].items() if k != "widths"}
        score = pick.score if strategy == "mix" else float(n) / len(paths)
        suggestions.append({"case": names[pick.index], "rank": rank, "score": round(score, 4),
                            "reason": reason(strategy, kind, pick, int(n), info, bool(fixed)),
                            "image": str(paths[pick.index]), "represents": int(n), **info,
                            **{k: (None if v is None else round(v, 4)) if not isinstance(v, bool) else v
                               for k, v in pick.details.items()}})
    chosen = fixed + [p.index for p in picks]
    report = {
        "format": REPORT_FORMAT, "version": 1, "command": command_line(opts),
        "model": {"path": str(opts.model), "kind": kind, "weights_sha256": weights},
        "images": str(opts.images), "annotations": str(folder) if folder else None,
        "strategy": strategy, "uncertainty_weight": opts.uncertainty_weight if strategy == "mix" else None,
        "count": opts.count, "pool": len(paths), "labeled": sorted(labeled),
        "coverage": round(select.coverage(X, chosen), 5),
        "features": {"recipe": extractor.recipe, "dims": int(X.shape[1]), "cache": str(cache.folder),
                     "computed": computed, "cached": len(paths) - computed},
        "timing": {"seconds": round(time.monotonic() - t0, 2), "features_seconds": round(seconds_features, 2)},
        "suggestions": suggestions,
    }
    write_json_atomic(json_path, report)
    write_atomic(csv_path, lambda tmp: tmp.write_text(_csv(suggestions), encoding="utf-8"))
    reporter.emit("output", path=str(json_path))
    reporter.emit("output", path=str(csv_path))
    reporter.log(f"{len(suggestions)} suggestion(s) ({strategy}): {', '.join(s['case'] for s in suggestions[:10])}"
                 f"{' ...' if len(suggestions) > 10 else ''}; features computed for {computed}, cached for "
                 f"{len(paths) - computed}")
    reporter.done(out=str(json_path), csv=str(csv_path), count=len(suggestions), strategy=strategy,
                  computed=computed)
    return report


def _csv(suggestions: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(suggestions)
    return buffer.getvalue()


def reason(strategy: str, kind: str, pick: select.Pick, n: int, info: dict, any_labeled: bool) -> str:
    """A short sentence: why this case."""
    similar = f"represents {n - 1} similar image{'s' if n - 1 != 1 else ''}" if n > 1 else \
        "unlike every other image (an outlier)"
    if strategy == "kmedoids":
        return similar
    if strategy == "kcentre":
        if pick.details.get("first"):
            return f"the most typical image; {similar}"
        return f"far from every {'labeled case and ' if any_labeled else ''}earlier pick; {similar}"
    if kind == "segmentation":
        doubt = (f"augmented predictions disagree on {100 * info['disagreement']:.0f}% of the structure's pixels"
                 if info.get("foreground", 1) > 0 else "the model finds no structure")
    else:
        doubt = (f"landmark peaks are weak (mass {info['peak_mass']:.2f}) and move {info['spread_px']:.1f} px "
                 f"under augmentation")
    details = pick.details
    if details["nearest_labeled"] is None:
        where = "the first suggestion"
    elif details["distance_scaled"] >= 0.5:
        where = "far from every labeled case" + (" and earlier suggestion" if details["earlier"] else "") \
            if any_labeled else "unlike every earlier suggestion"
    else:
        where = "close to a labeled case" if details["nearest_labeled"] else \
            f"close to suggestion {details['nearest_rank']}"
    first, second = (doubt, where) if details["uncertainty_scaled"] >= details["distance_scaled"] \
        else (where, doubt)
    return f"{first}; {second}"
