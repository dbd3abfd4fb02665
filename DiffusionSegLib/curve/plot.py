"""``curve.png``: the per-subset scores, the fitted curve, its band, and the predictions at N, N+1, N+5.

Drawn with matplotlib when it can be imported; otherwise (3D Slicer does not bundle it)
with the numpy PNG primitives of :mod:`DiffusionSegLib.training.curves` (no text): the
band in light blue, the curve in blue, each subset's score as a grey square, each size's
mean as a dark square, the predictions as orange bars with a dot, and a grey line at N.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_atomic
from ..training.curves import _FRAME, _MARGIN, _SIZE, _axis, _png, _polyline

log = logging.getLogger(__name__)

_BAND, _CURVE, _POINT, _MEAN, _MARK, _NOW = ((198, 219, 239), (31, 119, 180), (150, 150, 150), (40, 40, 40),
                                             (255, 127, 14), (200, 200, 200))


@dataclass
class CurvePicture:
    """Everything the plot shows, in the metric's own units."""

    n: np.ndarray              # (M,) subset size of each scored subset
    scores: np.ndarray         # (M,) its score
    grid: np.ndarray           # (G,) sizes the curve is drawn at
    curve: np.ndarray          # (G,) the fitted curve
    lower: np.ndarray          # (G,) band
    upper: np.ndarray
    marks: list[dict]          # {"n", "estimate", "lower", "upper", "label"}
    labeled: int               # N
    metric_label: str          # "mean Dice", "MRE (mm)"
    title: str


def write_plot(path: str | Path, picture: CurvePicture) -> None:
    """Write ``picture`` as a PNG at ``path`` (atomically)."""
    def draw(tmp: Path) -> None:
        try:
            _plot_matplotlib(tmp, picture)
            return
        except ImportError:
            pass
        except Exception as exc:  # a broken matplotlib (fonts, backend) must not lose the result
            log.warning("matplotlib could not draw the curve (%s); drawing it without matplotlib.", exc)
        tmp.write_bytes(render_curve_png(picture))

    write_atomic(path, draw)


def _plot_matplotlib(path: Path, p: CurvePicture) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(_SIZE[1] / 100, _SIZE[0] / 100), dpi=100)
    try:
        ax.fill_between(p.grid, p.lower, p.upper, color="C0", alpha=0.2, lw=0, label="80% band")
        ax.plot(p.grid, p.curve, color="C0", lw=1.5, label="fit")
        ax.scatter(p.n, p.scores, s=14, color="0.55", zorder=3, label="held-out score of a subset")
        sizes = np.unique(p.n)
        ax.scatter(sizes, [np.nanmean(p.scores[p.n == s]) for s in sizes], s=28, marker="s", color="0.15",
                   zorder=4, label="mean per size")
        ax.axvline(p.labeled, color="0.7", ls=":", lw=1)
        for m in p.marks:
            ax.errorbar([m["n"]], [m["estimate"]], yerr=[[m["estimate"] - m["lower"]], [m["upper"] - m["estimate"]]],
                        fmt="o", color="C1", capsize=3, zorder=5)
            ax.annotate(m["label"], (m["n"], m["upper"]), textcoords="offset points", xytext=(0, 4),
                        ha="center", fontsize=8, color="C1")
        ax.set_xlabel("labeled cases used for fine-tuning")
        ax.set_ylabel(p.metric_label)
        ax.set_title(p.title, fontsize=10)
        ax.margins(y=0.12)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def render_curve_png(p: CurvePicture) -> bytes:
    """The picture as PNG bytes with numpy and zlib only (no text)."""
    h, w = _SIZE
    top, right, bottom, left = _MARGIN
    image = np.full((h, w, 3), 255, np.uint8)
    ys = np.concatenate([p.scores, p.curve, p.lower, p.upper, [m[k] for m in p.marks for k in ("lower", "upper")]])
    ys = ys[np.isfinite(ys)]
    to_x = _axis(np.concatenate([p.grid, p.n, [m["n"] for m in p.marks]]), left + 2, w - 3 - right)
    to_y = _axis(ys, h - 3 - bottom, top + 2)  # row 0 is the top
    cols, lo_rows, hi_rows = to_x(p.grid), to_y(p.lower), to_y(p.upper)
    for c in range(int(np.ceil(cols.min())), int(np.floor(cols.max())) + 1):  # the band, column by column
        a, b = np.interp(c, cols, hi_rows), np.interp(c, cols, lo_rows)
        image[int(round(min(a, b))):int(round(max(a, b))) + 1, c] = _BAND
    col_n = int(round(float(to_x(p.labeled))))
    image[top + 1:h - 1 - bottom, col_n] = _NOW
    _polyline(image, cols, to_y(p.curve), _CURVE, thick=True)

    def square(x: float, y: float, color, r: int) -> None:
        row, col = int(round(y)), int(round(x))
        image[max(row - r, 0):row + r + 1, max(col - r, 0):col + r + 1] = color

    for n, s in zip(to_x(p.n), to_y(p.scores)):
        if np.isfinite(s):
            square(n, s, _POINT, 2)
    for size in np.unique(p.n):
        mean = np.nanmean(p.scores[p.n == size])
        if np.isfinite(mean):
            square(float(to_x(size)), float(to_y(mean)), _MEAN, 3)
    for m in p.marks:
        x = float(to_x(m["n"]))
        _polyline(image, np.array([x, x]), to_y([m["lower"], m["upper"]]), _MARK, thick=True)
        square(x, float(to_y(m["estimate"])), _MARK, 3)
    image[top, left:w - right] = image[h - 1 - bottom, left:w - right] = _FRAME
    image[top:h - bottom, left] = image[top:h - bottom, w - 1 - right] = _FRAME
    return _png(image)
