"""Every command reports a bad input as the progress protocol promises (docs/CLI.md, "Progress events").

Each case runs one command through the real CLI (``main(argv)``, in-process) with
``--progress json`` on inputs with one file wrong, and checks: exit code 2; stdout holds
only JSON lines, exactly one of them an ``error`` event whose message names the file;
nothing written (every file and folder under the case folder is as it was, hidden ones
and run locks included).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bad_inputs import Base, copy_model, good_folder, make_base, phantom, truncate, write
from DiffusionSegLib.cli.main import main

JSON = ["--progress", "json"]
RUNTIME = ["--device", "cpu", *JSON]


@dataclass
class Case:
    argv: list
    blamed: Path        # the file the error event must name


def _images(root: Path) -> Path:
    """A good folder whose case_1 image is cut in half."""
    good_folder(root / "data")
    truncate(root / "data" / "images" / "case_1.nrrd")
    return root / "data" / "images"


def _garbled_model(root: Path, source: Path) -> Path:
    """A copy of the model ``source`` whose config.json is not JSON."""
    model = copy_model(source, root / "model")
    (model / "config.json").write_text("{not json")
    return model


def predict(root: Path, base: Base) -> Case:
    images = _images(root)
    return Case(["predict", "--model", base.segmentation, "--images", images, "--out", root / "out", *RUNTIME],
                images / "case_1.nrrd")


def sample(root: Path, base: Base) -> Case:
    model = _garbled_model(root, base.pretrained)
    return Case(["sample", "--model", model, "--out", root / "out", "--count", "1", "--steps", "1", *RUNTIME],
                model / "config.json")


def demo(root: Path, base: Base) -> Case:
    out = root / "out"
    (out / "notes.txt").parent.mkdir()
    (out / "notes.txt").write_text("the user's own file")
    return Case(["demo", "--out", out, "--device", "cpu", *JSON], out)


def evaluate(root: Path, base: Base) -> Case:
    good_folder(root / "data")
    truncate(root / "data" / "labels" / "case_1.nrrd")
    pred = root / "pred"
    for i in range(3):
        write(phantom(i)[1], pred / f"case_{i}.nrrd")
    return Case(["evaluate", "--pred", pred, "--labels", root / "data" / "labels", "--classes", "disc,square",
                 "--out", root / "report.json", *JSON], root / "data" / "labels" / "case_1.nrrd")


def suggest(root: Path, base: Base) -> Case:
    images = _images(root)
    return Case(["suggest", "--model", base.pretrained, "--images", images, "--count", "1",
                 "--out", root / "out" / "suggestions", "--cache-dir", root / "cache", *RUNTIME],
                images / "case_1.nrrd")


def curve(root: Path, base: Base) -> Case:
    images = _images(root)
    return Case(["curve", "--pretrained", base.pretrained, "--images", images, "--labels", root / "data" / "labels",
                 "--classes", "disc,square", "--out", root / "out", "--iterations", "1", "--batch-size", "2",
                 "--sizes", "1", "--folds", "1", *RUNTIME], images / "case_1.nrrd")


def synthesize(root: Path, base: Base) -> Case:
    model = _garbled_model(root, base.segmentation)
    return Case(["synthesize", "--pretrained", base.pretrained, "--model", model, "--out", root / "out",
                 "--count", "1", "--steps", "1", *RUNTIME], model / "config.json")


def selftrain(root: Path, base: Base) -> Case:
    images = _images(root)
    write(phantom(5)[0], images / "case_5.nrrd")  # one unlabeled image to pseudo-label
    return Case(["selftrain", "--task", "segmentation", "--pretrained", base.pretrained, "--images", images,
                 "--labels", root / "data" / "labels", "--classes", "disc,square", "--out", root / "out",
                 "--iterations", "1", "--batch-size", "2", *RUNTIME], images / "case_1.nrrd")


def pretrain(root: Path, base: Base) -> Case:
    images = _images(root)
    return Case(["pretrain", "--images", images, "--out", root / "out", "--image-size", "32", "32",
                 "--iterations", "1", "--batch-size", "2", *RUNTIME], images / "case_1.nrrd")


def finetune(root: Path, base: Base) -> Case:
    images = _images(root)
    return Case(["finetune", "--task", "segmentation", "--pretrained", base.pretrained, "--images", images,
                 "--labels", root / "data" / "labels", "--classes", "disc,square", "--out", root / "out",
                 "--iterations", "1", "--batch-size", "2", *RUNTIME], images / "case_1.nrrd")


def bpr_train(root: Path, base: Base) -> Case:
    good_folder(root / "data")  # 2D images: body-part regression needs 3D volumes
    return Case(["bpr", "train", "--images", root / "data" / "images", "--out", root / "out", "--iterations", "1",
                 *RUNTIME], root / "data" / "images" / "case_0.nrrd")


def bpr_predict(root: Path, base: Base) -> Case:
    good_folder(root / "data", n=1)
    model = _garbled_model(root, base.segmentation)
    return Case(["bpr", "predict", "--model", model, "--images", root / "data" / "images", "--out", root / "out",
                 *RUNTIME], model / "config.json")


COMMANDS: list[Callable[[Path, Base], Case]] = [predict, sample, demo, evaluate, suggest, curve, synthesize,
                                                selftrain, pretrain, finetune, bpr_train, bpr_predict]


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` (hidden ones too) with the SHA-256 of its content ('' for a folder)."""
    return {str(p.relative_to(root)): "" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def run(argv: list) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(a) for a in argv])
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_base(tmp_path_factory.mktemp("error-events-base"))


