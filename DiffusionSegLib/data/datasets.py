"""Datasets that read each case from disk when asked, with a small bounded cache."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..imageio import read_image
from .preprocess import Preprocessing

CaseLoader = Callable[[int], dict[str, np.ndarray]]
Transform = Callable[[dict[str, np.ndarray], int], dict[str, np.ndarray]]


class CaseDataset(Dataset):
    """Items are keyed by ``(case index, augmentation seed)`` (see StepBatchSampler).

    An item is ``{"image": (C, *S), ..., "seed": ()}`` after ``transform``.

    Args:
        load_case: ``i -> {"image": (1, H, W[, D]) float32, ...}``, the preprocessed case
            ``i`` read from disk; other keys (labels, heatmaps) share its grid.
        transform: ``(case, seed) -> case``: crop, pad, augment, deterministic in seed.
        cache_size: preprocessed cases kept in memory per worker. Bounded so a folder
            of thousands of volumes never has to fit in memory.
    """

    def __init__(self, size: int, load_case: CaseLoader, transform: Transform, cache_size: int = 32):
        self.size = size
        self.load_case = load_case
        self.transform = transform
        self.cache_size = cache_size
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return self.size

    def _case(self, index: int) -> dict[str, np.ndarray]:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        case = self.load_case(index)
        if self.cache_size > 0:
            self._cache[index] = case
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return case

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = key
        case = self.transform(dict(self._case(index)), seed)
        item = {name: torch.as_tensor(np.ascontiguousarray(value)) for name, value in case.items()}
        # The item's seed travels with it: per-item noise (see diffusion.ddpm.item_generators).
        item["seed"] = torch.tensor(seed, dtype=torch.int64)
        return item


def unlabeled_image_loader(paths: Sequence, preprocessing: Preprocessing) -> CaseLoader:
    """A loader for pretraining: ``i -> {"image": (1 + K, *S)}`` (image, then K coordinate channels)."""

    def load(index: int) -> dict[str, np.ndarray]:
        return {"image": preprocessing.network_input(preprocessing.resample(read_image(paths[index])))}

    return load
