"""Sliding-window inference that hands out finished slabs, so no whole-volume float output is kept.

Windows are placed and weighted exactly as MONAI's ``sliding_window_inference`` places and
weights them (``dense_patch_slices``, a Gaussian importance map with sigma = 0.125 of the
window, logits averaged by weight), but the blend is accumulated only over the rows of the
first axis that windows still overlap: as soon as no later window reaches a row, the row is
final and is handed to the caller. Peak memory is then one slab of ``C`` float32 channels
(the window's depth plus one step) instead of the whole ``(C, *S)`` volume twice (output and
weight map), which is what made a CT cost gigabytes.

The inference window may be larger than the training patch when asked (:func:`inference_window`):
fewer windows, fewer voxels computed twice where they overlap; but not by default, because the
U-Net's GroupNorm and attention see the whole window (``defaults.MAX_WINDOW_VOXELS``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from monai.data.utils import compute_importance_map, dense_patch_slices

from .defaults import DEFAULT_OVERLAP
from .parallel import ordered_map


def inference_window(image_shape: Sequence[int], patch_shape: Sequence[int], factor: int,
                     max_voxels: int | None = None, overlap: float = DEFAULT_OVERLAP
                     ) -> tuple[int, ...]:
    """The window to slide: the whole image if it fits ``max_voxels``, else the largest that does,
    then cut down to the fewest voxels that still cover the image with as many windows.

    Every side is a multiple of ``factor`` (the U-Net's downsampling) and at least the
    training patch's; the image's sides are rounded up to ``factor`` (the image is padded).
    When the whole image does not fit, the side with the most training patches along it is
    shortened first, so the window keeps the training patch's proportions as it shrinks.
    Why the last cut: a 90-row CT and a 64-row window need two windows overlapping by 38
    rows; two 52-row windows cover it as well, with a fifth fewer voxels computed.

    Args:
        image_shape, patch_shape: numpy order ``(H, W)`` or ``(D, H, W)``.
        max_voxels: None keeps the training patch (the default: see ``defaults.MAX_WINDOW_VOXELS``).
        overlap: the overlap the windows will slide with (see :func:`window_starts`).
    Returns:
        the window in numpy order.
    """
    if max_voxels is None:
        return tuple(patch_shape)
    window = [max(p, factor * math.ceil(s / factor)) for s, p in zip(image_shape, patch_shape)]
    while math.prod(window) > max_voxels:
        ratios = [(w / p, i) for i, (w, p) in enumerate(zip(window, patch_shape)) if w - factor >= p]
        if not ratios:
            break  # the training patch itself is larger than the budget: use it
        window[max(ratios)[1]] -= factor
    for i, (size, patch) in enumerate(zip(image_shape, patch_shape)):
        count = _windows_along(size, window[i], overlap)
        while window[i] - factor >= patch and _windows_along(size, window[i] - factor, overlap) <= count:
            window[i] -= factor
    return tuple(window)


def _windows_along(size: int, window: int, overlap: float) -> int:
    """How many windows :func:`window_starts` places along one axis (padded when the window is larger)."""
    return len(window_starts((max(size, window),), (window,), overlap))


def window_starts(image_shape: Sequence[int], window: Sequence[int], overlap: float) -> list[tuple[int, ...]]:
    """Start corners of the windows covering ``image_shape``, first axis slowest (MONAI's placement)."""
    interval = [w if w == s else max(1, int(w * (1 - overlap))) for s, w in zip(image_shape, window)]
    return [tuple(s.start for s in slices) for slices in dense_patch_slices(image_shape, window, interval)]


def blended_slabs(predict: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, window: Sequence[int],
                  overlap: float = DEFAULT_OVERLAP, batch: int = 2, workers: int = 1
                  ) -> Iterator[tuple[int, torch.Tensor]]:
    """Gaussian-blended network output of ``image``, one finished slab of rows at a time.

    Every call of ``predict`` gets exactly ``batch`` windows: the last batch is filled up by
    repeating its last window (whose copies are not used). Why: on a CPU, PyTorch runs a 3D
    convolution of a single small input with its slow im2col kernel instead of oneDNN (its
    heuristic looks at N * C * D * H); two windows per call measured 4.7 times faster per
    voxel than one for 32^3 windows. On a GPU, one input shape for every call is what
    CUDA graphs and torch.compile need.

    Args:
        predict: ``(batch, C_in, *window) -> (batch, C, *window)``.
        image: ``(C_in, *S)`` on the device the network runs on.
        window: the window in numpy order (:func:`inference_window`); an image smaller than
            it is padded by replicating its border (as MONAI's ``padding_mode="replicate"``)
            and the padding is cut off again.
        batch: windows per call of ``predict``.
        workers: calls of ``predict`` run at once (``parallel.ordered_map``: on a CPU, one per
            thread), at most one per call.
    Yields:
        ``(row, slab)``: ``slab`` is ``(C, R, *S[1:])`` float32 on the image's device, rows
        ``row .. row + R - 1`` of the first axis, in order, covering ``S[0]`` exactly once.
    """
    shape = tuple(image.shape[1:])
    pad = [max(w - s, 0) for s, w in zip(shape, window)]
    before = [p // 2 for p in pad]
    if any(pad):
        widths = [n for p, b in zip(reversed(pad), reversed(before)) for n in (b, p - b)]
        image = F.pad(image[None], widths, mode="replicate")[0]
    padded = tuple(image.shape[1:])
    weight = compute_importance_map(tuple(window), mode="gaussian", sigma_scale=0.125, device=image.device,
                                    dtype=torch.float32)
    starts = window_starts(padded, window, overlap)   # first axis slowest
    inner = tuple(slice(b, b + s) for b, s in zip(before[1:], shape[1:]))  # the unpadded rows' other axes
    base, acc, norm = 0, None, None   # acc: (C, rows, *padded[1:]) from row ``base``; norm: (rows, *padded[1:])

    def run(first: int) -> torch.Tensor:
        """One call of ``predict``: the windows from ``starts[first]`` on, ``(batch, C, *window)``."""
        corners = starts[first:first + batch]
        filled = corners + [corners[-1]] * (batch - len(corners))
        crops = torch.stack([image[(slice(None), *(slice(c, c + w) for c, w in zip(corner, window)))]
                             for corner in filled])
        return predict(crops).float()

    firsts = range(0, len(starts), batch)
    for i, out in ordered_map(run, firsts, min(workers, len(firsts))):
        corners = starts[i:i + batch]
        end = corners[-1][0] + window[0]   # the last row any window so far reaches
        if acc is None:
            acc = out.new_zeros((out.shape[1], end, *padded[1:]))
            norm = out.new_zeros((end, *padded[1:]))
        if base + acc.shape[1] < end:  # grow the slab to the new windows' last row
            more = end - base - acc.shape[1]
            acc = torch.cat([acc, acc.new_zeros((acc.shape[0], more, *padded[1:]))], 1)
            norm = torch.cat([norm, norm.new_zeros((more, *padded[1:]))], 0)
        for corner, o in zip(corners, out):
            region = (slice(corner[0] - base, corner[0] - base + window[0]),
                      *(slice(c, c + w) for c, w in zip(corner[1:], window[1:])))
            acc[(slice(None), *region)].addcmul_(o, weight)
            norm[region].add_(weight)
        # Windows come first axis slowest: rows before the next window's first row are final.
        done = starts[i + batch][0] if i + batch < len(starts) else base + acc.shape[1]
        if done == base:
            continue
        lo, hi = max(base, before[0]), min(done, before[0] + shape[0])
        if hi > lo:
            rows = slice(lo - base, hi - base)
            yield lo - before[0], acc[(slice(None), rows, *inner)] / norm[(rows, *inner)]
        acc, norm, base = acc[:, done - base:].clone(), norm[done - base:].clone(), done
