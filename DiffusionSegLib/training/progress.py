"""Progress events: JSON lines on stdout for the Slicer module, a bar for people, events.jsonl always.

The protocol is in docs/CLI.md. Only rank 0 of a distributed run reports.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..vocabulary import PROGRESS_MODES


def new_run_dir(runs: Path, stage: str) -> Path:
    """A fresh ``runs/<stage>-<date>-<time>[-k]`` folder name (two runs in one second get two)."""
    base = runs / time.strftime(f"{stage}-%Y%m%d-%H%M%S")
    candidate, k = base, 1
    while candidate.exists():
        k += 1
        candidate = base.with_name(f"{base.name}-{k}")
    return candidate


class Reporter:
    """Emit ``start``, ``progress``, ``checkpoint``, ``output``, ``done`` and ``error`` events.

    Args:
        stage: 'pretrain', 'finetune', 'predict', ...
        mode: 'json' (stdout lines), 'bar' (tqdm on stderr) or 'none'.
        events_path: where every event is appended as a JSON line (the run's log);
            None until the run folder exists (see :meth:`attach`).
        min_interval_s: progress events closer together than this are not written
            (the final step always is), so a fast loop cannot flood the pipe.
        enabled: False on ranks other than 0.
    """

    def __init__(self, stage: str, mode: str = "bar", events_path: str | Path | None = None,
                 min_interval_s: float = 0.5, enabled: bool = True):
        if mode not in PROGRESS_MODES:
            raise ValueError(f"mode must be one of {PROGRESS_MODES}, not {mode!r}")
        self.stage = stage
        self.mode = mode
        self.enabled = enabled
        self.min_interval_s = min_interval_s
        self.events_path = Path(events_path) if events_path else None
        self._buffer: list[dict] = []
        self._last_emit = 0.0
        self._t0 = time.monotonic()
        self._first_step: tuple[int, float] | None = None
        self._bar = None

    def attach(self, events_path: str | Path) -> None:
        """Start writing events.jsonl (earlier events are written first)."""
        self.events_path = Path(events_path)
        self.events_path.parent.mkdir(parents=True, exist_ok=True)
        for event in self._buffer:
            self._append(event)
        self._buffer.clear()

    def _append(self, event: dict) -> None:
        if not self.events_path.parent.is_dir():
            return  # a failed run's folder was removed (nothing half-written is kept), its log with it
        with open(self.events_path, "a") as f:
            f.write(json.dumps(event) + "\n")

    def emit(self, event: str, **fields) -> None:
        if not self.enabled:
            return
        record = {"event": event, "stage": self.stage, **fields}
        if self.mode == "json":
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()
        if self.events_path is None:
            self._buffer.append(record)
        else:
            self._append(record)

    def start(self, total: int, **fields) -> None:
        self._t0 = time.monotonic()
        self.emit("start", total=total, **fields)
        if self.enabled and self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=self.stage, file=sys.stderr, dynamic_ncols=True)

    def progress(self, step: int, total: int, **fields) -> None:
        """Report that ``step`` of ``total`` is done; the ETA comes from the rate since the first report."""
        now = time.monotonic()
        if self._first_step is None:
            self._first_step = (step, now)
        first, t_first = self._first_step
        rate = (step - first) / (now - t_first) if now > t_first and step > first else None
        eta = round((total - step) / rate, 1) if rate else None
        if self._bar is not None:
            self._bar.n = step
            self._bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in fields.items()},
                                  refresh=False)
            self._bar.refresh()
        if step < total and now - self._last_emit < self.min_interval_s:
            return
        self._last_emit = now
        self.emit("progress", step=step, total=total, eta_s=eta, **fields)

    def log(self, message: str) -> None:
        """A human-readable line on stderr (never on stdout: that belongs to the JSON events)."""
        if self.enabled and self.mode != "none":
            if self._bar is not None:
                self._bar.write(message, file=sys.stderr)
            else:
                print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def done(self, **fields) -> None:
        self.close()
        fields.setdefault("seconds", round(time.monotonic() - self._t0, 1))
        self.emit("done", **fields)

    def error(self, message: str) -> None:
        self.close()
        self.emit("error", message=message)
