"""Options every subcommand shares, and small argument types."""

from __future__ import annotations

import argparse

from ..vocabulary import PRECISIONS, PROGRESS_MODES, Precision, Progress


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    add_device_option(parser)
    parser.add_argument("--precision", default=Precision.AUTO.value, choices=PRECISIONS,
                        help="auto: bf16/fp16 mixed precision on GPUs, fp32 on the CPU")
    add_progress_option(parser)
    parser.add_argument("--seed", type=int, default=0)


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", default=Progress.BAR.value, choices=PROGRESS_MODES,
                        help="json: one event per line on stdout (for the Slicer module); bar: a progress bar")


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text}")
    return value
