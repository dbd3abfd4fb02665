"""The loss curve of a run, as CSV and as a PNG plot a person can open."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..atomic import write_atomic


class LossLog:
    """Collects ``(step, loss, lr, seconds)`` rows and writes ``loss.csv`` and ``loss.png``.

    A resumed run passes the rows of the run it continues (see :meth:`read`), so the
    curve covers the whole training.
    """

    def __init__(self, rows: list[tuple[int, float, float, float]] | None = None):
        self.rows = list(rows or [])

    def add(self, step: int, loss: float, lr: float, seconds: float) -> None:
        self.rows.append((step, float(loss), float(lr), float(seconds)))

    @staticmethod
    def read(path: str | Path) -> list[tuple[int, float, float, float]]:
        path = Path(path)
        if not path.is_file():
            return []
        with open(path, newline="") as f:
            return [(int(r["step"]), float(r["loss"]), float(r["lr"]), float(r["seconds"])) for r in csv.DictReader(f)]

    def write(self, csv_path: str | Path, png_path: str | Path, title: str) -> None:
        def write_csv(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["step", "loss", "lr", "seconds"])
                w.writerows(self.rows)

        write_atomic(csv_path, write_csv)
        if self.rows:
            write_atomic(png_path, lambda tmp: self._plot(tmp, title))

    def _plot(self, path: Path, title: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = np.array([r[0] for r in self.rows])
        loss = np.array([r[1] for r in self.rows])
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        ax.plot(steps, loss, color="0.75", lw=0.8, label="loss")
        window = max(1, len(loss) // 20)
        if window > 1:
            smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], smooth, color="C0", lw=1.5, label=f"mean of {window}")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, format="png")
        plt.close(fig)
