"""``--fast``: the GPU speed options of prediction and training, behind one switch.

- Mixed precision: with ``--precision auto`` a GPU already runs bf16 (fp16 where bf16 is
  missing, see ``training/device.py``); ``--fast`` asks for it on a CPU too (bf16), where
  it is off by default because it is slower than fp32 on most CPUs.
- Channels-last memory format (``channels_last`` / ``channels_last_3d``) for the network
  and every input: what cuDNN's tensor-core convolutions want.
- ``torch.compile`` of the network. Every call has the same shape (prediction fills up its
  sliding-window batches, ``predict/windows.blended_slabs``; training draws fixed-size crops
  in fixed-size batches), so it compiles once and the compiled graph can be captured as a
  CUDA graph (mode ``max-autotune-no-cudagraphs`` is not used: the default mode lets
  inductor choose).

Each option runs on a CPU too, so tests cover the code path; whether it pays on a given
machine is for ``benchmarks/flops.py`` run there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: torch.compile's backend. Tests set "eager" to check the compile path without building C++.
COMPILE_BACKEND = "inductor"


@dataclass(frozen=True)
class FastOptions:
    """What ``--fast`` turns on (all three, or none)."""

    channels_last: bool = False
    compile: bool = False
    mixed_precision: bool = False

    @classmethod
    def choose(cls, fast: bool) -> "FastOptions":
        return cls(channels_last=fast, compile=fast, mixed_precision=fast)

    def precision(self, requested: str) -> str:
        """The ``--precision`` to use: bf16 instead of ``auto`` when mixed precision is on."""
        return "bf16" if self.mixed_precision and requested == "auto" else requested

    def memory_format(self, dims: int) -> torch.memory_format:
        """The memory format of network inputs ``(N, C, *S)`` with ``dims`` spatial axes."""
        if not self.channels_last:
            return torch.contiguous_format
        return torch.channels_last if dims == 2 else torch.channels_last_3d

    def prepare(self, network: torch.nn.Module, dims: int) -> torch.nn.Module:
        """``network`` (on its device) in this memory format, compiled if asked."""
        return self.compiled(self.in_memory_format(network, dims))

    def in_memory_format(self, network: torch.nn.Module, dims: int) -> torch.nn.Module:
        """``network`` with its parameters converted in place to this memory format (returned for chaining).
        In place, so an optimiser or EMA made afterwards, and the checkpoints, see the same tensors."""
        return network.to(memory_format=self.memory_format(dims)) if self.channels_last else network

    def compiled(self, network: torch.nn.Module) -> torch.nn.Module:
        """``network`` compiled if asked. The compiled wrapper shares its parameters, so the optimiser,
        the EMA and the checkpoints keep working on ``network`` itself (no ``_orig_mod.`` keys)."""
        return torch.compile(network, backend=COMPILE_BACKEND, dynamic=False) if self.compile else network

    def inputs(self, tensor: torch.Tensor) -> torch.Tensor:
        """An image batch ``(N, C, *S)`` in this memory format (other tensors unchanged)."""
        if not self.channels_last or not tensor.is_floating_point() or tensor.dim() not in (4, 5):
            return tensor
        return tensor.contiguous(memory_format=self.memory_format(tensor.dim() - 2))
