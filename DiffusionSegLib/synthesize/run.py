"""``diffusionseg synthesize``: PTDR's artificial labeled dataset.

Images are drawn from the pretrained denoiser (DDIM, in batches, seeded), labeled by the
fine-tuned model, and written as ordinary cases; those whose label is confident (see
:mod:`.confidence`) go to ``images/`` + ``labels/`` (what ``finetune --extra`` reads), the
others to ``rejected/``, and a report gives every sample's confidence.

Samples are drawn on the pretrained model's network grid: the whole resized image (2D) or
one training patch (3D; drawing a 64x64x32 patch of the tiny preset takes about a second per
DDIM step on a CPU core, so keep the patch small). Their intensities are written in the
units the model normalises from (a CT window is inverted to HU; percentile-normalised
models get 0..1000), so ``finetune`` and ``predict`` read them like any image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..data.coordinates import position_map
from ..data.preprocess import Preprocessing
from ..diffusion.ddpm import DiffusionConfig
from ..diffusion.sampling import sample_images
from ..errors import UserError
from ..imageio import Normalisation
from ..nets import NetworkConfig, build_unet
from ..predict.engine import LoadedModel, load_task_model
from ..training.checkpoint import load_model_config, load_weights
from ..training.device import Precision, choose_device
from ..training.guard import CommandGuard
from ..training.outputs import check_output_folder, staged_folder
from ..training.progress import Reporter
from .cases import StagedCases, check_keep_fraction, confidence_summary, write_label, write_new_image, write_report
from .confidence import check_measure, label_image
from .options import DEFAULT_MIN_CONFIDENCE, SynthesizeOptions  # SynthesizeOptions imported from here too

REPORT_NAME = "synthesize"


def load_denoiser(model_dir: Path, device: torch.device):
    """(U-Net, network config, preprocessing, diffusion config) of a DDPM-pretrained model."""
    config = load_model_config(model_dir)
    if config.kind != "pretrained" or config.pretrain_objective != "ddpm":
        raise UserError(f"this is a {config.kind} model; only a DDPM-pretrained model can draw images.",
                        path=model_dir, fix="pass the folder that `diffusionseg pretrain` wrote as --pretrained.")
    prep = Preprocessing.from_dict(config.preprocessing.to_dict())
    if prep.coordinates not in (None, "position"):
        raise UserError(f"sampling is offered for position coordinates only, this model uses '{prep.coordinates}'.",
                        path=model_dir, fix="synthesize from a model pretrained without --coordinates, or with "
                                            "--coordinates position.")
    net = build_unet(NetworkConfig.from_dict(config.network.to_dict()))
    net.load_state_dict(load_weights(model_dir))
    return net.to(device).eval(), prep, DiffusionConfig.from_dict(config.diffusion.to_dict())


def check_pair(prep: Preprocessing, task: LoadedModel, pretrained: Path, model: Path) -> None:
    """The labeling model must read images the way the denoiser draws them."""
    tprep = task.preprocessing
    same = (tprep.dims == prep.dims and tprep.image_size == prep.image_size and tprep.spacing == prep.spacing
            and tprep.normalisation == prep.normalisation and tprep.coordinates == prep.coordinates)
    if not same:
        raise UserError("the fine-tuned model does not read images like the pretrained model draws them "
                        "(dimensions, size, spacing, intensity normalisation or coordinates differ).", path=model,
                        fix=f"pass a model fine-tuned from {pretrained} (finetune --pretrained {pretrained}).")


def sample_spacing(prep: Preprocessing, task: LoadedModel) -> list[float]:
    """Spacing of the drawn images: the model's, else the fine-tuning cases' network grid (which
    sets the landmark heatmaps' width in pixels), else 1 mm."""
    if prep.spacing is not None:
        return [float(s) for s in prep.spacing]
    spacing = task.config.training.grid_spacing if task.config.training else None
    if spacing and len(spacing) == prep.dims:
        return [float(s) for s in spacing]
    if task.kind == "landmarks":  # models fine-tuned before grid_spacing was recorded: default sigma = 1.5 px
        return [task.config.task.sigma_mm / 1.5] * prep.dims
    return [1.0] * prep.dims


def to_image(pixels: np.ndarray, normalisation: dict, spacing: list[float]) -> sitk.Image:
    """A drawn image (network values in [-1, 1], numpy order) in the units the model normalises from."""
    norm = Normalisation.from_dict(normalisation)
    if norm.method == "window":
        values = norm.low + (pixels + 1.0) / 2.0 * (norm.high - norm.low)
    else:
        values = (pixels + 1.0) * 500.0
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.SetSpacing(spacing)
    return image


def synthesize(opts: SynthesizeOptions) -> dict:
    """Draw ``opts.count`` images, label them, write the confident ones as cases; returns the summary."""
    out = Path(opts.out)
    reporter = Reporter("synthesize", opts.progress)
    with CommandGuard(reporter, out):
        check_output_folder(out)
        check_keep_fraction(opts.keep_fraction)
        summary = _synthesize(opts, out, reporter)
    reporter.log(f"kept {summary['kept']} of {summary['total']} "
                 f"(confidence quartiles {summary['confidence_quartiles']})")
    reporter.done(**{k: summary[k] for k in ("out", "kept", "rejected", "total")})
    return summary


def _synthesize(opts: SynthesizeOptions, out: Path, reporter: Reporter) -> dict:
    dev = choose_device(opts.device)
    precision = Precision.choose(dev, opts.precision)
    denoiser, prep, diffusion = load_denoiser(opts.pretrained, dev)
    task = load_task_model(opts.model, opts.device, opts.precision)
    check_pair(prep, task, opts.pretrained, opts.model)
    measure = check_measure(task.kind, opts.measure)
    threshold = DEFAULT_MIN_CONFIDENCE[task.kind] if opts.min_confidence is None else opts.min_confidence
    spacing = sample_spacing(prep, task)
    batches = [min(opts.batch_size, opts.count - start) for start in range(0, opts.count, opts.batch_size)]
    total = len(batches) * opts.steps
    reporter.start(total, out=str(out), count=opts.count)
    reporter.log(f"drawing {opts.count} {prep.dims}D image(s) of {list(prep.patch_size)} pixels in "
                 f"{len(batches)} batch(es) of {opts.steps} DDIM steps; keeping {task.kind} labels with "
                 f"{measure} confidence >= {threshold:g}")
    with staged_folder(out) as tmp:
        cases = StagedCases(tmp)
        index = 0
        for b, size in enumerate(batches):
            generator = torch.Generator().manual_seed(opts.seed * 100_003 + b)
            condition = None
            if prep.coordinates == "position":
                condition = torch.from_numpy(position_map(prep.patch_shape))[None].expand(size, -1,
                                                                                          *prep.patch_shape)
            with precision.autocast():
                drawn = sample_images(denoiser, diffusion, (size, 1, *prep.patch_shape), steps=opts.steps,
                                      method="ddim", generator=generator, device=dev, condition=condition,
                                      on_step=lambda i, n, b=b: reporter.progress(b * opts.steps + i, total))
            for pixels in drawn[:, 0].numpy():
                case = f"synth_{index:04d}"
                image = to_image(pixels, prep.normalisation, spacing)
                labeled = label_image(task, image, measure=measure, min_confidence=threshold,
                                      overlap=opts.overlap)
                cases.add(case, labeled, [write_new_image(image, cases.staging, case),
                                          write_label(task, labeled, cases.staging, case)])
                index += 1
        rows = cases.settle(threshold, opts.keep_fraction, opts.keep_rejected)
        stats = confidence_summary(rows, threshold, measure, opts.keep_fraction)
        summary = {"pretrained": str(opts.pretrained), "model": str(opts.model), "kind": task.kind,
                   "count": opts.count, "steps": opts.steps, "batch_size": opts.batch_size, "seed": opts.seed,
                   "spacing": spacing, **stats, "out": str(out)}
        write_report(tmp, REPORT_NAME, summary, rows)
    return summary
