"""Scoring slices with a trained regressor, and ``diffusionseg bpr predict``."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..atomic import write_json_atomic
from ..errors import UserError
from ..imageio import Normalisation, case_id, list_images, read_image, write_image
from ..training.checkpoint import load_model_config, load_weights
from ..training.device import choose_device
from ..training.guard import CommandGuard
from ..training.progress import Reporter
from .model import BprNet, BprNetConfig
from .options import BprPredictOptions  # noqa: F401  (stated there, torch-free; imported from here too)
from .slices import AxialSlices, axial_slices, orientation_of, per_slice_volume

JSON_SUFFIX = ".bpr.json"
VOLUME_SUFFIX = "_bpr.nrrd"


@dataclass
class BprModel:
    """A loaded regressor with what its input needs.

    Attributes:
        score_range: (min, max) score over the training volumes' slices.
    """

    net: BprNet
    normalisation: Normalisation
    slice_size: list[int]
    score_range: tuple[float, float]
    device: torch.device

    def normalised(self, scores: np.ndarray) -> np.ndarray:
        """Scores mapped linearly so that the training range becomes [-1, 1] (beyond it, beyond +-1)."""
        low, high = self.score_range
        return (2.0 * (np.asarray(scores, np.float64) - low) / max(high - low, 1e-6) - 1.0).astype(np.float32)


def load_bpr(model_dir: str | Path, device: str | torch.device = "cpu") -> BprModel:
    """Load a ``diffusionseg bpr train`` folder (config.json + model.safetensors; never pickle).

    Raises:
        UserError: not a model folder, not a BPR model, or damaged weights.
    """
    config = load_model_config(model_dir)
    if config.kind != "bpr":
        raise UserError(f"this is a '{config.kind}' model, not a body-part regression model.",
                        path=model_dir, fix="pass a folder written by `diffusionseg bpr train`.")
    net_cfg = BprNetConfig.from_dict(config.network.to_dict())
    device = torch.device(device) if isinstance(device, str) else device
    net = BprNet(net_cfg)
    try:
        net.load_state_dict(load_weights(model_dir))
    except RuntimeError as exc:
        raise UserError("the weights do not match config.json.", path=model_dir,
                        fix="restore the model folder, or train it again.") from exc
    net.to(device).eval()
    prep = config.preprocessing
    low, high = config.score_range
    return BprModel(net, Normalisation.from_dict(prep.normalisation.to_dict()), list(prep.slice_size),
                    (float(low), float(high)), device)


@functools.lru_cache(maxsize=4)
def _cached(model_dir: str, stamp: int) -> BprModel:
    # `stamp` (the weights' mtime) is only part of the cache key: a rewritten model is loaded again.
    return load_bpr(model_dir)


def cached_model(model_dir: str | Path) -> BprModel:
    """:func:`load_bpr` on the CPU, loaded once per folder (the coordinate map calls this for every image)."""
    path = Path(model_dir).resolve()
    weights = path / "model.safetensors"
    stamp = weights.stat().st_mtime_ns if weights.is_file() else 0
    return _cached(str(path), stamp)


@torch.no_grad()
def predict_slices(net: BprNet, pixels: np.ndarray, device: torch.device, chunk: int = 128) -> np.ndarray:
    """``(D,)`` float64 scores of ``pixels`` ``(D, 1, h, w)``."""
    was_training = net.training
    net.eval()
    out = [net(torch.from_numpy(np.ascontiguousarray(pixels[i:i + chunk], np.float32)).to(device)).float().cpu()
           for i in range(0, len(pixels), chunk)]
    net.train(was_training)
    return torch.cat(out).double().numpy()


def _as_model(model: str | Path | BprModel) -> BprModel:
    return model if isinstance(model, BprModel) else cached_model(model)


def score_slices(model: str | Path | BprModel, image: sitk.Image, path=None) -> tuple[AxialSlices, np.ndarray]:
    """The axial slices of ``image`` (lowest first) and their raw scores ``(D,)``."""
    model = _as_model(model)
    slices = axial_slices(image, model.slice_size, model.normalisation, path=path)
    return slices, predict_slices(model.net, slices.pixels, model.device)


def slice_scores(model_dir: str | Path | BprModel, image: sitk.Image) -> np.ndarray:
    """``(D,)`` raw score of each axial slice of a 3D ``image``, in the image's array order (axis 0).

    Raises:
        UserError: the image is not 3D, or its array slices are not axial (then use
            :func:`score_slices`, which reorients).
    """
    slices, scores = score_slices(model_dir, image)
    if slices.original_slice is None:
        raise UserError(f"this volume is stored as {orientation_of(image)} slices, not axial ones.",
                        fix="use score_slices(), or reorient the volume to axial slices.")
    result = np.empty_like(scores)
    result[slices.original_slice] = scores
    return result


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, ties given their mean rank."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two ``(n,)`` arrays; NaN when either is constant or n < 2."""
    ra, rb = _ranks(a), _ranks(b)
    if len(ra) < 2 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def height_report(z_mm: np.ndarray, scores: np.ndarray) -> dict:
    """Does the score rise with height? ``monotone``: strictly increasing from the lowest slice up."""
    order = np.argsort(z_mm)
    steps = np.diff(np.asarray(scores)[order])
    return {"monotone": bool(np.all(steps > 0)), "inversions": int(np.sum(steps <= 0)),
            "spearman": spearman(z_mm, scores)}


