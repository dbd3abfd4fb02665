"""A batch sampler whose every batch is a function of (seed, step): resumable and distributed.

Why not torch's RandomSampler + DistributedSampler: their position inside an epoch is
lost when a run stops. Here the ``p``-th item of the run is element ``p mod n`` of the
permutation of epoch ``p div n`` (seeded by ``(seed, epoch)``), and its augmentation
seed is derived from ``(seed, p)``. A resumed run at step ``s`` therefore draws exactly
the batches an uninterrupted run would, and ranks split each global batch without
overlap, each epoch still visiting every image once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields, for steps ``start_step .. total_steps - 1``, this rank's share of each global batch.

    Each item is ``(dataset index, augmentation seed)``.

    Args:
        dataset_size: number of images.
        global_batch_size: images per optimiser step over all ranks; must divide by
            ``world_size``.
        rank, world_size: this process's place in a distributed run (0, 1 alone).
    """

    def __init__(self, dataset_size: int, global_batch_size: int, total_steps: int, *, seed: int,
                 start_step: int = 0, rank: int = 0, world_size: int = 1):
        if global_batch_size % world_size:
            raise ValueError(f"global_batch_size {global_batch_size} must divide by world_size {world_size}")
        self.n = dataset_size
        self.batch = global_batch_size
        self.total_steps = total_steps
        self.seed = seed
        self.start_step = start_step
        self.rank = rank
        self.world = world_size
        self._perm_epoch = -1
        self._perm = np.arange(0)

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._perm_epoch = epoch
        return self._perm

    def item(self, position: int) -> tuple[int, int]:
        """The run's ``position``-th item: (index, augmentation seed)."""
        epoch, offset = divmod(position, self.n)
        aug_seed = int(np.random.default_rng([self.seed, 1, position]).integers(0, 2**31 - 1))
        return int(self._permutation(epoch)[offset]), aug_seed

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.total_steps):
            first = step * self.batch
            yield [self.item(first + j) for j in range(self.rank, self.batch, self.world)]
