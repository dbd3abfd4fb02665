"""How unsure a fine-tuned model is about one image: disagreement over test-time augmentations.

Passes (on the grid ``predict`` uses): the image itself; the image shifted by +S and by -S
pixels along every axis (edge pixels repeated), the output shifted back; the image with
Gaussian noise of standard deviation SIGMA (network units, the image spans [-1, 1]; one fixed
seed). Not flips: radiographs and most anatomy are lateralised (left and right lung are
different classes), so a flipped image asks the model a question it was never trained on.

- segmentation: on the pixels some pass labels as a structure (the union of the passes'
  foreground; the S-pixel border is left out), ``disagreement`` = the fraction where the
  passes' labels differ, ``entropy`` = the mean entropy of the passes' mean probabilities
  (divided by log C, so in [0, 1]); ``uncertainty = (disagreement + entropy) / 2``. A model
  that finds no structure in any pass gets uncertainty 1.
- landmarks: per pass the heatmap decoding of ``predict`` (peak mass = confidence);
  ``peak_mass`` = the mean over passes and landmarks, ``spread_px`` = the mean over
  landmarks of the RMS distance of the passes' positions from their mean, in grid pixels;
  ``uncertainty = ((1 - peak_mass) + min(1, spread_px / (2 sigma_px))) / 2``.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
import torch

from ..landmarks.heatmaps import decode_heatmaps, sigma_mm_to_px
from ..predict.engine import LoadedModel, network_output

SHIFT = 2
SIGMA = 0.1
NOISE_SEED = 1
TTA_SETTINGS = {"shift_px": SHIFT, "noise_sigma": SIGMA, "noise_seed": NOISE_SEED, "passes": 4}


def shift(array: np.ndarray, k: int) -> np.ndarray:
    """``(C, *S)`` moved by ``k`` pixels along every spatial axis: ``out[i] = array[i - k]``, edges repeated."""
    s = abs(k)
    padded = np.pad(array, [(0, 0)] + [(s, s)] * (array.ndim - 1), mode="edge")
    index = (slice(None),) + tuple(slice(s - k, s - k + n) for n in array.shape[1:])
    return padded[index]


def tta_outputs(model: LoadedModel, x: np.ndarray, identity: np.ndarray | None = None) -> list[np.ndarray]:
    """The network's ``(C, *S)`` outputs for the passes of the module doc, all in the image's frame."""
    outputs = [network_output(model, x) if identity is None else identity]
    for k in (SHIFT, -SHIFT):
        outputs.append(shift(network_output(model, shift(x, k)), -k))
    noise = np.random.default_rng(NOISE_SEED).standard_normal(x.shape[1:]).astype(np.float32)
    noisy = x.copy()
    noisy[0] += SIGMA * noise
    outputs.append(network_output(model, noisy))
    return outputs


def segmentation_uncertainty(outputs: list[np.ndarray]) -> dict:
    inner = (slice(None),) + (slice(SHIFT, -SHIFT),) * (outputs[0].ndim - 1)
    probs = np.stack([torch.from_numpy(o[inner]).float().softmax(0).numpy() for o in outputs])  # (P, C, *S)
    labels = probs.argmax(1)                                                                      # (P, *S)
    union = (labels > 0).any(0)
    if not union.any():
        return {"uncertainty": 1.0, "disagreement": 1.0, "entropy": 1.0, "foreground": 0.0}
    disagree = (labels != labels[:1]).any(0)
    mean = probs.mean(0)
    entropy = -(mean * np.log(np.clip(mean, 1e-8, 1))).sum(0) / math.log(mean.shape[0])
    d, e = float(disagree[union].mean()), float(entropy[union].mean())
    return {"uncertainty": round((d + e) / 2, 5), "disagreement": round(d, 5), "entropy": round(e, 5),
            "foreground": round(float(union.mean()), 5)}


def landmark_uncertainty(outputs: list[np.ndarray], sigma_px: tuple[float, ...]) -> dict:
    radius = [max(1, math.ceil(2.5 * s)) for s in sigma_px]
    coords, conf = decode_heatmaps(torch.from_numpy(np.stack(outputs)).float(), radius=radius)  # (P, L, d), (P, L)
    coords, conf = coords.numpy(), conf.numpy()
    spread = float(np.sqrt(((coords - coords.mean(0)) ** 2).sum(-1).mean(0)).mean())
    mass = float(conf.mean())
    u = ((1 - mass) + min(1.0, spread / (2 * float(np.mean(sigma_px))))) / 2
    return {"uncertainty": round(u, 5), "peak_mass": round(mass, 5), "spread_px": round(spread, 4)}


def measure_uncertainty(model: LoadedModel, image: sitk.Image, identity: np.ndarray | None = None) -> dict:
    """The measures of the module doc for one image (``identity``: the plain pass, if already run)."""
    prep = model.preprocessing
    grid = prep.resample(image)
    outputs = tta_outputs(model, prep.network_input(grid), identity)
    if model.kind == "segmentation":
        return segmentation_uncertainty(outputs)
    return landmark_uncertainty(outputs, sigma_mm_to_px(model.config.task.sigma_mm, grid.GetSpacing()))
