"""Landmark heatmaps: Gaussian targets, the training losses, decoding to sub-pixel points.

Conventions:
- A landmark position here is a **continuous index in numpy order** (2D ``(row, col)``,
  3D ``(slice, row, col)``; integers are pixel centres), as
  :func:`DiffusionSegLib.landmarks.geometry.physical_to_index` returns it.
- Arrays: one heatmap per landmark, ``(L, H, W)`` / ``(L, D, H, W)``; tensors add the
  batch, ``(N, L, *S)`` with ``S`` the spatial shape.
- The network predicts one *logit map* per landmark. Its spatial softmax (a softmax over
  all pixels of the map) is the predicted distribution of the landmark's position; the
  training target is the Gaussian heatmap normalised to sum 1 (:func:`spatial_softmax_ce`,
  the cross-entropy loss of the DDPM landmark paper). A network trained this way learns
  ``logit = log(gaussian) + const`` near the landmark, a paraboloid, which is why
  :func:`decode_heatmaps` refines the peak with a quadratic fit.
- Sigma is configured in millimetres (the same anatomy at any resolution) and turned into
  pixels per axis with :func:`sigma_mm_to_px`.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import torch

DECODE_METHODS = ("quadratic", "softargmax")


def sigma_mm_to_px(sigma_mm: float | Sequence[float], spacing_xyz: Sequence[float]) -> tuple[float, ...]:
    """Gaussian sigma in millimetres -> pixels per axis, in numpy order.

    Args:
        sigma_mm: one sigma for all axes, or one per axis in ITK order ``(x, y[, z])``.
        spacing_xyz: the image spacing in mm, ITK order ``(x, y[, z])``.
    Returns:
        sigma in pixels per axis in numpy order (2D ``(row, col)``, 3D ``(slice, row, col)``).
    """
    spacing = np.asarray(spacing_xyz, dtype=np.float64)
    sigma = np.broadcast_to(np.asarray(sigma_mm, dtype=np.float64), spacing.shape)
    if (sigma <= 0).any() or (spacing <= 0).any():
        raise ValueError(f"sigma ({sigma_mm}) and spacing ({spacing_xyz}) must be positive")
    return tuple(float(s) for s in (sigma / spacing)[::-1])


def encode_heatmaps(indices, shape: Sequence[int], sigma_px: float | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian heatmap targets, peak value 1 (not normalised).

    ``h[l, i] = exp(-0.5 * sum_a ((i_a - indices[l, a]) / sigma_a) ** 2)``, evaluated at
    the pixel centres. The Gaussian is separable, so it is built from one 1D profile per
    axis (cheap in 3D).

    Args:
        indices: (L, dims) continuous index in numpy order; NaN rows = missing landmarks.
        shape: the spatial shape, numpy order, ``(H, W)`` or ``(D, H, W)``.
        sigma_px: sigma in pixels, one for all axes or one per axis in numpy order.
    Returns:
        heatmaps: (L, *shape) float32.
        mask: (L,) bool, True where the landmark is taught. False (and an all-zero map)
            for a missing landmark and for one whose centre lies outside the array (e.g.
            cut off by a crop): a truncated Gaussian would teach the border, not absence.
    """
    shape = tuple(int(s) for s in shape)
    dims = len(shape)
    idx = np.asarray(indices, dtype=np.float64).reshape(-1, dims)
    sigma = np.broadcast_to(np.asarray(sigma_px, dtype=np.float64), (dims,))
    if (sigma <= 0).any():
        raise ValueError(f"sigma_px must be positive, got {sigma_px}")
    size = np.asarray(shape, dtype=np.float64)
    mask = ~np.isnan(idx).any(axis=1)
    mask &= np.where(mask[:, None], (idx >= -0.5) & (idx <= size - 0.5), False).all(axis=1)
    heatmaps = np.zeros((len(idx),) + shape, dtype=np.float32)
    for l in np.flatnonzero(mask):
        h = np.ones((1,) * dims, dtype=np.float64)
        for a in range(dims):
            profile = np.exp(-0.5 * ((np.arange(shape[a]) - idx[l, a]) / sigma[a]) ** 2)
            h = h * profile.reshape([-1 if b == a else 1 for b in range(dims)])
        heatmaps[l] = h
    return heatmaps, mask