def _outputs(out: Path, case: str, volume: bool) -> list[Path]:
    return [out / f"{case}{JSON_SUFFIX}"] + ([out / f"{case}{VOLUME_SUFFIX}"] if volume else [])


def predict_bpr(opts: BprPredictOptions) -> dict:
    """Write ``<case>.bpr.json`` (and with ``volume`` ``<case>_bpr.nrrd``) for each image in ``opts.images``.

    The JSON lists every axial slice from the lowest up: its index in the input array
    (None when the volume is not stored as axial slices), LPS z in mm, raw score and
    normalised score; then whether the scores rise monotonically with z and their
    Spearman correlation with z. Existing outputs are never overwritten.

    Returns:
        summary: ``{"cases": {case: {"monotone", "spearman", ...}}, "out": ...}``.
    """
    out = Path(opts.out)
    reporter = Reporter("bpr-predict", opts.progress)
    with CommandGuard(reporter, out):  # one run per output folder, as predict
        paths = list_images(opts.images)
        clashes = [p for path in paths for p in _outputs(out, case_id(path), opts.volume) if p.exists()]
        if clashes:
            raise UserError(f"{len(clashes)} output file(s) exist already, e.g. {clashes[0].name}.", path=out,
                            fix="choose a new --out, or remove the old results first.")
        model = load_bpr(opts.model, choose_device(opts.device))
        reporter.start(total=len(paths), out=str(out.resolve()))
        cases = {}
        for step, path in enumerate(paths, 1):
            image = read_image(path)
            slices, scores = score_slices(model, image, path=path)
            normalised = model.normalised(scores)
            index = slices.original_slice
            report = height_report(slices.z_mm, scores)
            record = {
                "case": case_id(path), "image": str(path), "model": str(opts.model),
                "orientation": orientation_of(image), **report,
                "score_min": float(scores.min()), "score_max": float(scores.max()),
                "training_score_range": list(model.score_range),
                "slices": [{"index": None if index is None else int(index[k]), "z_mm": round(float(slices.z_mm[k]), 4),
                            "score": float(scores[k]), "normalised": float(normalised[k])}
                           for k in range(len(scores))],
            }
            json_path, *volume_path = _outputs(out, case_id(path), opts.volume)
            write_json_atomic(json_path, record)
            reporter.emit("output", case=case_id(path), path=str(json_path.resolve()))
            if volume_path:
                write_image(per_slice_volume(scores, slices, image), volume_path[0])
                reporter.emit("output", case=case_id(path), path=str(volume_path[0].resolve()))
            cases[case_id(path)] = report
            reporter.progress(step, len(paths))
        summary = {"out": str(out), "cases": cases}
        reporter.done(**summary)
        return summary
