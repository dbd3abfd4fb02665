"""loss.csv and loss.png, with and without matplotlib (3D Slicer does not bundle it)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import SimpleITK as sitk

from DiffusionSegLib.training import curves
from DiffusionSegLib.training.curves import LossLog, render_png

BLUE, GREY = curves._BLUE, curves._GREY


def _rows(n: int = 200):
    rng = np.random.default_rng(0)
    return [(i + 1, float(np.exp(-i / 60) + 0.05 * rng.random()), 1e-3, 0.1 * i) for i in range(n)]


def _read_png(path) -> np.ndarray:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image)  # (H, W, 3)


def _has(pixels: np.ndarray, color) -> int:
    return int(np.all(pixels == np.array(color, np.uint8), axis=-1).sum())


@pytest.fixture
def no_matplotlib(monkeypatch):
    """``import matplotlib`` raises ImportError, as in Slicer's Python."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_without_matplotlib_the_csv_and_a_png_are_written(tmp_path, no_matplotlib):
    with pytest.raises(ImportError):
        import matplotlib  # noqa: F401
    log = LossLog(_rows())
    log.write(tmp_path / "loss.csv", tmp_path / "loss.png", title="finetune loss")
    assert LossLog.read(tmp_path / "loss.csv") == log.rows
    pixels = _read_png(tmp_path / "loss.png")
    assert pixels.shape == (*curves._SIZE, 3)
    assert _has(pixels, GREY) > 200 and _has(pixels, BLUE) > 200  # the loss and its running mean
    top, right, bottom, left = curves._MARGIN
    assert _has(pixels[top], curves._FRAME) > pixels.shape[1] // 2  # the axes box
    assert _has(pixels[:, left], curves._FRAME) > pixels.shape[0] // 2


def test_the_own_renderer_puts_a_falling_loss_from_top_left_to_bottom_right():
    steps = np.arange(1, 101, dtype=float)
    pixels = sitk.GetArrayFromImage(_decode(render_png(steps, 10.0 ** (-steps / 25))))
    rows, cols = np.nonzero(np.all(pixels == np.array(GREY, np.uint8), axis=-1))
    first, last = rows[cols == cols.min()].mean(), rows[cols == cols.max()].mean()
    assert first < last  # row 0 is the top
    assert np.corrcoef(cols, rows)[0, 1] > 0.99  # a straight line on the log axis


def _decode(png: bytes) -> sitk.Image:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "curve.png"
        path.write_bytes(png)
        return sitk.ReadImage(str(path))


@pytest.mark.parametrize("loss", [[0.5], [0.0, -1.0, 2.0], [float("nan"), 1.0, float("inf"), 0.5], []])
def test_the_own_renderer_draws_any_loss(loss):
    png = render_png(np.arange(len(loss), dtype=float), np.array(loss, dtype=float))
    assert sitk.GetArrayFromImage(_decode(png)).shape == (*curves._SIZE, 3)


def test_with_matplotlib_it_draws_the_png(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(curves, "render_png", lambda *a: pytest.fail("matplotlib is there and should draw"))
    LossLog(_rows(50)).write(tmp_path / "loss.csv", tmp_path / "loss.png", title="pretrain loss")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_broken_matplotlib_does_not_fail_the_run(tmp_path, monkeypatch, caplog):
    broken = types.ModuleType("matplotlib")

    def use(backend):
        raise RuntimeError("no usable font cache")

    broken.use = use
    monkeypatch.setitem(sys.modules, "matplotlib", broken)
    LossLog(_rows(10)).write(tmp_path / "loss.csv", tmp_path / "loss.png", title="t")
    assert _read_png(tmp_path / "loss.png").shape == (*curves._SIZE, 3)
    assert "no usable font cache" in caplog.text


def test_no_rows_no_png(tmp_path, no_matplotlib):
    LossLog().write(tmp_path / "loss.csv", tmp_path / "loss.png", title="t")
    assert (tmp_path / "loss.csv").read_text().strip() == "step,loss,lr,seconds"
    assert not (tmp_path / "loss.png").exists()
