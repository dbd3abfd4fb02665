"""Window-level parallelism on a CPU: several sliding windows computed at once, one thread each.

Why not leave it to PyTorch's intra-op threads: a 3D window of the training patch is a small
input, and splitting each convolution of it across threads scales poorly. Measured on this
project's 2-core machine, tiny 3D U-Net, two 64x64x32 windows per call, eight calls: one thread
9.6 s; two intra-op threads 5.5 s (1.76x); two calls at once on two Python threads of one
intra-op thread each 4.7 s (2.04x). PyTorch releases the GIL inside its operators, so Python
threads run the network truly in parallel; each new thread takes its intra-op thread count
from the process-wide setting when it first runs an operator, which is why the setting is
lowered while the workers run and restored afterwards.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def window_workers(device: torch.device) -> int:
    """How many calls of the network to run at once: one per intra-op thread on a CPU; one on a
    GPU (a GPU parallelises inside each call). The caller caps it at the number of calls."""
    return max(1, torch.get_num_threads()) if device.type == "cpu" else 1


@contextmanager
def threads_per_worker(workers: int) -> Iterator[None]:
    """Give each of ``workers`` worker threads an equal share of the intra-op threads; restore after."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, before // workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` for each item, in input order, with up to ``workers`` calls running at once.

    At most ``workers`` results wait at a time, so memory stays that of ``workers`` calls
    however many items there are. With one worker, a plain loop on the calling thread. While
    the workers run, the process's intra-op thread count is lowered (``threads_per_worker``),
    also for the caller between items; it is restored when the iteration ends or is abandoned.
    """
    if workers <= 1:
        for item in items:
            yield item, fn(item)
        return
    with threads_per_worker(workers), ThreadPoolExecutor(workers, thread_name_prefix="window") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= workers:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _, future in pending:   # the caller stopped early: do not start what is queued
                future.cancel()
