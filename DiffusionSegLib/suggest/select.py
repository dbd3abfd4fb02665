"""Choosing cases in feature space (numpy only): k-centre greedy, k-medoids, and the uncertainty mix.

Every function takes ``X`` ``(N, F)`` (the embedded features of the whole pool, labeled cases
included), ``fixed`` (indices of labeled cases: centres that already exist and are never
picked) and returns an ordered list of :class:`Pick`, best first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: ``--strategy`` choices (run.py: what ``auto`` means).
STRATEGIES = ("auto", "kmedoids", "kcentre", "mix")
#: Default weight of the model's uncertainty in the mix (the rest is distance from labeled cases).
UNCERTAINTY_WEIGHT = 0.5


@dataclass
class Pick:
    index: int
    score: float
    details: dict = field(default_factory=dict)


def embed(features: np.ndarray, widths: list[int]) -> np.ndarray:
    """Centre the pool, then scale each block (bottleneck, decoder blocks) to unit total variance and the
    whole to unit total variance, so every block counts equally whatever its width or activation scale."""
    X = features.astype(np.float64) - features.mean(0)
    start, parts = 0, []
    for w in widths:
        block = X[:, start:start + w]
        scale = np.sqrt((block ** 2).sum(1).mean())
        parts.append(block / scale if scale > 0 else block)
        start += w
    return np.concatenate(parts, 1) / np.sqrt(len(widths))


def distances(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Euclidean ``(len(X), len(Y))``."""
    d2 = (X ** 2).sum(1)[:, None] + (Y ** 2).sum(1)[None] - 2 * X @ Y.T
    return np.sqrt(np.clip(d2, 0, None))


def coverage(X: np.ndarray, centres: list[int]) -> float:
    """Mean distance of every pool image to its nearest centre (lower: the centres represent the pool better)."""
    return float(distances(X, X[centres]).min(1).mean())


def represented(X: np.ndarray, centres: list[int]) -> np.ndarray:
    """How many pool images are nearest to each centre (ties to the first)."""
    return np.bincount(distances(X, X[centres]).argmin(1), minlength=len(centres))


def _nearest(D: np.ndarray, centres: list[int]) -> np.ndarray:
    return D[:, centres].min(1) if centres else np.full(len(D), np.inf)


def kcentre(X: np.ndarray, k: int, fixed: list[int] = ()) -> list[Pick]:
    """Greedy k-centre (farthest-first): each pick is the image farthest from every labeled case and earlier
    pick; without labeled cases the first pick is the image nearest the pool's mean (the most typical)."""
    D = distances(X, X)
    centres, picks = list(fixed), []
    free = np.ones(len(X), bool)
    free[list(fixed)] = False
    for _ in range(k):
        if centres:
            gap = np.where(free, _nearest(D, centres), -1.0)
            i = int(gap.argmax())
            details = {"distance": float(gap[i]), "first": False}
        else:
            i = int(np.where(free, np.linalg.norm(X - X.mean(0), axis=1), np.inf).argmin())
            details = {"distance": None, "first": True}
        centres.append(i)
        free[i] = False
        picks.append(Pick(i, 0.0, details))
    return picks


def _medoid(D: np.ndarray, members: np.ndarray, candidates: np.ndarray) -> int:
    """The candidate member with the smallest summed distance to the members."""
    pool = members[candidates[members]]
    return int(pool[D[np.ix_(pool, members)].sum(1).argmin()]) if len(pool) else -1


