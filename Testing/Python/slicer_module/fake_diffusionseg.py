"""A stand-in for ``python -m DiffusionSegLib`` that speaks the documented protocol.

It is a real child process for the process-handling and Logic tests: it emits the JSON
events of docs/CLI.md on stdout, logs on stderr, and ends the way the real command does
(0 done, 2 user error with an ``error: ...`` line, 1 traceback, 130 on SIGTERM, and with
``--stop-on-stdin-close`` at a line ``cancel`` or the end of stdin, through the real
backend's watcher, DiffusionSegLib.cli.parentwatch). It
writes what the real command would leave behind: a model folder with config.json for
pretrain and finetune, and prediction files in each image's geometry for predict.

    python -m fake_diffusionseg [--stop-on-stdin-close] pretrain|finetune --out DIR [--iterations N]
        [--delay S] [--fail-user | --crash] [--spawn-grandchild PIDFILE] [--ignore-sigterm] [--ignore-stdin]
        [--pidfile FILE]
    python -m fake_diffusionseg predict --model DIR --images FILE_OR_DIR --out DIR
    python -m fake_diffusionseg suggest --model DIR --images DIR --labels DIR --count K --out DIR/
    python -m fake_diffusionseg curve --pretrained DIR --images DIR --labels DIR --out DIR

FAKE_DIFFUSIONSEG_FAIL=user|crash in the environment makes any command fail.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def write_loss_curve(out, step):
    """loss.png as the real backend draws it (its own renderer), so the panel has a curve to show."""
    import numpy as np

    from DiffusionSegLib.training.curves import render_png

    steps = np.arange(1, step + 1, dtype=float)
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(out, "loss.png").write_bytes(render_png(steps, 1.0 / steps))


def emit(**event):
    print(json.dumps(event), flush=True)


def write_model(out, kind, args):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # A config.json of the real format (one of the kept examples), with this run's dims and names.
    from DiffusionSegLib import modelconfig

    example = {"pretrained": "pretrained_ddpm", "segmentation": "segmentation_full", "landmarks": "landmarks_full"}[kind]
    data = Path(__file__).resolve().parents[2] / "Data" / "model_configs" / f"{example}.json"
    config = modelconfig.from_dict(json.loads(data.read_text()))
    config.dims = config.preprocessing.dims = config.network.spatial_dims = args.dims
    if kind == "segmentation":
        config.task.classes = args.classes.split(",") if args.classes else []
    if kind == "landmarks":
        config.task.landmarks = args.landmark_names
    modelconfig.save(config, out)
    (out / "model.safetensors").write_bytes(b"fake")


def predict(args):
    """Threshold each image at its mean: label 1 above; landmarks at the image's centre."""
    import numpy as np
    import SimpleITK as sitk

    config = json.loads((Path(args.model) / "config.json").read_text())
    images = Path(args.images)
    files = sorted(p for p in images.iterdir() if p.is_file()) if images.is_dir() else [images]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    emit(event="start", stage="predict", total=len(files), out=str(out))
    confidence = {}
    for step, path in enumerate(files, start=1):
        case = path.name.split(".")[0]
        image = sitk.ReadImage(str(path))
        if config["kind"] == "segmentation":
            array = sitk.GetArrayFromImage(image)
            labels = sitk.GetImageFromArray((array > array.mean()).astype(np.uint8))
            labels.CopyInformation(image)
            target = out / f"{case}.seg.nrrd"
            sitk.WriteImage(labels, str(target), True)
        else:
            from DiffusionSegLib.landmarks import Landmarks, write_mrk_json

            centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])
            names = config["task"]["landmarks"]
            points = np.array([list(centre) + [0.0] * (3 - len(centre))] * len(names))
            target = write_mrk_json(Landmarks(names, points), out / f"{case}.mrk.json")
            (out / f"{case}.csv").write_text("name,x,y,z\n")
            emit(event="output", stage="predict", case=case, path=str(out / f"{case}.csv"))
        # Like the real backend's confidence.json: here the later a case in the folder, the less sure.
        confidence[case] = {"confidence": round(1.0 - 0.1 * step, 3)}
        (out / "confidence.json").write_text(json.dumps(confidence))
        emit(event="output", stage="predict", case=case, path=str(target), confidence=confidence[case]["confidence"])
        emit(event="progress", stage="predict", step=step, total=len(files))
    emit(event="done", stage="predict", out=str(out), seconds=0.1)
    return 0


def suggest(args):
    """Rank the unlabeled images (those without a file of their name in --labels/--landmarks),
    last first, and write FOLDER/suggestions.json and .csv as the real command does."""
    images = sorted(p for p in Path(args.images).iterdir() if p.is_file())
    annotations = Path(args.labels or args.landmarks)
    labeled = {p.name.split(".")[0] for p in annotations.iterdir()} if annotations.is_dir() else set()
    pool = [p for p in reversed(images) if p.name.split(".")[0] not in labeled][: args.count]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    emit(event="start", stage="suggest", total=len(images), out=str(out))
    rows = [{"case": p.name.split(".")[0], "rank": rank, "score": 1.0 / rank, "image": str(p),
             "reason": f"represents {len(images) - rank} similar images"} for rank, p in enumerate(pool, start=1)]
    (out / "suggestions.json").write_text(json.dumps({"format": "diffusionseg-suggestions", "version": 1,
                                                       "suggestions": rows}))
    (out / "suggestions.csv").write_text("case,rank,score,reason,image\n" + "".join(
        f"{r['case']},{r['rank']},{r['score']},{r['reason']},{r['image']}\n" for r in rows))
    emit(event="output", stage="suggest", path=str(out / "suggestions.json"))
    emit(event="done", stage="suggest", out=str(out), count=len(rows), seconds=0.1)
    return 0


