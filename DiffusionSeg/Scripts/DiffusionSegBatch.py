"""DiffusionSeg without the GUI: pretrain, fine-tune and predict on a project folder.

    Slicer --no-main-window --python-script <module dir>/Scripts/DiffusionSegBatch.py -- --project DIR
        [--create --task segmentation|landmarks --dims 2|3 --names a,b,c [--modality ct]]
        [--add-images FOLDER] [--pretrain] [--finetune] [--predict unlabeled|CASE ...] [--suggest K] [--curve]
        [--pretrain-iterations N] [--finetune-iterations N] [--mode full|probe|mlp] [--selftrain | --no-selftrain]
        [--pretrained DIR] [--model DIR] [--network pretrained|plain]
        [--preset tiny|small|base] [--image-size X Y [Z]] [--batch-size B] [--device auto|cpu|cuda|mps]

Steps run in that order, through the same Logic as the module panel (the background
``diffusionseg`` process, its progress events, its files). Progress goes to stdout, one
line per event. Exit code: 0 success, 2 a step failed (its message is printed), 130
interrupted. Outside Slicer (plain Python with slicer-core) the Qt-free core Logic is used.

The script lives in ``Scripts/`` below the module folder, both in the source tree
(``DiffusionSeg/Scripts/``) and in an installed extension (``qt-scripted-modules/Scripts/``,
a MODULE_PYTHON_RESOURCES entry), so that Slicer does not take it for a module at start-up.
The module folder (``DiffusionSeg.py``, ``DiffusionSegModuleLib/``) is the parent of ``Scripts/``;
``backend.ensure_importable`` finds ``DiffusionSegLib`` beside or above it.
"""

import argparse
import os
import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1]  # holds DiffusionSeg.py and DiffusionSegModuleLib/
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from DiffusionSegModuleLib import backend, projectfiles  # noqa: E402

backend.ensure_importable()
from DiffusionSegLib.errors import UserError  # noqa: E402
from DiffusionSegLib.nets.presets import PRETRAIN_PRESETS  # noqa: E402  (torch-free)
from DiffusionSegLib.vocabulary import (  # noqa: E402
    DEFAULT_FINETUNE_ITERATIONS, DEFAULT_PRETRAIN_ITERATIONS, FINETUNE_MODES, FINETUNE_NETWORKS, MODALITIES,
    TASKS, FinetuneMode, Modality)


def parse_args(argv):
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    """The options; choice lists come from DiffusionSegLib.vocabulary, like the CLI's and the panel's."""
    parser = argparse.ArgumentParser(prog="DiffusionSegBatch", description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True, type=Path, help="project folder")
    parser.add_argument("--create", action="store_true", help="create the project if it does not exist")
    parser.add_argument("--task", choices=TASKS, default=TASKS[0])
    parser.add_argument("--dims", type=int, choices=[2, 3], default=3)
    parser.add_argument("--names", default="", help="class or landmark names, comma-separated")
    parser.add_argument("--modality", choices=MODALITIES, default=Modality.OTHER.value)
    parser.add_argument("--add-images", type=Path, help="copy the images of this folder into the project")
    parser.add_argument("--pretrain", action="store_true")
    parser.add_argument("--pretrain-iterations", type=int, default=DEFAULT_PRETRAIN_ITERATIONS)
    parser.add_argument("--finetune", action="store_true")
    parser.add_argument("--finetune-iterations", type=int, default=DEFAULT_FINETUNE_ITERATIONS)
    parser.add_argument("--mode", choices=FINETUNE_MODES, default=FinetuneMode.FULL.value,
                        help="full: fine-tune the whole U-Net; probe/mlp: frozen pretrained U-Net and a trained head")
    parser.add_argument("--selftrain", action=argparse.BooleanOptionalAction, default=None,
                        help="--finetune also learns from the unlabeled cases (diffusionseg selftrain; about twice "
                             "as long; default: on for a 2D segmentation project with unlabeled cases and --mode "
                             "full, where it won on validation, else off)")
    parser.add_argument("--pretrained", type=Path, help="pretrained model (default: the project's newest)")
    parser.add_argument("--model", type=Path, help="task model for --predict (default: the project's newest)")
    parser.add_argument("--predict", nargs="+", metavar="CASE", help="'unlabeled', 'all', or case names")
    parser.add_argument("--curve", action="store_true",
                        help="estimate what one more annotation brings (runs/curve-*/curve.png, curve.json)")
    parser.add_argument("--suggest", type=int, metavar="K",
                        help="rank K unlabeled cases to annotate next (written to runs/suggest-*/suggestions.csv)")
    parser.add_argument("--network", choices=list(FINETUNE_NETWORKS),
                        help="what --finetune trains: the pretrained diffusion U-Net, or plain: MONAI's BasicUNet "
                             "from scratch (never pretrained); default: the project's (as the panel's)")
    parser.add_argument("--preset", choices=list(PRETRAIN_PRESETS),
                        help="diffusion U-Net size for a new network (default: the backend's, 2D small, 3D tiny)")
    parser.add_argument("--image-size", type=int, nargs="+", metavar="N",
                        help="network input size x y [z] for a new network (default: the project's, else the "
                             "backend's: in 2D 64 across the shorter side)")
    parser.add_argument("--batch-size", type=int, help="images per step (default: the backend's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backend-module", default="DiffusionSegLib", help=argparse.SUPPRESS)  # tests
    return parser


