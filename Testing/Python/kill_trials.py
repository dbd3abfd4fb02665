"""kill -9 trials: interrupt pretraining and fine-tuning at random moments, resume, and count.

Each trial starts ``diffusionseg pretrain`` (or ``finetune``) on a tiny model as its own
process, kills it with SIGKILL at a random moment of its training (which lands in steps,
in checkpoint writes, in loss-curve writes...), checks that the folder's last checkpoint
still loads, runs the same command with ``--resume`` (in this process: one torch start-up
less per trial), and records:

- ``resumed``: the resumed run ended with exit code 0 and all its steps;
- ``steps_lost``: steps done before the kill minus the step the resumed run started
  from (must be at most one checkpoint interval); a run killed after its last checkpoint
  (while exiting) has nothing to resume and lost nothing;
- ``identical``: the final weights equal those of an uninterrupted run (exact resume).

    .venv/bin/python Testing/Python/kill_trials.py --trials 20 [--seed 0] [--out results.json]

The child reports every step (the progress events' 0.5 s throttle is set to 0 in the
child only), so the step reached before the kill is known. test_crash_safety.py runs a
few trials in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bad_inputs import good_folder  # noqa: E402

# The child: the real CLI, with every progress step reported.
CHILD = ("import sys; from DiffusionSegLib.training import progress; "
         "progress.Reporter.__init__.__defaults__ = ('bar', None, 0.0, True); "
         "from DiffusionSegLib.cli.main import main; sys.exit(main(sys.argv[1:]))")

ITERATIONS = 40
EVERY = 5


def command(kind: str, data: Path, out: Path, pretrained: Path | None) -> list[str]:
    common = ["--iterations", str(ITERATIONS), "--checkpoint-every", str(EVERY), "--batch-size", "2",
              "--device", "cpu", "--progress", "json", "--workers", "0"]
    if kind == "pretrain":
        return ["pretrain", "--images", str(data / "images"), "--out", str(out), "--image-size", "32", "32", *common]
    return ["finetune", "--task", "segmentation", "--pretrained", str(pretrained), "--images", str(data / "images"),
            "--labels", str(data / "labels"), "--classes", "disc,square", "--out", str(out), *common]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def run_child(argv: list[str], kill_after: float | None = None, kill_at_step: int | None = None) -> dict:
    """Run the CLI; SIGKILL it ``kill_after`` seconds after its 'start' event or, with ``kill_at_step``,
    ``kill_after`` seconds after it reports that step (a checkpoint is written right after its step's report)."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    events: list[dict] = []
    started = threading.Event()

    def read():
        for line in proc.stdout:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
            event = events[-1]
            if kill_at_step is None and event.get("event") == "start":
                started.set()
            if kill_at_step is not None and event.get("event") == "progress" and event["step"] >= kill_at_step:
                started.set()
        started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    killed = False
    if kill_after is not None or kill_at_step is not None:
        started.wait(timeout=300)
        kill_after = kill_after or 0.0
        time.sleep(kill_after)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed = True
    stderr = proc.stderr.read()
    code = proc.wait()
    reader.join(timeout=10)
    steps = [e["step"] for e in events if e.get("event") == "progress"]
    start = next((e for e in events if e.get("event") == "start"), {})
    return {"code": code, "killed": killed, "events": events, "stderr": stderr[-2000:],
            "last_step": max(steps, default=0), "start_step": start.get("start_step", 0),
            "seconds": start and next((e.get("seconds") for e in events if e.get("event") == "done"), None)}


def resume_in_process(argv: list[str]) -> dict:
    """Run the CLI in this process (no second start-up of torch); the same fields as :func:`run_child`."""
    import contextlib
    import io

    from DiffusionSegLib.cli.main import main as cli

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli(argv)
    events = [json.loads(line) for line in stdout.getvalue().splitlines() if line.startswith("{")]
    start = next((e for e in events if e.get("event") == "start"), {})
    return {"code": code, "events": events, "stderr": stderr.getvalue()[-2000:],
            "start_step": start.get("start_step", 0)}


def _last_step_on_disk(out: Path) -> int:
    """The last step any run in ``out`` logged to its events.jsonl (what the killed child reached)."""
    last = 0
    for path in out.glob("runs/*/events.jsonl"):
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line cut by the kill
            if event.get("event") == "progress":
                last = max(last, int(event["step"]))
    return last


def _checkpoint_loads(out: Path) -> tuple[bool | None, int | None, str]:
    """(the training state and model load, the state's step, why not); None when there is no checkpoint yet."""
    from DiffusionSegLib.errors import UserError
    from DiffusionSegLib.training.checkpoint import STATE_NAME, load_config, load_training_state, load_weights

    if not (out / STATE_NAME).exists():
        return None, None, ""
    try:
        state = load_training_state(out)
        load_config(out)
        load_weights(out)
        return True, state["step"], ""
    except (UserError, Exception) as exc:  # noqa: BLE001 (any failure to load is the finding)
        return False, None, f"{type(exc).__name__}: {exc}"


def _same_weights(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa)


def setup(root: Path) -> dict:
    """Data, the pretrained model fine-tuning starts from, and one uninterrupted run of each kind."""
    data = good_folder(root / "data", n=4)
    pretrained = root / "pretrained"
    ref = {}
    for kind in ("pretrain", "finetune"):
        out = pretrained if kind == "pretrain" else root / "reference-finetune"
        result = run_child(command(kind, data, out, pretrained))
        if result["code"] != 0:
            raise RuntimeError(f"reference {kind} failed: {result['stderr']}")
        ref[kind] = {"out": out, "seconds": result["seconds"] or 10.0}
    return {"data": data, "pretrained": pretrained, "reference": ref}


def trial(kind: str, base: dict, folder: Path, rng: random.Random, kill_after: float | None = None) -> dict:
    """One kill -9 and resume; see the module doc for what is recorded."""
    out = folder / "model"
    argv = command(kind, base["data"], out, base["pretrained"])
    # A random moment: after a random step's report, plus up to ~3 steps' time (so inside steps,
    # checkpoint writes and loss-curve writes alike).
    step_seconds = base["reference"][kind]["seconds"] / ITERATIONS
    target = rng.randrange(1, ITERATIONS)
    delay = kill_after if kill_after is not None else rng.uniform(0.0, 3 * step_seconds)
    first = run_child(argv, kill_after=delay, kill_at_step=target)
    reached = max(first["last_step"], _last_step_on_disk(out)) if out.exists() else first["last_step"]
    loadable, state_step, why = _checkpoint_loads(out)
    folder_exists = out.exists()
    second = resume_in_process(argv + ["--resume"] if folder_exists else argv)
    done = next((e for e in second["events"] if e.get("event") == "done"), {})
    # Killed after its last checkpoint (while exiting): nothing to resume, nothing lost.
    finished = state_step == ITERATIONS and "already finished" in second["stderr"]
    resumed = (second["code"] == 0 and done.get("steps") == ITERATIONS) or finished
    start = ITERATIONS if finished else second["start_step"] or 0
    return {
        "kind": kind, "kill_after_step": target, "kill_delay_s": round(delay, 3), "killed": first["killed"],
        "finished_before_kill": finished,
        "first_exit": first["code"], "step_at_kill": reached, "checkpoint_step": state_step,
        "checkpoint_loadable": loadable, "load_error": why, "resumed_from": start, "resumed": resumed,
        "steps_lost": max(0, reached - start), "identical": resumed and _same_weights(out, base["reference"][kind]["out"]),
        "resume_stderr": "" if resumed else second["stderr"][-600:],
    }


def summarise(trials: list[dict]) -> dict:
    summary = {}
    for kind in ("pretrain", "finetune"):
        mine = [t for t in trials if t["kind"] == kind]
        if not mine:
            continue
        summary[kind] = {
            "trials": len(mine), "killed_mid_run": sum(t["killed"] for t in mine),
            "resumed": sum(t["resumed"] for t in mine),
            "finished_before_kill": sum(t["finished_before_kill"] for t in mine),
            "checkpoint_unloadable": sum(t["checkpoint_loadable"] is False for t in mine),
            "max_steps_lost": max(t["steps_lost"] for t in mine),
            "identical_to_uninterrupted": sum(t["identical"] for t in mine),
            "checkpoint_every": EVERY, "iterations": ITERATIONS,
        }
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials of each command")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results JSON here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("DIFFUSIONSEG_CACHE_DIR", str(Path(tmp) / "cache"))
        base = setup(Path(tmp))
        trials = []
        for i in range(args.trials):
            for kind in ("pretrain", "finetune"):
                result = trial(kind, base, Path(tmp) / f"{kind}-{i:02d}", rng)
                trials.append(result)
                print(json.dumps({k: result[k] for k in ("kind", "kill_after_step", "killed", "step_at_kill",
                                                          "checkpoint_step", "resumed_from", "resumed",
                                                          "steps_lost", "identical")}), flush=True)
    summary = {"summary": summarise(trials), "seed": args.seed, "seconds": round(time.monotonic() - t0, 1),
               "trials": trials}
    print(json.dumps(summary["summary"], indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    ok = all(t["killed"] and t["resumed"] and t["steps_lost"] <= EVERY and t["checkpoint_loadable"] is not False for t in trials)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
