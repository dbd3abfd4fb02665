"""The backend's progress events: parsing one stdout line, and the running summary.

``diffusionseg ... --progress json`` writes one JSON object per line on stdout
(docs/CLI.md): ``start``, ``progress``, ``checkpoint``, ``output``, ``done`` and
``error`` events. Anything else on stdout is kept as a log line rather than dropped,
so a stray print in the backend shows up in Slicer's log instead of vanishing.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .i18n import _

KNOWN_EVENTS = ("start", "progress", "checkpoint", "output", "done", "error")

STAGE_TITLES = {
    "pretrain": "Pretraining",
    "finetune": "Fine-tuning",
    "selftrain": "Self-training",
    "predict": "Predicting",
    "sample": "Sampling",
    "evaluate": "Evaluating",
    "demo": "Demo",
}


@dataclasses.dataclass
class Event:
    """One line from the background process.

    kind: a backend event name (``progress``, ``done``...) or ``log`` for any other line.
    data: the decoded JSON object (for ``log``: ``{"stream": ..., "text": ...}``).
    """

    kind: str
    data: dict[str, Any]


def parse_line(line: str, stream: str = "stdout") -> Event | None:
    """Turn one line of the child's output into an Event (None for a blank line)."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    if stream == "stdout" and text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("event"), str):
            return Event(data["event"], data)
    return Event("log", {"stream": stream, "text": text})


@dataclasses.dataclass
class ProgressState:
    """What the panel shows about the current run, updated event by event."""

    stage: str = ""
    step: int = 0
    total: int = 0
    loss: float | None = None
    eta_s: float | None = None
    out: str = ""
    last_checkpoint: str = ""
    outputs: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    error_event_message: str = ""
    done: bool = False

    def update(self, event: Event) -> None:
        """Fold one event into the summary; unknown events are ignored."""
        d = event.data
        if event.kind in ("start", "progress", "checkpoint", "done", "output", "error"):
            self.stage = str(d.get("stage", self.stage) or self.stage)
        if event.kind == "start":
            self.total = int(d.get("total") or 0)
            self.out = str(d.get("out") or self.out)
        elif event.kind == "progress":
            self.step = int(d.get("step") or 0)
            self.total = int(d.get("total") or self.total)
            self.loss = _float_or_none(d.get("loss"))
            self.eta_s = _float_or_none(d.get("eta_s"))
        elif event.kind == "checkpoint":
            self.last_checkpoint = str(d.get("path") or "")
        elif event.kind == "output":
            self.outputs.append((str(d.get("case") or ""), str(d.get("path") or "")))
        elif event.kind == "done":
            self.done = True
            self.out = str(d.get("out") or self.out)
            if self.total:
                self.step = self.total
            self.eta_s = 0.0
        elif event.kind == "error":
            self.error_event_message = str(d.get("message") or "")

    @property
    def fraction(self) -> float:
        """Progress in [0, 1] (0 while the total is unknown)."""
        if self.total <= 0:
            return 0.0
        return max(0.0, min(1.0, self.step / self.total))

    def summary(self) -> str:
        """One line for the status label, e.g. 'Fine-tuning: step 120 / 2000, loss 0.3100, 1 min 35 s left'."""
        title = _(STAGE_TITLES.get(self.stage, self.stage or "Starting"))
        parts = []
        if self.total:
            parts.append(_("step {step} / {total}").format(step=self.step, total=self.total))
        if self.loss is not None:
            parts.append(_("loss {loss:.4f}").format(loss=self.loss))
        if self.eta_s is not None and not self.done:
            parts.append(_("{time} left").format(time=format_duration(self.eta_s)))
        return f"{title}: " + ", ".join(parts) if parts else title


def format_duration(seconds: float) -> str:
    """Human-readable remaining time: '45 s', '1 min 35 s', '2 h 05 min'."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return _("{s} s").format(s=s)
    if s < 3600:
        return _("{m} min {s} s").format(m=s // 60, s=s % 60)
    return _("{h} h {m:02d} min").format(h=s // 3600, m=(s % 3600) // 60)


def _float_or_none(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
