"""``diffusionseg selftrain``: self-training on the user's own unlabeled images.

Round 0 fine-tunes on the labeled cases. Each round r = 1 .. R then labels every unlabeled
image of ``--images`` with the previous round's model, keeps the confident pseudo-labels
(see :mod:`.confidence`) and fine-tunes again from the pretrained model on the real cases
plus the pseudo-labeled ones (``finetune --extra``). The last round's model is the result.

Everything is kept under the output model's run folder, for a person to inspect in Slicer::

    OUT/config.json, model.safetensors        the final model (written last)
    OUT/runs/selftrain-<time>/selftrain.json  what each round did
        round_0/model/                        fine-tuned on the labeled cases
        round_1/pseudo/images, labels          confident pseudo-labels (+ rejected/, pseudo.json/.csv)
        round_1/model/                        fine-tuned on real + pseudo-labeled cases
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

from ..atomic import write_atomic, write_json_atomic
from ..errors import UserError
from ..imageio import list_images, read_image
from ..predict.engine import load_task_model
from ..vocabulary import case_name
from ..finetune.cases import LANDMARK_SUFFIXES, SEGMENTATION_SUFFIXES, labeled_cases
from ..finetune.run import FinetuneOptions, finetune
from .. import modelconfig
from ..training.checkpoint import WEIGHTS_NAME, load_model_config
from ..training.guard import CommandGuard
from ..training.outputs import fresh_folder
from ..training.progress import Reporter, new_run_dir
from .cases import StagedCases, check_keep_fraction, confidence_summary, link_image, write_label, write_report
from .confidence import check_measure, label_image
from .options import DEFAULT_MIN_CONFIDENCE, SelftrainOptions  # SelftrainOptions imported from here too

REPORT_NAME = "pseudo"


def pseudo_label(model_dir: Path, images: list[Path], folder: Path, *, measure: str | None,
                 min_confidence: float | None, keep_fraction: float, overlap: float, device: str,
                 precision: str, reporter: Reporter) -> dict:
    """Label ``images`` with ``model_dir``; the kept cases (see ``cases.choose_kept``) into ``folder``
    (images/ + labels/), the others into ``folder/rejected``; report ``pseudo.json``/``pseudo.csv``.
    Returns the summary."""
    model = load_task_model(model_dir, device, precision)
    measure = check_measure(model.kind, measure)
    threshold = DEFAULT_MIN_CONFIDENCE[model.kind] if min_confidence is None else min_confidence
    cases = StagedCases(folder)
    for i, path in enumerate(images):
        case = case_name(path)
        image = read_image(path)
        labeled = label_image(model, image, measure=measure, min_confidence=threshold, overlap=overlap)
        cases.add(case, labeled, [link_image(path, cases.staging, case, image),
                                  write_label(model, labeled, cases.staging, case)], image=str(path))
        reporter.progress(i + 1, len(images))
    rows = cases.settle(threshold, keep_fraction)
    summary = {"model": str(model_dir), "kind": model.kind,
               **confidence_summary(rows, threshold, measure, keep_fraction)}
    write_report(folder, REPORT_NAME, summary, rows)
    return summary


def _install_model(source: Path, out: Path, selftrain: dict) -> None:
    """Copy the last round's model into ``out`` (weights first, config last) with its selftrain record."""
    write_atomic(out / WEIGHTS_NAME, lambda tmp: shutil.copyfile(source / WEIGHTS_NAME, tmp))
    config = load_model_config(source)
    config.selftrain = modelconfig.Selftrain(**selftrain)
    modelconfig.save(config, out)


