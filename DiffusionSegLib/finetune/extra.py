"""Extra labeled cases mixed into fine-tuning (``finetune --extra DIR``): artificial cases from
``diffusionseg synthesize``, pseudo-labeled cases from ``diffusionseg selftrain``, or any folder
of annotated cases.

An extra folder is laid out like a project folder: ``DIR/images/`` holds the images and
``DIR/labels/`` their annotations, named like the images (``case.seg.nrrd`` or a label map
for segmentation, ``case.mrk.json``/``.fcsv``/``.csv`` for landmarks).

Mixing: a fraction ``weight`` of the items of the run is drawn from the extra cases, spread
evenly over the steps (step ``s`` of batch ``B`` takes ``floor((s + 1) B w) - floor(s B w)``
extra items), and with ``B >= 2`` every batch keeps at least one real case. Real and extra
items each follow their own seeded epoch permutation (:class:`StepBatchSampler`'s rule), so
a run is a function of the seed and resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from torch.utils.data import Sampler

from ..data.sampler import StepBatchSampler
from ..errors import UserError
from .cases import Case, labeled_cases

_EXTRA_SEED_OFFSET = 1_000_003  # the extra stream's permutations differ from the real stream's


def extra_cases(folder: Path, suffixes: tuple[str, ...]) -> list[Case]:
    """The annotated cases of one ``--extra`` folder (``images/`` + ``labels/``)."""
    folder = Path(folder)
    images, labels = folder / "images", folder / "labels"
    if not folder.is_dir():
        raise UserError("the --extra folder does not exist.", path=folder,
                        fix="pass a folder written by `diffusionseg synthesize` or `selftrain`, or one with "
                            "images/ and labels/ sub-folders.")
    missing = [p.name + "/" for p in (images, labels) if not p.is_dir()]
    if missing:
        raise UserError(f"an --extra folder holds images/ and labels/ sub-folders; {' and '.join(missing)} "
                        f"{'is' if len(missing) == 1 else 'are'} missing.", path=folder,
                        fix="put the images in DIR/images and their annotations, named like the images, "
                            "in DIR/labels (the layout `diffusionseg synthesize` writes).")
    return labeled_cases(images, labels, suffixes)


def check_weight(weight: float) -> None:
    if not (0.0 <= weight < 1.0) or math.isnan(weight):
        raise UserError(f"--extra-weight must lie in [0, 1), not {weight:g}: it is the fraction of training "
                        "items drawn from the extra cases, and the real cases are always part of training.",
                        fix="pass e.g. --extra-weight 0.5 (half of each batch from the extra cases).")


def extra_count(step: int, batch: int, weight: float) -> int:
    """Extra items in the global batch of ``step``."""
    n = math.floor((step + 1) * batch * weight + 1e-9) - math.floor(step * batch * weight + 1e-9)
    return min(n, batch - 1) if batch >= 2 else n


class MixedBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(dataset index, augmentation seed)``: real cases are indices ``0 .. n_real - 1``,
    extra cases ``n_real .. n_real + n_extra - 1``. Same interface as :class:`StepBatchSampler`."""

    def __init__(self, n_real: int, n_extra: int, global_batch_size: int, total_steps: int, *, weight: float,
                 seed: int, start_step: int = 0, rank: int = 0, world_size: int = 1):
        if global_batch_size % world_size:
            raise ValueError(f"global_batch_size {global_batch_size} must divide by world_size {world_size}")
        self.n_real = n_real
        self.batch = global_batch_size
        self.total_steps = total_steps
        self.weight = weight if n_extra else 0.0
        self.start_step = start_step
        self.rank, self.world = rank, world_size
        self.real = StepBatchSampler(n_real, global_batch_size, total_steps, seed=seed)
        self.extra = StepBatchSampler(max(n_extra, 1), global_batch_size, total_steps,
                                      seed=seed + _EXTRA_SEED_OFFSET)

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        extra_pos = sum(extra_count(s, self.batch, self.weight) for s in range(self.start_step))
        real_pos = self.start_step * self.batch - extra_pos
        for step in range(self.start_step, self.total_steps):
            k = extra_count(step, self.batch, self.weight)
            items = [self.real.item(real_pos + j) for j in range(self.batch - k)]
            items += [(self.n_real + i, seed) for i, seed in (self.extra.item(extra_pos + j) for j in range(k))]
            real_pos += self.batch - k
            extra_pos += k
            yield items[self.rank::self.world]
