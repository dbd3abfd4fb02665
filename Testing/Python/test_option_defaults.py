"""Every option of the command line has its command's Options dataclass's default and choices (issue 14).

A default is stated once, in the dataclass (``<package>/options.py``); argparse reads it
(``cli.common.defaults_of``). These tests walk every subcommand of the real parser and
fail when a literal default or choice list is edited in one place only, or when a new
subcommand is not given its Options class here. They also run each command's own code
from parsed arguments to its Options object (the work itself replaced), so a conversion
on the way (``--window-voxels 0`` -> None, ``--format`` -> a list) cannot drift either.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

import pytest

from DiffusionSegLib import vocabulary as v
from DiffusionSegLib.bpr.options import BprOptions, BprPredictOptions
from DiffusionSegLib.cli.common import RuntimeOptions
from DiffusionSegLib.cli.main import build_parser
from DiffusionSegLib.curve.options import CurveOptions
from DiffusionSegLib.demo.options import DemoOptions
from DiffusionSegLib.diffusion.options import SampleOptions
from DiffusionSegLib.finetune.options import FinetuneOptions
from DiffusionSegLib.predict.options import PredictOptions
from DiffusionSegLib.pretrain.options import PretrainOptions
from DiffusionSegLib.suggest.options import SuggestOptions
from DiffusionSegLib.synthesize.options import SelftrainOptions, SynthesizeOptions

#: subcommand -> the Options classes its options map onto, searched in order. evaluate passes
#: plain arguments to its work (RuntimeOptions: its shared options only).
OPTIONS = {
    "pretrain": (PretrainOptions,), "sample": (SampleOptions,), "finetune": (FinetuneOptions,),
    "synthesize": (SynthesizeOptions,), "selftrain": (SelftrainOptions, FinetuneOptions),
    "predict": (PredictOptions,), "evaluate": (RuntimeOptions,), "suggest": (SuggestOptions,),
    "curve": (CurveOptions,), "bpr train": (BprOptions,), "bpr predict": (BprPredictOptions,),
    "demo": (DemoOptions,),
}
#: Every choice list of the vocabulary: argparse offering one of them needs a field typed with it.
VOCABULARY_LISTS = {v.TASKS, v.FINETUNE_MODES, v.MODALITIES, v.AUTO_MODALITIES, v.OBJECTIVES, v.PRECISIONS,
                    v.PROGRESS_MODES, v.CONFIDENCE_MEASURES, v.AUGMENTATIONS}


def options_classes(command: str) -> tuple:
    return OPTIONS[command]


def commands(parser: argparse.ArgumentParser, prefix: str = ""):
    """(name, parser) of every leaf subcommand: ``finetune``, ``bpr train``, ..."""
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not nested and prefix:
        yield prefix, parser
    for action in nested:
        for name, sub in action.choices.items():
            yield from commands(sub, f"{prefix} {name}".strip())


def effective_defaults(parser: argparse.ArgumentParser) -> dict:
    """dest -> the value argparse gives it when the option is left out (the first action of a dest wins,
    then ``set_defaults``), as ``parse_args`` does."""
    found = {}
    for action in parser._actions:
        if action.dest is not argparse.SUPPRESS and action.default is not argparse.SUPPRESS:
            found.setdefault(action.dest, action.default)
    for dest, value in parser._defaults.items():
        found.setdefault(dest, value)
    return found


def field_of(classes: tuple, name: str):
    """(class, field) of the first class with a field ``name``, or None."""
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.name == name:
                return cls, f
    return None


def dataclass_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def choice_list(cls, name: str):
    """The vocabulary list a field is typed with (``Annotated[str, TASKS]``), or None."""
    hint = typing.get_type_hints(cls, include_extras=True)[name]
    return hint.__metadata__[0] if typing.get_origin(hint) is typing.Annotated else None


PARSER = build_parser()
COMMANDS = dict(commands(PARSER))


def test_every_subcommand_has_its_options_classes():
    assert set(COMMANDS) == set(OPTIONS)


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_defaults_are_the_options_dataclass_s(command):
    classes = options_classes(command)
    checked = []
    for dest, default in effective_defaults(COMMANDS[command]).items():
        found = field_of(classes, dest)
        if found is None:
            continue
        cls, f = found
        expected = dataclass_default(f)
        if expected is dataclasses.MISSING:
            continue  # a required field: the command line may require it or offer its own default (demo --out)
        assert default == expected and type(default) is type(expected), \
            f"{command} --{dest.replace('_', '-')}: argparse {default!r}, {cls.__name__}.{dest} {expected!r}"
        checked.append(dest)
    assert checked, f"{command}: no option maps onto {[c.__name__ for c in classes]}"


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_choices_are_the_fields_vocabulary_lists(command):
    classes = options_classes(command)
    for action in COMMANDS[command]._actions:
        found = field_of(classes, action.dest)
        if found is None:
            continue
        cls, f = found
        typed = choice_list(cls, f.name)
        offered = None if action.choices is None else tuple(action.choices)
        if typed is not None and action.nargs == 0:  # a flag (--no-augment): its value must be one of them
            assert action.const in typed, f"{command} {action.option_strings}: {action.const!r} not in {typed}"
        elif typed is not None:
            assert offered == typed, f"{command} {action.option_strings}: argparse {offered}, {cls.__name__} {typed}"
        else:
            assert offered not in VOCABULARY_LISTS, \
                f"{command} {action.option_strings}: type {cls.__name__}.{f.name} with its vocabulary list"


def test_the_check_catches_a_default_edited_in_one_place(monkeypatch):
    """The checks above can fail: a parser whose --batch-size default differs from FinetuneOptions'."""
    action = next(a for a in COMMANDS["finetune"]._actions if a.dest == "batch_size")
    monkeypatch.setattr(action, "default", action.default + 1)
    with pytest.raises(AssertionError, match="batch-size"):
        test_defaults_are_the_options_dataclass_s("finetune")