def curve(args):
    """curve.json, curve.png and curve.csv as the real command writes them, with a fixed sentence."""
    import numpy as np

    from DiffusionSegLib.training.curves import render_png

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    emit(event="start", stage="curve", total=2)
    sentence = "One more annotation: +1.2 Dice points expected (+0.4 to +2.0); five more: +3.1 (+1.5 to +4.4)."
    (out / "curve.json").write_text(json.dumps({"format": "diffusionseg-curve", "version": 1, "sentence": sentence,
                                                "predictions": [{"label": "one_more", "added": 1, "estimate": 0.86,
                                                                 "lower": 0.84, "upper": 0.87, "gain": 0.012}]}))
    n = np.arange(1.0, 4.0)
    (out / "curve.png").write_bytes(render_png(n, 0.9 - 0.2 / n))
    (out / "curve.csv").write_text("n,fold,score,mean_dice,mean_iou,train,test,seconds\n")
    emit(event="output", stage="curve", path=str(out / "curve.json"))
    emit(event="done", stage="curve", out=str(out), sentence=sentence, seconds=0.1)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("--out", default="")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--fail-user", action="store_true")
    parser.add_argument("--crash", action="store_true")
    parser.add_argument("--spawn-grandchild", default="")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--stop-on-stdin-close", action="store_true")
    parser.add_argument("--ignore-stdin", action="store_true", help="no stdin watcher even if asked (tests)")
    parser.add_argument("--pidfile", default="", help="write this process's id here once running")
    parser.add_argument("--task", default="segmentation")
    parser.add_argument("--classes", default="")
    parser.add_argument("--landmarks", default="")
    parser.add_argument("--model", default="")
    parser.add_argument("--images", default="")
    parser.add_argument("--dims", type=int, default=3)
    parser.add_argument("--labels", default="")
    parser.add_argument("--count", type=int, default=1)
    args, _unknown = parser.parse_known_args(argv)
    args.landmark_names = []
    if args.landmarks:
        names = []
        for path in sorted(Path(args.landmarks).glob("*.mrk.json")):
            for point in json.loads(path.read_text())["markups"][0]["controlPoints"]:
                if point["label"] not in names:
                    names.append(point["label"])
        args.landmark_names = names
    failure = os.environ.get("FAKE_DIFFUSIONSEG_FAIL", "")
    args.fail_user |= failure == "user"
    args.crash |= failure == "crash"
    stage = args.command

    def on_term(signum, frame):
        print("interrupted: the last complete checkpoint (if any) is kept.", file=sys.stderr, flush=True)
        sys.exit(130)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if args.ignore_sigterm else on_term)
    if args.stop_on_stdin_close and not args.ignore_stdin:
        from DiffusionSegLib.cli import parentwatch

        parentwatch.watch_stdin()
    if args.pidfile:
        Path(args.pidfile).write_text(str(os.getpid()))
    if args.spawn_grandchild:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        with open(args.spawn_grandchild, "w") as f:
            f.write(str(child.pid))
    if stage == "predict" and not (args.fail_user or args.crash):
        return predict(args)
    if stage == "suggest" and not (args.fail_user or args.crash):
        return suggest(args)
    if stage == "curve" and not (args.fail_user or args.crash):
        return curve(args)

    kind = "pretrained" if stage == "pretrain" else args.task
    emit(event="start", stage=stage, total=args.iterations, out=args.out)
    print("this is a log line on stdout that is not JSON", flush=True)
    print(f"starting {stage}", file=sys.stderr, flush=True)
    for step in range(1, args.iterations + 1):
        time.sleep(args.delay)
        emit(event="progress", stage=stage, step=step, total=args.iterations,
             loss=1.0 / step, eta_s=args.delay * (args.iterations - step))
        if step % 2 == 0:
            if args.out:
                write_model(args.out, kind, args)
                write_loss_curve(args.out, step)
            emit(event="checkpoint", stage=stage, step=step, path=args.out)
        if args.fail_user and step == 2:
            emit(event="error", stage=stage, message="labels/case_001.seg.nrrd: a JSON message")
            print("Traceback-free user error follows", file=sys.stderr)
            print("error: labels/case_001.seg.nrrd: segment 'liver' is empty. Fix: paint it or delete the file.",
                  file=sys.stderr, flush=True)
            return 2
        if args.crash and step == 2:
            raise RuntimeError("simulated crash in the training loop")
    if args.out:
        write_model(args.out, kind, args)
    emit(event="done", stage=stage, out=args.out, seconds=0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