@pytest.mark.parametrize("make", COMMANDS, ids=[m.__name__ for m in COMMANDS])
def test_bad_input_ends_in_one_error_event(make, base, tmp_path):
    case = make(tmp_path, base)
    before = snapshot(tmp_path)
    code, stdout, stderr = run(case.argv)
    events = [json.loads(line) for line in stdout.splitlines() if line.strip()]  # only JSON lines on stdout
    errors = [e for e in events if e["event"] == "error"]
    assert code == 2, stderr
    assert len(errors) == 1, events
    assert case.blamed.name in errors[0]["message"], (errors[0], stderr)
    assert snapshot(tmp_path) == before


def test_the_check_fails_without_the_event(tmp_path, monkeypatch):
    """The test above can fail: with the guard's report switched off, predict emits no error event."""
    from DiffusionSegLib.training import guard

    monkeypatch.setattr(guard, "report_failure", lambda reporter, exc: reporter.close())
    code, stdout, _ = run(["predict", "--model", tmp_path / "missing", "--images", tmp_path, "--out",
                           tmp_path / "out", *RUNTIME])
    assert code == 2
    assert not [line for line in stdout.splitlines() if '"error"' in line]


@pytest.mark.parametrize("inner_mode", ["json", "none"])
def test_nested_commands_send_one_error_event(inner_mode, capsys):
    """demo runs pretrain in json mode, curve runs finetune in none mode: stdout gets one event either way."""
    from DiffusionSegLib.errors import UserError
    from DiffusionSegLib.training.guard import CommandGuard
    from DiffusionSegLib.training.progress import Reporter

    with pytest.raises(UserError):
        with CommandGuard(Reporter("outer", "json")):
            with CommandGuard(Reporter("inner", inner_mode)):
                raise UserError("bad", path="x.nrrd")
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["stage"] for e in events if e["event"] == "error"] == ["inner" if inner_mode == "json" else "outer"]


#: Command lines argparse refuses, and what the event's message must say.
USAGE_ERRORS = {
    "unknown option": (["predict", "--model", "m", "--images", "i", "--out", "o", "--bogus"],
                       "unrecognized arguments: --bogus"),
    "bad choice": (["finetune", "--task", "segmentatoin", "--images", "i", "--out", "o"],
                   "argument --task: invalid choice: 'segmentatoin'"),
    "missing option": (["pretrain", "--images", "i"], "the following arguments are required: --out"),
    "wrong type": (["bpr", "train", "--images", "i", "--out", "o", "--iterations", "many"],
                   "argument --iterations: must be a positive whole number, not many"),
    "unknown command": (["pretrian"], "argument COMMAND: invalid choice: 'pretrian'"),
}


@pytest.mark.parametrize("progress", [["--progress", "json"], ["--progress=json"]], ids=["two words", "one word"])
@pytest.mark.parametrize("kind", USAGE_ERRORS)
def test_command_line_error_ends_in_one_error_event(kind, progress):
    """argparse's refusals too: usage on stderr, exit 2, one error event with the message and a fix on stdout."""
    argv, said = USAGE_ERRORS[kind]
    code, stdout, stderr = run([*argv, *progress])
    events = [json.loads(line) for line in stdout.splitlines()]  # only JSON lines on stdout
    assert code == 2
    assert [e["event"] for e in events] == ["error"], stdout
    assert said in events[0]["message"] and "Fix: run `diffusionseg" in events[0]["message"], events[0]
    assert stderr.startswith("usage: diffusionseg") and said in stderr


def test_command_line_error_without_json_progress_keeps_stdout_empty():
    code, stdout, stderr = run(["finetune", "--task", "segmentatoin", "--images", "i", "--out", "o"])
    assert (code, stdout) == (2, "")
    assert "error: argument --task: invalid choice" in stderr
