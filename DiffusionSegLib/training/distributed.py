"""Running unchanged under ``torchrun --nproc_per_node=K`` (one node or several).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; alone, a run is rank 0 of 1. Only rank
0 writes checkpoints and events; the others train their share of every batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import UserError


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # True when this code started the process group (and must end it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            # Leave together: a rank that tears gloo down while another is still in a
            # collective aborts the process ("terminate called without an active exception").
            dist.barrier()
            dist.destroy_process_group()


def init_distributed(device_type: str) -> DistContext:
    """Join the process group torchrun describes (NCCL on CUDA, gloo otherwise), or run alone.

    If the caller already initialised a group, it is used as it is.
    """
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), owns_group=True)


def init_distributed_for(requested_device: str) -> DistContext:
    """:func:`init_distributed` with the backend that ``--device`` (auto, cpu, cuda, cuda:N, mps) will use."""
    on_cuda = requested_device.startswith("cuda") or (requested_device == "auto" and torch.cuda.is_available())
    return init_distributed("cuda" if on_cuda else "cpu")


def rank_share(global_batch: int, ctx: DistContext) -> int:
    """This rank's part of a ``--batch-size`` of ``global_batch`` items per step (every rank trains as many)."""
    if global_batch % ctx.world_size:
        raise UserError(f"--batch-size {global_batch} does not divide among {ctx.world_size} processes.",
                        fix=f"use a multiple of {ctx.world_size}.")
    return global_batch // ctx.world_size


def local_rank_from_env() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def broadcast_flag(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """Rank 0's value of ``flag`` on every rank (for a stop request seen only on rank 0)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=device if dist.get_backend() == "nccl" else "cpu")
    dist.broadcast(t, src=0)
    return bool(t.item())