def make_logic(backend_module):
    """The module's Logic inside Slicer; the Qt-free core Logic elsewhere."""
    try:
        import slicer

        in_slicer = hasattr(slicer, "app") and slicer.app is not None
    except ImportError:
        in_slicer = False
    if in_slicer and backend_module == "DiffusionSegLib":
        import DiffusionSeg  # the module's DiffusionSeg.py, from MODULE_DIR (or already loaded by Slicer)

        return DiffusionSeg.DiffusionSegLogic()
    from DiffusionSegModuleLib.corelogic import CoreLogic
    from DiffusionSegModuleLib.nodeio import MRMLContext

    return CoreLogic(MRMLContext.create(), sys.executable, backend_dir=os.environ.get("DIFFUSIONSEG_BACKEND_DIR"),
                     backend_module=backend_module)


def run_step(logic, title, start):
    """Start one run, print its progress, and raise SystemExit(2) if it fails."""
    print(f"== {title}", flush=True)
    start()
    last = [""]

    def show(events):
        line = logic.progress.summary()
        if line != last[0]:
            print(line, flush=True)
            last[0] = line

    try:
        record = logic.wait(on_events=show)
    except KeyboardInterrupt:
        logic.cancel()
        record = logic.wait(timeout=60)
        print(record.result.message if record else "interrupted", file=sys.stderr)
        raise SystemExit(130)
    if not record.result.ok:
        print(f"error: {record.result.message}", file=sys.stderr)
        raise SystemExit(2)
    print(f"{title}: done ({record.out})", flush=True)
    return record


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logic = make_logic(args.backend_module)
    try:
        if args.create and not logic.isProject(args.project):
            logic.createProject(args.project, args.task, args.dims, args.names.split(","), args.modality)
        project = logic.openProject(args.project)
        if args.add_images:
            print(f"added {len(logic.addImagesFromFolder(project, args.add_images))} images")
        network = {"preset": args.preset, "image_size": args.image_size, "batch_size": args.batch_size}
        pretrained = args.pretrained
        if args.pretrain:
            pretrained = run_step(logic, "pretrain", lambda: logic.startPretrain(
                project, args.pretrain_iterations, args.device, **network)).out
        model = args.model
        if args.finetune:
            chosen = args.network or logic.networkByDefault(project)   # plain: startFinetune reads no pretrained model
            if pretrained is None:
                found = projectfiles.list_models(project, ["pretrained"])
                pretrained = found[0] if found else None
            selftrain = logic.selftrainByDefault(project, args.mode, chosen) if args.selftrain is None \
                else args.selftrain
            model = run_step(logic, "finetune", lambda: logic.startFinetune(
                project, pretrained, args.finetune_iterations, args.device, mode=args.mode, selftrain=selftrain,
                network=chosen, **network)).out
        if args.predict:
            if model is None:
                found = projectfiles.list_models(project, [project.task])
                if not found:
                    raise ValueError("no fine-tuned model in the project: run --finetune or pass --model")
                model = found[0]
            cases = {"unlabeled": None, "all": project.cases()}.get(args.predict[0], args.predict)
            run_step(logic, "predict", lambda: logic.startPredict(project, model, cases, args.device,
                                                                  load_results=False))
        if args.suggest:
            # The fine-tuned model once a case is labeled (its uncertainty counts), else the pretrained one.
            tuned = model or next(iter(projectfiles.list_models(project, [project.task])), None)
            chosen = tuned if tuned is not None and project.labeled_cases() else \
                pretrained or next(iter(projectfiles.list_models(project, ["pretrained"])), None)
            if chosen is None:
                raise ValueError("no model to suggest with: run --pretrain first or pass --pretrained")
            record = run_step(logic, "suggest", lambda: logic.startSuggest(project, chosen, args.suggest, args.device))
            for row in record.suggestions:
                print(f"{row['rank']}. {row['case']}: {row.get('reason', '')}")
        if args.curve:
            chosen = pretrained or next(iter(projectfiles.list_models(project, ["pretrained"])), None)
            if chosen is None:
                raise ValueError("no pretrained model for the learning curve: run --pretrain first or pass --pretrained")
            record = run_step(logic, "curve", lambda: logic.startCurve(project, chosen, args.device))
            print(record.curve["sentence"] if record.curve else "")
    except SystemExit as exc:
        return int(exc.code)
    except (UserError, ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:  # Slicer passes the separator through
        argv = argv[1:]
    code = main(argv)
    try:
        import slicer

        if getattr(slicer, "app", None) is not None:
            slicer.util.exit(code)
    except ImportError:
        pass
    sys.exit(code)
