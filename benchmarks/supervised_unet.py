"""The plain supervised baseline: a MONAI BasicUNet trained nnU-Net-style from scratch on the N labeled cases.

What a user who does not pretrain would run instead of DiffusionSeg: no diffusion model,
no pretraining, a standard U-Net (instance norm, LeakyReLU, no timestep path; 2D or 3D as
the images are) with strong augmentation (random affine, elastic in 2D only, intensity
scale/shift, gamma, noise on the picture channel: the ``strong`` recipe of
DiffusionSegLib/data/augment.py, which this baseline's recipe became), the task's
own loss (segmentation: DiceCE; landmarks: spatial-softmax cross-entropy on Gaussian
heatmaps), Adam with warm-up and cosine decay. Everything else is shared with the
DiffusionSeg methods so the comparison is paired and fair:

- the same cases (the benchmark's draw), read by the product's own task
  (``SegmentationTask.load`` or ``LandmarkTask.load`` of DiffusionSegLib/finetune/tasks.py),
- the same preprocessing (``choose_preprocessing``, as ``finetune`` without ``--pretrained``):
  2D x-ray percentile normalisation, whole image resized to the fine-tuning size, e.g.
  64x64; 3D (MRI, CT) the volume resampled to ``spacing`` and trained on random
  ``patch_size`` crops of it, the product's patch grid (``training_transform``: pad to at
  least the patch, random crop, then the recipe),
- the same prediction path (``predict_segmentation``: softmax resampled back to the image
  grid, then arg-max, with the product's sliding windows in 3D; ``predict_landmarks``:
  heatmap peaks mapped back to millimetres) and the same ``.seg.nrrd`` / ``.mrk.json`` writers,
- scored by the caller with the same ``evaluate_segmentations`` / ``evaluate_landmarks``.

    from benchmarks.supervised_unet import SupervisedOptions, segmentation_task, train_and_predict
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from monai.networks.nets import BasicUNet

from DiffusionSegLib import modelconfig
from DiffusionSegLib.data.augment import training_transform
from DiffusionSegLib.data.sampler import StepBatchSampler
from DiffusionSegLib.finetune.cases import LANDMARK_SUFFIXES, SEGMENTATION_SUFFIXES, labeled_cases
from DiffusionSegLib.finetune.tasks import LandmarkTask, SegmentationTask
from DiffusionSegLib.imageio import check_same_dims, list_images, read_image
from DiffusionSegLib.labels import write_seg_nrrd
from DiffusionSegLib.landmarks import write_mrk_json
from DiffusionSegLib.nets import network_config
from DiffusionSegLib.predict.engine import LoadedModel
from DiffusionSegLib.predict.run import predict_landmarks, predict_segmentation
from DiffusionSegLib.project import DEFAULT_COLORS, case_name
from DiffusionSegLib.vocabulary import LANDMARK_FILE_SUFFIX, SEGMENTATION_FILE_SUFFIX
from DiffusionSegLib.training.device import Precision
from DiffusionSegLib.data.choose import choose_preprocessing

FEATURES = (32, 32, 64, 128, 256, 32)   # MONAI BasicUNet's default widths (1.9 M parameters in 2D, 5.7 M in 3D)
DOWNSAMPLING = 2 ** 4                    # BasicUNet halves the image four times


@dataclass
class SupervisedOptions:
    iterations: int = 600
    batch_size: int = 4
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    warmup_steps: int = 20
    image_size: tuple[int, ...] | None = (64, 64)   # 2D: the whole image resized to this (x, y)
    augmentation: str = "strong"     # DiffusionSegLib.data.augment's recipe (nnU-Net-style)
    seed: int = 0
    # 3D (image_size None): the product's patch grid, as `finetune --spacing --patch-size` (x, y, z)
    spacing: tuple[float, ...] | None = None
    patch_size: tuple[int, ...] | None = None
    modality: str | None = None      # None: x-ray in 2D, guessed from the intensities in 3D

    def recipe(self) -> dict:
        """The options that apply (a 2D run has no spacing, patch or modality; a 3D run no image size)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def build_network(out_channels: int, dims: int = 2) -> torch.nn.Module:
    return BasicUNet(spatial_dims=dims, in_channels=1, out_channels=out_channels, features=FEATURES)


@dataclass
class BaselineModel(LoadedModel):
    """The trained BasicUNet as the product's ``LoadedModel`` (prediction reads its config's kind, dims,
    task and preprocessing); it has no diffusion U-Net config, so it states its own downsampling."""

    @property
    def downsampling_factor(self) -> int:
        return DOWNSAMPLING


def _listed(values) -> list | None:
    return list(values) if values is not None else None


def lr_at(opts: SupervisedOptions, step: int) -> float:
    """Linear warm-up, then cosine decay to 0 (the same shape as DiffusionSeg's fine-tuning schedule)."""
    if step < opts.warmup_steps:
        return opts.learning_rate * (step + 1) / opts.warmup_steps
    progress = (step - opts.warmup_steps) / max(1, opts.iterations - opts.warmup_steps)
    return opts.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def segmentation_task(classes: list[str]) -> SegmentationTask:
    """The product's segmentation task for ``classes``, with the project's default colours."""
    colors = [list(DEFAULT_COLORS[i % len(DEFAULT_COLORS)]) for i in range(len(classes))]
    return SegmentationTask(classes=list(classes), colors=colors)