def selftrain(opts: SelftrainOptions) -> dict:
    """Run the rounds and write the final model to ``opts.finetune.out``; returns the summary."""
    base = opts.finetune
    out = Path(base.out)
    reporter = Reporter("selftrain", base.progress)
    with CommandGuard(reporter, out) as guard:  # a failure leaves nothing half-written, as finetune
        if opts.rounds < 1:
            raise UserError(f"--rounds must be 1 or more, not {opts.rounds}.", fix="pass --rounds 1 or 2.")
        check_keep_fraction(opts.keep_fraction)
        suffixes = SEGMENTATION_SUFFIXES if base.task == "segmentation" else LANDMARK_SUFFIXES
        labeled = {c.name for c in labeled_cases(base.images, base.annotations, suffixes)}
        unlabeled = [p for p in list_images(base.images) if case_name(p) not in labeled]
        if not unlabeled:
            raise UserError("every image has an annotation, so there is nothing to pseudo-label.",
                            path=base.images, fix="put the unlabeled images (those pretraining used) in --images "
                                                  "too, or use `diffusionseg finetune`.")
        guard.created = fresh_folder(out, overwrite=base.overwrite,
                                     fix="choose a new --out, or pass --overwrite to replace that model.")
        run_dir = new_run_dir(out / "runs", "selftrain")
        reporter.attach(run_dir / "events.jsonl")
        return _rounds(opts, out, run_dir, reporter, sorted(labeled), unlabeled)


def _rounds(opts: SelftrainOptions, out: Path, run_dir: Path, reporter: Reporter, labeled: list[str],
            unlabeled: list[Path]) -> dict:
    base = opts.finetune
    t0 = time.monotonic()
    reporter.start(opts.rounds + 1, out=str(out), labeled=len(labeled), unlabeled=len(unlabeled))
    # In json mode the stages stay quiet: stdout carries selftrain's own events only.
    inner = replace(base, overwrite=False, progress="none" if base.progress == "json" else base.progress)
    record: dict = {"labeled": labeled, "unlabeled": [case_name(p) for p in unlabeled], "run": str(run_dir),
                    "rounds": []}

    def save_record():
        write_json_atomic(run_dir / "selftrain.json", record)

    reporter.log(f"round 0: fine-tuning on {len(labeled)} labeled case(s)")
    model_dir = run_dir / "round_0" / "model"
    finetune(replace(inner, out=model_dir))
    record["rounds"].append({"round": 0, "model": str(model_dir)})
    record["final_round"] = 0
    save_record()
    reporter.progress(1, opts.rounds + 1)
    for r in range(1, opts.rounds + 1):
        folder = run_dir / f"round_{r}" / "pseudo"
        reporter.log(f"round {r}: pseudo-labeling {len(unlabeled)} unlabeled image(s) with {model_dir}")
        stats = pseudo_label(model_dir, unlabeled, folder, measure=opts.measure, min_confidence=opts.min_confidence,
                             keep_fraction=opts.keep_fraction, overlap=opts.overlap, device=base.device,
                             precision=base.precision, reporter=Reporter("pseudo-label", "none"))
        entry = {"round": r, "pseudo": str(folder), "model": None,
                 **{k: stats[k] for k in ("kept", "rejected", "min_confidence", "keep_fraction", "measure",
                                          "confidence_quartiles")}}
        record["rounds"].append(entry)
        reporter.emit("output", round=r, path=str(folder), kept=stats["kept"], rejected=stats["rejected"])
        if stats["kept"] == 0:
            reporter.log(f"round {r}: no usable pseudo-label reached confidence {stats['min_confidence']:g}; the "
                         f"round {r - 1} model is the result (see {folder / (REPORT_NAME + '.csv')})")
            save_record()
            break
        reporter.log(f"round {r}: kept {stats['kept']} of {len(unlabeled)}; fine-tuning on real + pseudo-labeled")
        model_dir = run_dir / f"round_{r}" / "model"
        finetune(replace(inner, out=model_dir, extra=[*base.extra, folder]))
        entry["model"] = str(model_dir)
        record["final_round"] = r
        save_record()
        reporter.progress(r + 1, opts.rounds + 1)
    _install_model(model_dir, out, {"rounds": opts.rounds, "final_round": record["final_round"],
                                    "run": str(run_dir), "pseudo_labels": [
                                        {k: e[k] for k in ("round", "kept", "rejected", "min_confidence",
                                                           "keep_fraction")}
                                        for e in record["rounds"][1:]]})
    summary = {"out": str(out), "run": str(run_dir), "final_round": record["final_round"],
               "rounds": record["rounds"], "seconds": round(time.monotonic() - t0, 1)}
    reporter.done(**{k: v for k, v in summary.items() if k != "rounds"})
    return summary
