"""Scripts/DiffusionSegBatch.py: the whole pipeline without the GUI, through the core Logic."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


@pytest.fixture
def batch(slicer_core, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("DIFFUSIONSEG_BACKEND_DIR", str(HERE))
    monkeypatch.delenv("FAKE_DIFFUSIONSEG_FAIL", raising=False)
    sys.path.insert(0, str(REPO / "DiffusionSeg" / "Scripts"))
    import DiffusionSegBatch

    return DiffusionSegBatch


def make_images(folder, count):
    sitk = pytest.importorskip("SimpleITK")
    import numpy as np

    folder.mkdir()
    for i in range(count):
        image = sitk.GetImageFromArray(np.arange(60, dtype=np.int16).reshape(3, 4, 5) * (i + 1))
        image.SetSpacing((0.7, 0.8, 2.0))
        sitk.WriteImage(image, str(folder / f"img{i}.nrrd"))


def test_batch_pretrain_finetune_predict(batch, tmp_path, capsys):
    make_images(tmp_path / "incoming", 3)
    project_dir = tmp_path / "proj"
    common = ["--project", str(project_dir), "--backend-module", "fake_diffusionseg"]
    code = batch.main(common + ["--create", "--task", "segmentation", "--dims", "3", "--names", "organ",
                                "--add-images", str(tmp_path / "incoming"), "--pretrain", "--pretrain-iterations", "2"])
    assert code == 0, capsys.readouterr().err
    assert "Pretraining: step 2 / 2" in capsys.readouterr().out

    # Fine-tuning needs a labeled case: the batch reports the Logic's message and exit code 2.
    assert batch.main(common + ["--finetune"]) == 2
    assert "No case is labeled yet" in capsys.readouterr().err

    import shutil

    labels = project_dir / "labels"
    shutil.copyfile(project_dir / "images" / "img0.nrrd", labels / "img0.seg.nrrd")  # any label file counts
    assert batch.main(common + ["--finetune", "--finetune-iterations", "2", "--predict", "unlabeled"]) == 0
    out = capsys.readouterr().out
    assert "finetune: done" in out and "predict: done" in out
    predictions = sorted(p.name for p in project_dir.glob("runs/predict-*/predictions/*.seg.nrrd"))
    assert predictions == ["img1.seg.nrrd", "img2.seg.nrrd"]

    # Which case to annotate next: with a labeled case, the fine-tuned model ranks the unlabeled ones.
    assert batch.main(common + ["--suggest", "1"]) == 0
    out = capsys.readouterr().out
    assert "suggest: done" in out and "1. img2: represents" in out
    [suggestions] = project_dir.glob("runs/suggest-*/suggestions.csv")
    assert suggestions.read_text().splitlines()[0] == "case,rank,score,reason,image"

    # Is one more annotation worth it? Needs two labeled cases, then prints the curve's sentence.
    assert batch.main(common + ["--curve"]) == 2
    assert "at least 2 labeled cases" in capsys.readouterr().err
    shutil.copyfile(project_dir / "images" / "img1.nrrd", labels / "img1.seg.nrrd")
    assert batch.main(common + ["--curve"]) == 0
    assert "One more annotation: +1.2 Dice points" in capsys.readouterr().out
    assert list(project_dir.glob("runs/curve-*/curve.png"))


def test_batch_failure_exit_code(batch, tmp_path, capsys, monkeypatch):
    make_images(tmp_path / "incoming", 1)
    monkeypatch.setenv("FAKE_DIFFUSIONSEG_FAIL", "user")
    code = batch.main(["--project", str(tmp_path / "p"), "--backend-module", "fake_diffusionseg", "--create",
                       "--names", "a", "--add-images", str(tmp_path / "incoming"), "--pretrain"])
    assert code == 2
    assert "error: labels/case_001.seg.nrrd: segment 'liver' is empty." in capsys.readouterr().err


def test_batch_missing_project(batch, tmp_path, capsys):
    assert batch.main(["--project", str(tmp_path / "nothing")]) == 2
    assert "no project.json" in capsys.readouterr().err


def test_batch_passes_network_options(batch, tmp_path, capsys, monkeypatch):
    from DiffusionSegModuleLib.corelogic import CoreLogic

    commands = []
    original = CoreLogic._start
    monkeypatch.setattr(CoreLogic, "_start", lambda self, record, args: commands.append(args) or original(self, record, args))
    make_images(tmp_path / "incoming", 2)
    code = batch.main(["--project", str(tmp_path / "p"), "--backend-module", "fake_diffusionseg", "--create",
                       "--names", "a", "--add-images", str(tmp_path / "incoming"), "--pretrain",
                       "--pretrain-iterations", "2", "--preset", "small", "--image-size", "16", "16", "8",
                       "--batch-size", "2", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    [args] = commands
    joined = " ".join(args)
    assert "--preset small" in joined and "--image-size 16 16 8" in joined and "--batch-size 2" in joined
    assert "--device cpu" in joined


def installed_layout(root):
    """The files as the extension installs them: qt-scripted-modules/ holds DiffusionSeg.py,
    DiffusionSegModuleLib/, the backend DiffusionSegLib/ and Scripts/DiffusionSegBatch.py."""
    import shutil

    ignore = shutil.ignore_patterns("__pycache__")
    modules = root / "qt-scripted-modules"
    modules.mkdir(parents=True)
    shutil.copyfile(REPO / "DiffusionSeg" / "DiffusionSeg.py", modules / "DiffusionSeg.py")
    shutil.copytree(REPO / "DiffusionSeg" / "DiffusionSegModuleLib", modules / "DiffusionSegModuleLib", ignore=ignore)
    shutil.copytree(REPO / "DiffusionSeg" / "Scripts", modules / "Scripts", ignore=ignore)
    shutil.copytree(REPO / "DiffusionSegLib", modules / "DiffusionSegLib", ignore=ignore)
    return modules / "Scripts" / "DiffusionSegBatch.py"


@pytest.mark.parametrize("layout", ["source", "installed"])
def test_batch_script_finds_its_libraries(slicer_core, tmp_path, layout):
    """Run as a script (as Slicer --python-script does) with no PYTHONPATH help: it must find
    DiffusionSegModuleLib and DiffusionSegLib from its own location in both layouts."""
    import os
    import subprocess

    script = REPO / "DiffusionSeg" / "Scripts" / "DiffusionSegBatch.py"
    if layout == "installed":
        script = installed_layout(tmp_path / "install")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DIFFUSIONSEG_BACKEND_DIR")}
    result = subprocess.run([sys.executable, str(script), "--", "--project", str(tmp_path / "nothing")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "no project.json" in result.stderr
    if layout == "installed":
        # The installed copy, not the source tree, provides both libraries.
        probe = (f"import runpy; runpy.run_path({str(script)!r}); import DiffusionSegLib, DiffusionSegModuleLib;"
                 " print(DiffusionSegLib.__file__); print(DiffusionSegModuleLib.__file__)")
        found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=120)
        lines = found.stdout.split()
        assert len(lines) == 2 and all(str(tmp_path / "install") in line for line in lines), found.stderr


def labeled_project(batch, tmp_path, capsys, monkeypatch):
    """A 3D project with a pretrained model (fake backend) and one labeled case; returns (project folder,
    the list each started backend command is appended to)."""
    import shutil

    from DiffusionSegModuleLib.corelogic import CoreLogic

    commands = []
    original = CoreLogic._start
    monkeypatch.setattr(CoreLogic, "_start", lambda self, record, args: commands.append(args) or original(self, record, args))
    make_images(tmp_path / "incoming", 3)
    project_dir = tmp_path / "p"
    assert batch.main(["--project", str(project_dir), "--backend-module", "fake_diffusionseg", "--create", "--names",
                       "organ", "--add-images", str(tmp_path / "incoming"), "--pretrain", "--pretrain-iterations",
                       "2"]) == 0, capsys.readouterr().err
    shutil.copyfile(project_dir / "images" / "img0.nrrd", project_dir / "labels" / "img0.seg.nrrd")  # counts as labeled
    return project_dir, commands


def test_batch_selftrain_runs_the_selftrain_command(batch, tmp_path, capsys, monkeypatch):
    """--finetune --selftrain starts `diffusionseg selftrain` with fine-tuning's options; --no-selftrain `finetune`;
    neither, the project's default."""
    project_dir, commands = labeled_project(batch, tmp_path, capsys, monkeypatch)
    labels = project_dir / "labels"
    # Neither flag: the project's default (a 3D project: fine-tuning without self-training; see selftrainByDefault).
    for flags, command, title in ((["--selftrain"], "selftrain", "Self-training"),
                                  (["--no-selftrain"], "finetune", "Fine-tuning"), ([], "finetune", "Fine-tuning")):
        commands.clear()
        code = batch.main(["--project", str(project_dir), "--backend-module", "fake_diffusionseg", "--finetune",
                           "--finetune-iterations", "2", *flags])
        printed = capsys.readouterr()
        assert code == 0, printed.err
        assert f"{title}: step 2 / 2" in printed.out
        [args] = commands
        assert args[0] == command and args[args.index("--labels") + 1] == str(labels)
        assert args[args.index("--iterations") + 1] == "2"


def test_batch_plain_network_trains_from_scratch(batch, tmp_path, capsys, monkeypatch):
    """--finetune --network plain (MONAI's BasicUNet, never pretrained) does not pick up the project's
    pretrained model, and does not self-train unless asked (that default was validated on the DDPM U-Net);
    --network pretrained passes it; neither flag, the project's default (vocabulary.default_finetune_network)."""
    project_dir, commands = labeled_project(batch, tmp_path, capsys, monkeypatch)
    for flags, plain in ((["--network", "plain"], True), (["--network", "pretrained"], False), ([], False)):
        commands.clear()
        assert batch.main(["--project", str(project_dir), "--backend-module", "fake_diffusionseg", "--finetune",
                           "--finetune-iterations", "2", *flags]) == 0, capsys.readouterr().err
        [args] = commands
        assert args[0] == "finetune"
        assert ("--pretrained" not in args) == plain
        if plain:
            assert args[args.index("--init") + 1] == "random" and args[args.index("--preset") + 1] == "plain"
    capsys.readouterr()
    with pytest.raises(SystemExit):   # the size of a diffusion U-Net only: plain is a --network
        batch.parse_args(["--project", str(project_dir), "--preset", "plain"])
