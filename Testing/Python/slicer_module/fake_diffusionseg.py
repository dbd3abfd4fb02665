"""A stand-in for ``python -m DiffusionSegLib`` that speaks the documented protocol.

It is a real child process for the process-handling tests: it emits the JSON events of
docs/CLI.md on stdout, logs on stderr, and ends the way the real command does
(0 done, 2 user error with an ``error: ...`` line, 1 traceback, 130 on SIGTERM).

    python -m fake_diffusionseg finetune --out DIR --iterations N [--delay S]
        [--fail-user | --crash] [--spawn-grandchild PIDFILE] [--ignore-sigterm]
    python -m fake_diffusionseg predict --images FILE_OR_DIR --out DIR --write-seg REF
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time


def emit(**event):
    print(json.dumps(event), flush=True)


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
    args, _unknown = parser.parse_known_args(argv)
    stage = args.command

    def on_term(signum, frame):
        print("received signal, stopping", file=sys.stderr, flush=True)
        sys.exit(130)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if args.ignore_sigterm else on_term)
    if args.spawn_grandchild:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        with open(args.spawn_grandchild, "w") as f:
            f.write(str(child.pid))

    emit(event="start", stage=stage, total=args.iterations, out=args.out)
    print("this is a log line on stdout that is not JSON", flush=True)
    print(f"starting {stage}", file=sys.stderr, flush=True)
    for step in range(1, args.iterations + 1):
        time.sleep(args.delay)
        emit(event="progress", stage=stage, step=step, total=args.iterations,
             loss=1.0 / step, eta_s=args.delay * (args.iterations - step))
        if step % 2 == 0:
            emit(event="checkpoint", stage=stage, step=step, path=args.out)
        if args.fail_user and step == 2:
            emit(event="error", stage=stage, message="labels/case_001.seg.nrrd: a JSON message")
            print("Traceback-free user error follows", file=sys.stderr)
            print("error: labels/case_001.seg.nrrd: segment 'liver' is empty. Fix: paint it or delete the file.",
                  file=sys.stderr, flush=True)
            return 2
        if args.crash and step == 2:
            raise RuntimeError("simulated crash in the training loop")
    emit(event="done", stage=stage, out=args.out, seconds=0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