def kmedoids(X: np.ndarray, k: int, fixed: list[int] = (), seed: int = 0, restarts: int = 10,
             iterations: int = 50) -> list[Pick]:
    """k medoids minimising the mean distance of the pool to its nearest centre (labeled cases are centres
    that stay). Alternating assignment and medoid update from k-means++ starts (``restarts``, seeded), the
    best kept; then ordered greedily, each next pick the one that lowers that mean distance most, so the
    first N of the list are a good set of N too."""
    D = distances(X, X)
    fixed = list(fixed)
    candidates = np.ones(len(X), bool)
    candidates[fixed] = False
    rng = np.random.default_rng(seed)
    best, best_cost = None, np.inf
    for _ in range(restarts):
        medoids = _kmeanspp(D, k, fixed, candidates, rng)
        for _ in range(iterations):
            centres = fixed + medoids
            assign = D[:, centres].argmin(1)
            updated = []
            for j, m in enumerate(medoids):
                members = np.flatnonzero(assign == len(fixed) + j)
                new = _medoid(D, members, candidates) if len(members) else m
                updated.append(m if new < 0 or new in updated else new)
            if updated == medoids:
                break
            medoids = updated
        cost = D[:, fixed + medoids].min(1).sum()
        if cost < best_cost - 1e-12:
            best, best_cost = medoids, cost
    best = list(dict.fromkeys(best))
    while len(best) < k:   # a medoid update that made two clusters share one medoid: add the farthest candidate
        gap = np.where(candidates, _nearest(D, fixed + best), -1.0)
        gap[best] = -1.0
        best.append(int(gap.argmax()))
    order, chosen = [], list(fixed)
    remaining = list(best)
    while remaining:
        costs = [_nearest(D, chosen + [m]).mean() for m in remaining]
        m = remaining.pop(int(np.argmin(costs)))
        order.append(m)
        chosen.append(m)
    return [Pick(i, 0.0, {}) for i in order]


def _kmeanspp(D: np.ndarray, k: int, fixed: list[int], candidates: np.ndarray, rng) -> list[int]:
    medoids: list[int] = []
    for _ in range(k):
        gap = _nearest(D, fixed + medoids)
        weight = np.where(candidates, np.where(np.isinf(gap), 1.0, gap ** 2), 0.0)
        weight[medoids] = 0.0
        if weight.sum() <= 0:   # every candidate coincides with a centre: any unpicked candidate
            weight = candidates.astype(float)
            weight[medoids] = 0.0
        medoids.append(int(rng.choice(len(D), p=weight / weight.sum())))
    return medoids


def mix(X: np.ndarray, uncertainty: np.ndarray, k: int, fixed: list[int] = (),
        weight: float = UNCERTAINTY_WEIGHT) -> list[Pick]:
    """Greedy ranking by ``weight * u + (1 - weight) * d`` over the unlabeled images, where

    - ``u`` = the model's uncertainty, min-max scaled over the unlabeled images to [0, 1];
    - ``d`` = the distance to the nearest labeled case or earlier pick, divided by the largest such
      distance before the first pick (so in [0, 1]; 1 for every image when nothing is labeled yet);

    after each pick ``d`` is updated, so K suggestions are not K near-copies of one hard case.
    """
    D = distances(X, X)
    free = np.ones(len(X), bool)
    free[list(fixed)] = False
    u_free = uncertainty[free]
    span = float(u_free.max() - u_free.min()) if free.any() else 0.0
    u = (uncertainty - u_free.min()) / span if span > 0 else np.zeros(len(X))
    centres = list(fixed)
    gap0 = _nearest(D, centres)
    scale = float(gap0[free].max()) if centres and free.any() else 0.0
    picks = []
    for _ in range(k):
        gap = _nearest(D, centres)
        if scale == 0 and centres and free.any():   # nothing was labeled: scale by the gaps after the first pick
            scale = float(gap[free].max())
        d = np.minimum(gap / scale, 1.0) if scale > 0 else np.ones(len(X))
        score = np.where(free, weight * u + (1 - weight) * d, -np.inf)
        i = int(score.argmax())
        nearest = int(D[i, centres].argmin()) if centres else -1
        picks.append(Pick(i, float(score[i]), {
            "uncertainty_scaled": float(u[i]), "distance_scaled": float(d[i]),
            "distance": None if np.isinf(gap[i]) else float(gap[i]),
            "nearest_labeled": nearest < len(fixed) if centres else None,
            "nearest_rank": nearest - len(fixed) + 1 if centres and nearest >= len(fixed) else None,
            "earlier": len(picks)}))
        centres.append(i)
        free[i] = False
    return picks
