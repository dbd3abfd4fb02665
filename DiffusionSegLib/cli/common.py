"""Options every subcommand shares, small argument types, and where their defaults come from.

A default is stated once, in the command's Options dataclass (``<package>/options.py``,
torch-free so building the parser stays cheap); argparse reads it with :func:`defaults_of`
(Testing/Python/test_option_defaults.py fails when the two disagree).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Annotated

from ..vocabulary import PRECISIONS, PROGRESS_MODES, Precision, Progress


@dataclasses.dataclass
class RuntimeOptions:
    """The shared options of a command whose work takes plain arguments, not an Options dataclass (sample, evaluate)."""

    seed: int = 0
    device: str = "auto"
    precision: Annotated[str, PRECISIONS] = Precision.AUTO.value
    progress: Annotated[str, PROGRESS_MODES] = Progress.BAR.value


def defaults_of(options: type) -> dict:
    """``{field: default}`` of the dataclass ``options``: a fresh value for a ``default_factory``,
    no entry for a required field."""
    found = {}
    for f in dataclasses.fields(options):
        if f.default is not dataclasses.MISSING:
            found[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            found[f.name] = f.default_factory()
    return found


def runtime_default(options: type, name: str):
    """The default of the shared option ``name`` in ``options``; RuntimeOptions' when ``options`` lacks
    the field (predict accepts --seed, as every command does, but draws nothing at random)."""
    return defaults_of(options).get(name, defaults_of(RuntimeOptions)[name])


def add_runtime_options(parser: argparse.ArgumentParser, options: type) -> None:
    """--device, --precision, --progress and --seed, with the defaults of the dataclass ``options``."""
    add_device_option(parser, options)
    parser.add_argument("--precision", default=runtime_default(options, "precision"), choices=PRECISIONS,
                        help="auto: bf16/fp16 mixed precision on GPUs, fp32 on the CPU")
    add_progress_option(parser, options)
    parser.add_argument("--seed", type=int, default=runtime_default(options, "seed"))


def add_fast_option(parser: argparse.ArgumentParser, options: type) -> None:
    """--fast (nets/fast.py), with the default of the dataclass ``options``."""
    parser.add_argument("--fast", action="store_true", default=defaults_of(options)["fast"],
                        help="mixed precision (bf16 also on a CPU), channels-last and torch.compile: for a GPU")


def add_device_option(parser: argparse.ArgumentParser, options: type) -> None:
    parser.add_argument("--device", default=runtime_default(options, "device"),
                        help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")


def add_progress_option(parser: argparse.ArgumentParser, options: type) -> None:
    parser.add_argument("--progress", default=runtime_default(options, "progress"), choices=PROGRESS_MODES,
                        help="json: one event per line on stdout (for the Slicer module); bar: a progress bar")


def fraction(text: str) -> float:
    """A number in (0, 1], as argparse's type: a clear message instead of a traceback."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number above 0 and at most 1, not {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0   # argparse would name the function ("invalid positive_int value"), not what is wanted
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text}")
    return value