Task = Union[SegmentationTask, LandmarkTask]


def train(images: Path, labels: Path, task: Task, opts: SupervisedOptions) -> tuple[LoadedModel, dict]:
    """Train on the cases annotated in ``labels`` (label maps for segmentation, ``.mrk.json`` for landmarks).

    Returns: (the trained network as the product's ``LoadedModel``, ``{"final_loss", "train_seconds",
    "parameters", "options"}``).
    """
    torch.manual_seed(opts.seed)
    cases = labeled_cases(images, labels, SEGMENTATION_SUFFIXES if task.kind == "segmentation" else LANDMARK_SUFFIXES)
    dims = check_same_dims([c.image for c in cases])
    # The grid a random-init `finetune` chooses (the tiny preset's size rule checks the patch, as it does there).
    prep = choose_preprocessing(dims, cases[0].image, network_config("tiny", dims),
                                modality=opts.modality or ("xray" if dims == 2 else "auto"),
                                image_size=_listed(opts.image_size), spacing=_listed(opts.spacing),
                                patch_size=_listed(opts.patch_size))
    if math.prod(s // DOWNSAMPLING for s in prep.patch_size) < 2:
        raise ValueError(f"BasicUNet's instance norm needs more than one voxel at 1/{DOWNSAMPLING} resolution: "
                         f"a patch of {prep.patch_size} has one; make a side at least {2 * DOWNSAMPLING}.")
    loaded = [task.load(case, prep) for case in cases]
    net = build_network(task.out_channels, dims)
    optimizer = torch.optim.Adam(net.parameters(), lr=opts.learning_rate, weight_decay=opts.weight_decay)
    # As finetune: pad each case to at least the patch, a random crop of it (2D: the whole resized image).
    transform = training_transform(prep.patch_shape, image_keys=task.image_keys,
                                   label_keys=task.label_keys, recipe=opts.augmentation)
    sampler = StepBatchSampler(len(cases), opts.batch_size, opts.iterations, seed=opts.seed)

    t0 = time.monotonic()
    net.train()
    losses = []
    for step, batch_items in enumerate(sampler):
        items = []
        for index, aug_seed in batch_items:
            out_case = transform({k: v.copy() for k, v in loaded[index].items()}, aug_seed)
            items.append({k: torch.as_tensor(np.asarray(v)) for k, v in out_case.items()})
        # Images and heatmaps as floats, class-index label maps as integers.
        batch = {**{k: torch.stack([i[k].float() for i in items]) for k in task.image_keys},
                 **{k: torch.stack([i[k].long() for i in items]) for k in task.label_keys}}
        for group in optimizer.param_groups:
            group["lr"] = lr_at(opts, step)
        loss = task.loss(net(batch["image"]), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12.0)
        optimizer.step()
        losses.append(loss.item())
    train_s = time.monotonic() - t0

    net.eval()
    device = torch.device("cpu")
    # What prediction reads of a model's config: its kind, dims and task (this U-Net is no diffusion U-Net).
    task_config = modelconfig.SegmentationTask if task.kind == "segmentation" else modelconfig.LandmarkTask
    config = modelconfig.ModelConfig(kind=task.kind, dims=dims, network=None,
                                     preprocessing=modelconfig.Preprocessing.from_dict(prep.to_dict()),
                                     task=task_config(**task.describe()))
    model = BaselineModel(config=config, network=net,
                          preprocessing=prep, device=device, precision=Precision.choose(device, "fp32"))
    return model, {"final_loss": float(np.mean(losses[-20:])), "train_seconds": round(train_s, 1),
                   "parameters": sum(p.numel() for p in net.parameters()), "options": opts.recipe()}


def predict_folder(model: LoadedModel, test_images: Path, out: Path) -> float:
    """Predict every image of ``test_images`` into ``out`` through the product's prediction path
    (``<case>.seg.nrrd`` or ``<case>.mrk.json``); returns the seconds it took."""
    t1 = time.monotonic()
    task = model.config.task
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for path in list_images(test_images):
            if model.kind == "segmentation":
                labelmap = predict_segmentation(model, read_image(path))
                write_seg_nrrd(labelmap, out / f"{case_name(path)}{SEGMENTATION_FILE_SUFFIX}", task.classes,
                               task.colors)
            else:
                write_mrk_json(predict_landmarks(model, read_image(path)),
                               out / f"{case_name(path)}{LANDMARK_FILE_SUFFIX}")
    return round(time.monotonic() - t1, 1)


def train_and_predict(images: Path, labels: Path, test_images: Path, out: Path, task: Task,
                      opts: SupervisedOptions) -> dict:
    """Train on the cases labeled in ``labels``, predict every image of ``test_images`` into ``out``.

    ``task``: ``segmentation_task(classes)``, or a ``LandmarkTask(names, sigma_mm)``.
    Returns: ``{"final_loss", "train_seconds", "predict_seconds", "parameters", "options"}``.
    """
    model, summary = train(images, labels, task, opts)
    return {**summary, "predict_seconds": predict_folder(model, test_images, out)}
