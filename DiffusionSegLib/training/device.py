"""Device choice and mixed precision: CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..errors import UserError
from ..vocabulary import PRECISIONS



def choose_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """The device to train on.

    Args:
        requested: 'auto' (CUDA if present, else MPS, else CPU), 'cpu', 'cuda',
            'cuda:N' or 'mps'.
        local_rank: in a distributed run, each process takes GPU ``local_rank``.
    """
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise UserError(f"'{requested}' is not a device.", fix="use --device auto, cpu, cuda, cuda:N or mps.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but PyTorch sees no CUDA GPU.",
                        fix="use --device auto or cpu, or install a CUDA build of PyTorch.")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps was asked for, but MPS is not available.", fix="use --device auto or cpu.")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


@dataclass
class Precision:
    """Autocast policy for a device.

    CUDA: bfloat16 where the GPU supports it (no loss scaling needed), else float16 with
    a gradient scaler. MPS: float16 autocast. CPU: float32 (CPU autocast is slower than
    float32 for these convolutions on most machines).
    """

    device: torch.device
    dtype: torch.dtype | None

    @classmethod
    def choose(cls, device: torch.device, requested: str = "auto") -> "Precision":
        if requested not in PRECISIONS:
            raise UserError(f"unknown precision '{requested}'.",
                            fix=f"use --precision with one of {', '.join(PRECISIONS)}.")
        if requested == "fp32" or (requested == "auto" and device.type == "cpu"):
            return cls(device, None)
        if requested == "bf16":
            return cls(device, torch.bfloat16)
        if requested == "fp16":
            return cls(device, torch.float16)
        if device.type == "cuda":
            return cls(device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        return cls(device, torch.float16)  # MPS

    @property
    def name(self) -> str:
        return {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]

    def autocast(self):
        """Context manager for the forward pass."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A scaler that is active only for float16 on CUDA (the one case that needs it)."""
        enabled = self.dtype == torch.float16 and self.device.type == "cuda"
        return torch.amp.GradScaler(self.device.type if enabled else "cpu", enabled=enabled)