def heatmaps_as_logits(heatmaps: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """Turn non-negative heatmaps (a target, or the output of a network trained with
    :func:`heatmap_mse`) into logits for :func:`decode_heatmaps`: ``log(max(h, floor))``.

    The log of a Gaussian is a paraboloid, which the quadratic refinement fits exactly;
    the floor keeps the log finite where an MSE network outputs zero or less.
    """
    return torch.log(heatmaps.clamp_min(floor))


# ----------------------------------------------------------------------------- decoding


def decode_heatmaps(logits: torch.Tensor, radius: int | Sequence[int] = 3,
                    method: str = "quadratic") -> tuple[torch.Tensor, torch.Tensor]:
    """Landmark positions and confidences from logit maps.

    The integer arg-max of each map is refined to sub-pixel precision by one of:

    - ``"quadratic"`` (default): a paraboloid (with cross terms) fitted by least squares
      to the log-probabilities in the window, each pixel weighted by its probability;
      the vertex is the estimate. Exact when the logits are a Gaussian's log (what the
      cross-entropy loss trains towards), whatever the sigma or the window, and the
      weighted fit averages noise over the window. Falls back to the soft-argmax where
      the fit has no maximum inside the window.
    - ``"softargmax"``: the probability-weighted mean position in the window. The window
      cuts the Gaussian's tails unevenly, which pulls the estimate towards the centre of
      the peak pixel unless the window is wide (``radius`` >= about 3 sigma).

    Testing/Python/test_heatmaps.py compares the two (the quadratic fit is exact on
    clean maps and at least as accurate on noisy ones).

    Args:
        logits: (N, L, *S) logit maps, 2D ``S = (H, W)`` or 3D ``S = (D, H, W)``. For a
            network trained with :func:`heatmap_mse`, pass :func:`heatmaps_as_logits` of
            its output.
        radius: the window around the peak, in pixels, one or per axis (numpy order);
            window = ``(2 * radius + 1)`` pixels per axis, clipped at the image border.
            A good choice is ``ceil(2 * sigma_px)`` to ``ceil(3 * sigma_px)``.
        method: ``"quadratic"`` or ``"softargmax"``.
    Returns:
        coords: (N, L, dims) float32 continuous index in numpy order.
        confidence: (N, L) float32 in [0, 1]: the spatial-softmax probability mass inside
            the window around the peak. A sharp, single peak of the trained width gives
            about ``erf(radius / (sigma * sqrt 2)) ** dims`` (0.95 ** dims at 2 sigma);
            a flat or multi-peaked map, i.e. a landmark the network cannot find, gives
            little.
    """
    if method not in DECODE_METHODS:
        raise ValueError(f"method must be one of {DECODE_METHODS}, got {method!r}")
    if logits.dim() not in (4, 5):
        raise ValueError(f"logits must be (N, L, *S) with 2 or 3 spatial dims, got {tuple(logits.shape)}")
    n, l_, *spatial = logits.shape
    dims = len(spatial)
    radius = tuple(int(r) for r in np.broadcast_to(np.asarray(radius), (dims,)))
    dev = logits.device
    flat = logits.detach().reshape(n, l_, -1).float()
    log_p = flat.log_softmax(-1)
    size = torch.tensor(spatial, device=dev)
    strides = torch.tensor([math.prod(spatial[a + 1:]) for a in range(dims)], device=dev)
    peak = (flat.argmax(-1)[..., None] // strides) % size  # (N, L, dims) integer index

    # The window: every offset within the radius, (K, dims).
    offsets = torch.tensor(list(itertools.product(*[range(-r, r + 1) for r in radius])), device=dev)
    pos = peak[..., None, :] + offsets  # (N, L, K, dims)
    inside = ((pos >= 0) & (pos < size)).all(-1)
    flat_pos = (pos.clamp(min=0) % size * strides).sum(-1)  # clamped: gathered, then zeroed
    prob = torch.where(inside, log_p.gather(-1, flat_pos.reshape(n, l_, -1)).exp(), torch.zeros((), device=dev))
    confidence = prob.sum(-1).clamp(0.0, 1.0)

    weights = prob / prob.sum(-1, keepdim=True).clamp_min(1e-30)
    coords = (weights[..., None] * pos.float()).sum(-2)  # the soft-argmax
    if method == "quadratic":
        window_log_p = log_p.gather(-1, flat_pos.reshape(n, l_, -1)).reshape(prob.shape)
        shift, ok = _fit_paraboloid(offsets, window_log_p, weights, radius)
        # Where the fit has no maximum inside the window (a flat or odd map), keep the
        # soft-argmax: still a sensible position, and the confidence says it is poor.
        coords = torch.where(ok[..., None], peak.float() + shift, coords)
    return coords, confidence


def _fit_paraboloid(offsets: torch.Tensor, values: torch.Tensor, weights: torch.Tensor,
                    radius: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted least-squares paraboloid through the window, and its vertex.

    Fits ``v(x) = c + g.x + x^T H x / 2`` (x = offset from the peak pixel, cross terms
    included so a tilted blob is fitted too) to the log-probabilities ``values``,
    weighting each pixel by its probability: the peak decides, the far field (where a
    network trained with cross-entropy is only "low", not parabolic) barely counts, and
    noise is averaged over the window. Exact for the log of any Gaussian.

    Args:
        offsets: (K, dims) integer offsets of the window pixels from the peak.
        values: (N, L, K) log-probabilities at those pixels.
        weights: (N, L, K) non-negative weights, 0 outside the image.
        radius: the window radius per axis.
    Returns:
        shift: (N, L, dims) vertex offset from the peak, numpy order.
        ok: (N, L) bool, True where H is negative definite and the vertex in the window.
    """
    dims = offsets.shape[1]
    # Small per-landmark systems: solved in float64 on the CPU (also where the device,
    # e.g. Apple MPS, has no float64).
    x = offsets.double().cpu()
    pairs = [(a, b) for a in range(dims) for b in range(a, dims)]
    design = torch.cat([torch.ones(len(x), 1, dtype=x.dtype), x,
                        torch.stack([x[:, a] * x[:, b] for a, b in pairs], 1)], 1)  # (K, P)
    w = weights.detach().double().cpu()
    v = torch.where(w > 0, values.detach().double().cpu(), torch.zeros((), dtype=x.dtype))
    wx = w[..., None] * design  # (N, L, K, P)
    normal = design.T @ wx  # (N, L, P, P)
    rhs = (wx * v[..., None]).sum(-2)
    ridge = 1e-10 * normal.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(1e-30)
    normal = normal + ridge[..., None, None] * torch.eye(design.shape[1], dtype=x.dtype)
    coef, info = torch.linalg.solve_ex(normal, rhs[..., None])
    coef = coef[..., 0]
    grad = coef[..., 1:1 + dims]
    hess = torch.zeros(coef.shape[:-1] + (dims, dims), dtype=x.dtype)
    for k, (a, b) in enumerate(pairs):
        c = coef[..., 1 + dims + k]
        if a == b:
            hess[..., a, a] = 2.0 * c
        else:
            hess[..., a, b] = hess[..., b, a] = c
    finite = torch.isfinite(coef).all(-1) & (info == 0)
    hess = torch.where(finite[..., None, None], hess, -torch.eye(dims, dtype=x.dtype))  # placeholder, rejected below
    grad = torch.where(finite[..., None], grad, torch.zeros((), dtype=x.dtype))
    shift, info2 = torch.linalg.solve_ex(hess, -grad[..., None])
    shift = shift[..., 0]
    limit = torch.tensor(radius, dtype=x.dtype)
    ok = (finite & (info2 == 0) & (torch.linalg.eigvalsh(hess)[..., -1] < 0)
          & (shift.abs() <= limit).all(-1) & torch.isfinite(shift).all(-1))
    shift = torch.where(ok[..., None], shift, torch.zeros((), dtype=x.dtype))
    return shift.float().to(weights.device), ok.to(weights.device)


# ----------------------------------------------------------------------------- losses


def _mask(mask, n: int, l_: int, device) -> torch.Tensor:
    m = torch.as_tensor(mask, dtype=torch.bool, device=device)
    return m.expand(n, l_) if m.dim() <= 2 else m


def spatial_softmax_ce(logits: torch.Tensor, targets: torch.Tensor, mask) -> torch.Tensor:
    """Cross-entropy between the normalised target heatmaps and the spatial softmax.

    ``loss[n, l] = -sum_i q[n, l, i] * log softmax_i(logits[n, l])`` with ``q`` the target
    heatmap divided by its sum (a distribution over pixels), averaged over the (n, l) with
    ``mask`` True. A landmark missing from a training file is masked out: it contributes
    neither loss nor gradient (it is not taught as "absent"). The minimum is the target's
    entropy, not 0 (KL divergence would differ by that constant; the gradient is the same).

    Args:
        logits: (N, L, *S) network output.
        targets: (N, L, *S) heatmaps from :func:`encode_heatmaps` (any positive scale).
        mask: (N, L) bool (or (L,), broadcast over the batch), True = landmark present.
    Returns:
        scalar tensor; 0 (still attached to the graph) when no landmark is present.
    """
    n, l_ = logits.shape[:2]
    log_p = logits.reshape(n, l_, -1).float().log_softmax(-1)
    t = targets.reshape(n, l_, -1).to(log_p)
    q = t / t.sum(-1, keepdim=True).clamp_min(1e-12)
    m = _mask(mask, n, l_, logits.device)
    if not bool(m.any()):
        return logits.sum() * 0.0
    # Selecting the present entries (rather than multiplying by the mask) leaves the
    # masked channels' gradient exactly zero, even where their log-probability is -inf.
    return -(q[m] * log_p[m]).sum(-1).mean()


def heatmap_mse(outputs: torch.Tensor, targets: torch.Tensor, mask, sigmoid: bool = False) -> torch.Tensor:
    """Mean squared error between output maps and heatmaps (peak 1), masked as in
    :func:`spatial_softmax_ce`.

    ``loss[n, l] = mean_i (f(outputs[n, l, i]) - targets[n, l, i]) ** 2`` averaged over
    the (n, l) with ``mask`` True, where ``f`` is the identity on raw outputs (default) or
    the logistic sigmoid with ``sigmoid=True`` (outputs then stay in 0..1). Decode the
    predictions with ``decode_heatmaps(heatmaps_as_logits(f(outputs)))``. Note that most
    pixels are background, so this loss is small even for a flat prediction; the
    cross-entropy is the method's default.

    Args:
        outputs: (N, L, *S) network output.
        targets: (N, L, *S) heatmaps from :func:`encode_heatmaps`.
        mask: (N, L) bool (or (L,)), True = landmark present.
    Returns:
        scalar tensor; 0 (attached to the graph) when no landmark is present.
    """
    n, l_ = outputs.shape[:2]
    out = outputs.reshape(n, l_, -1).float()
    if sigmoid:
        out = torch.sigmoid(out)
    m = _mask(mask, n, l_, outputs.device)
    if not bool(m.any()):
        return outputs.sum() * 0.0
    t = targets.reshape(n, l_, -1).to(out)
    return ((out[m] - t[m]) ** 2).mean()
