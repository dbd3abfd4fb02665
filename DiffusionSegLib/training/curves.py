"""The loss curve of a run: ``loss.csv`` (the record) and ``loss.png`` (a picture of it).

``loss.png`` is drawn with matplotlib when it can be imported (labels, legend, title);
without it (3D Slicer does not bundle matplotlib) a small numpy renderer draws the same
curves with no text: an axes box, grid lines at powers of ten, the loss in grey and its
running mean in blue, written as an RGB PNG with zlib. A missing or broken plotting
library therefore never fails a run, and the Slicer panel always has an image to show.
"""

from __future__ import annotations

import csv
import logging
import struct
import zlib
from pathlib import Path

import numpy as np

from ..atomic import write_atomic

log = logging.getLogger(__name__)

_SIZE = (350, 600)  # (height, width) in pixels, as matplotlib's 6 x 3.5 in at 100 dpi
_MARGIN = (12, 16, 24, 40)  # top, right, bottom, left
_GREY, _BLUE, _FRAME, _GRID = (191, 191, 191), (31, 119, 180), (40, 40, 40), (232, 232, 232)


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
        steps = np.array([r[0] for r in self.rows], dtype=float)
        loss = np.array([r[1] for r in self.rows], dtype=float)
        try:
            _plot_matplotlib(path, steps, loss, title)
            return
        except ImportError:
            pass
        except Exception as exc:  # a broken matplotlib install (fonts, backend) must not stop training
            log.warning("matplotlib could not draw the loss curve (%s); drawing it without matplotlib.", exc)
        Path(path).write_bytes(render_png(steps, loss))


def _window(n: int) -> int:
    return max(1, n // 20)


def _running_mean(loss: np.ndarray, window: int) -> np.ndarray:
    return np.convolve(loss, np.ones(window) / window, mode="valid")


def _plot_matplotlib(path: Path, steps: np.ndarray, loss: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(_SIZE[1] / 100, _SIZE[0] / 100), dpi=100)
    try:
        ax.plot(steps, loss, color="0.75", lw=0.8, label="loss")
        window = _window(len(loss))
        if window > 1:
            ax.plot(steps[window - 1:], _running_mean(loss, window), color="C0", lw=1.5, label=f"mean of {window}")
        if np.all(loss > 0):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def render_png(steps: np.ndarray, loss: np.ndarray) -> bytes:
    """The loss curve as PNG bytes, with numpy and zlib only (no text).

    ``steps`` and ``loss`` are 1-D of the same length; non-finite points are left out.
    The y axis is logarithmic when every loss is positive, linear otherwise.
    """
    h, w = _SIZE
    top, right, bottom, left = _MARGIN
    image = np.full((h, w, 3), 255, np.uint8)
    steps, loss = np.asarray(steps, float), np.asarray(loss, float)
    keep = np.isfinite(steps) & np.isfinite(loss)
    steps, loss = steps[keep], loss[keep]
    log_y = loss.size > 0 and bool(np.all(loss > 0))
    y_values = np.log10(loss) if log_y else loss

    to_x = _axis(steps, left, w - 1 - right)
    to_y = _axis(y_values, h - 1 - bottom, top)  # row 0 is the top
    if log_y:  # grid lines at the powers of ten inside the range
        decades = np.arange(np.floor(y_values.min()), np.ceil(y_values.max()) + 1)
        for row in np.round(to_y(decades)).astype(int):
            if top < row < h - 1 - bottom:
                image[row, left + 1:w - 1 - right] = _GRID
    if steps.size:
        x, y = to_x(steps), to_y(y_values)
        _polyline(image, x, y, _GREY, thick=False)
        window = _window(len(loss))
        if window > 1:
            mean = _running_mean(loss, window)
            _polyline(image, x[window - 1:], to_y(np.log10(mean) if log_y else mean), _BLUE, thick=True)
    image[top, left:w - right] = image[h - 1 - bottom, left:w - right] = _FRAME
    image[top:h - bottom, left] = image[top:h - bottom, w - 1 - right] = _FRAME
    return _png(image)


def _axis(values: np.ndarray, lo_px: int, hi_px: int):
    """The map from data values to pixel positions, with 5 % room at both ends of the data's range."""
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    pad = (hi - lo) * 0.05 or max(abs(lo) * 0.05, 0.5)
    lo, hi = lo - pad, hi + pad
    return lambda v: lo_px + (np.asarray(v, float) - lo) / (hi - lo) * (hi_px - lo_px)


def _polyline(image: np.ndarray, x: np.ndarray, y: np.ndarray, color: tuple[int, int, int], thick: bool) -> None:
    """Draw the line through the points ``(x[i], y[i])`` (pixel coordinates) into ``image`` (H, W, 3)."""
    if x.size == 1:
        xs, ys = x, y
    else:  # sample every segment at least once per pixel it spans
        n = np.ceil(np.maximum(np.abs(np.diff(x)), np.abs(np.diff(y)))).astype(int) + 1
        segment = np.repeat(np.arange(n.size), n)
        t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(np.maximum(n - 1, 1), n)
        xs = x[segment] + t * (x[segment + 1] - x[segment])
        ys = y[segment] + t * (y[segment + 1] - y[segment])
    cols, rows = np.round(xs).astype(int), np.round(ys).astype(int)
    offsets = [(0, 0), (0, 1), (1, 0), (1, 1)] if thick else [(0, 0)]
    for dr, dc in offsets:
        image[np.clip(rows + dr, 0, image.shape[0] - 1), np.clip(cols + dc, 0, image.shape[1] - 1)] = color


def _png(image: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 array as an 8-bit RGB PNG."""
    h, w, _ = image.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), image.reshape(h, w * 3)], axis=1).tobytes()  # filter 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, truecolour, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