# ------------------------------------------------------------------ from the command line to Options
P = Path
FINETUNE = FinetuneOptions(task="segmentation", images=P("i"), annotations=P("l"), out=P("o"), pretrained=P("p"))
FINETUNE_ARGV = ["--task", "segmentation", "--pretrained", "p", "--images", "i", "--labels", "l", "--out", "o"]

#: argv with only the required options, the function its command hands the Options to, and what it must get.
BUILT = {
    "finetune": (["finetune", *FINETUNE_ARGV], "DiffusionSegLib.finetune.run.finetune", FINETUNE),
    "selftrain": (["selftrain", *FINETUNE_ARGV], "DiffusionSegLib.synthesize.selftrain.selftrain",
                  SelftrainOptions(finetune=FINETUNE)),
    "pretrain": (["pretrain", "--images", "i", "--out", "o"], "DiffusionSegLib.pretrain.run.pretrain",
                 PretrainOptions(images=P("i"), out=P("o"))),
    "predict": (["predict", "--model", "m", "--images", "i", "--out", "o"], "DiffusionSegLib.predict.run.predict",
                PredictOptions(model=P("m"), images=P("i"), out=P("o"))),
    "synthesize": (["synthesize", "--pretrained", "p", "--model", "m", "--out", "o"],
                   "DiffusionSegLib.synthesize.run.synthesize",
                   SynthesizeOptions(pretrained=P("p"), model=P("m"), out=P("o"))),
    "bpr train": (["bpr", "train", "--images", "i", "--out", "o"], "DiffusionSegLib.bpr.train.train_bpr",
                  BprOptions(images=P("i"), out=P("o"))),
    "bpr predict": (["bpr", "predict", "--model", "m", "--images", "i", "--out", "o"],
                    "DiffusionSegLib.bpr.predict.predict_bpr",
                    BprPredictOptions(model=P("m"), images=P("i"), out=P("o"))),
    "demo": (["demo"], "DiffusionSegLib.demo.run.run_demo", DemoOptions(out=P("demo-output"))),
}


@pytest.mark.parametrize("command", sorted(BUILT))
def test_the_command_line_builds_the_default_options(command, monkeypatch, capsys):
    argv, target, expected = BUILT[command]
    got = []
    monkeypatch.setattr(target, lambda opts: got.append(opts) or {})
    args = PARSER.parse_args(argv)
    assert args.run(args) == 0
    assert got == [expected]
    capsys.readouterr()  # the summary each command prints
