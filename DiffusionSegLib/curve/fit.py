"""A saturating learning curve ``y = a - b * n^(-c)`` fitted to per-subset scores, and its bootstrap band.

numpy only (SciPy is not a dependency, and 3D Slicer's Python may lack it). The fit works
on the error ``e = sign * (best - y) >= 0`` (``best`` 1 for Dice, 0 mm for MRE; ``sign``
+1 when higher is better, else -1), modelled as ``e = f + g * n^(-c)`` with ``f, g >= 0``
(the error falls with more cases, towards a floor ``f``). For a fixed exponent ``c`` the
model is linear in ``(f, g)``, solved in closed form under the bounds; ``c`` is chosen on a
log grid and refined by golden-section search. So the fit has no starting point to get
wrong and never diverges on 2-3 points.

How much is fitted depends on how many distinct subset sizes were scored:

- 3 or more: ``f``, ``g`` and ``c``;
- 2: ``f`` and ``g``; ``c`` is assumed (``C_PRIOR``);
- 1: ``g`` only; ``c`` is assumed and the floor ``f`` is 0.

The band: the per-subset scores are resampled with replacement within each size
(stratified bootstrap), the curve refitted, and the ``INTERVAL`` central range of the
replicates' predictions taken. Where ``c`` is assumed, each replicate draws it
log-uniformly from ``C_PRIOR_RANGE``, so the band carries that assumption's uncertainty.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

FORM = "y = a - b * n^(-c)"
INTERVAL = 0.8                 # central range of the bootstrap replicates (10th to 90th percentile)
C_PRIOR = 0.5                  # assumed exponent when fewer than 3 sizes were scored
C_PRIOR_RANGE = (0.25, 1.0)    # its spread in the bootstrap
C_RANGE = (0.02, 4.0)          # exponents the free fit may choose
REPLICATES = 500
_GRID = np.exp(np.linspace(math.log(C_RANGE[0]), math.log(C_RANGE[1]), 240))


@dataclass
class CurveFit:
    """``y(n) = a - b * n^(-c)``; ``fitted`` names the parameters fitted, the others were assumed."""

    a: float
    b: float
    c: float
    best: float
    higher_is_better: bool
    fitted: list[str] = field(default_factory=list)
    rmse: float = 0.0
    points: int = 0
    sizes: int = 0

    def predict(self, n) -> np.ndarray:
        return self.a - self.b * np.power(np.asarray(n, dtype=float), -self.c)

    def to_dict(self) -> dict:
        return {"form": FORM, **asdict(self)}


def _sign(higher_is_better: bool) -> float:
    return 1.0 if higher_is_better else -1.0


def _solve(x: np.ndarray, e: np.ndarray, floor: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares ``e ~ f + g * x`` with ``f, g >= 0`` for every row of ``x`` at once.

    Args:
        x: (G, M) ``n^(-c)`` for G exponents and M points; e: (M,) errors.
        floor: False: ``f`` is fixed at 0.
    Returns:
        ``f``, ``g``, sum of squared residuals, each (G,).
    """
    sxx, sxe = (x * x).sum(1), (x * e).sum(1)
    g_edge = np.maximum(sxe / np.maximum(sxx, 1e-300), 0.0)           # f = 0
    cands = [(np.zeros_like(g_edge), g_edge)]
    if floor:
        m = e.size
        sx, se = x.sum(1), e.sum()
        det = m * sxx - sx * sx
        ok = np.abs(det) > 1e-12 * np.maximum(m * sxx, 1e-300)
        g_free = np.where(ok, (m * sxe - sx * se) / np.where(ok, det, 1.0), -1.0)
        f_free = (se - g_free * sx) / m
        feasible = ok & (g_free >= 0) & (f_free >= 0)
        cands.append((np.where(feasible, f_free, np.nan), np.where(feasible, g_free, np.nan)))
        cands.append((np.full_like(g_edge, max(e.mean(), 0.0)), np.zeros_like(g_edge)))  # g = 0: flat
    best_f, best_g, best_sse = None, None, None
    for f, g in cands:
        sse = ((f[:, None] + g[:, None] * x - e) ** 2).sum(1)
        sse = np.where(np.isnan(sse), np.inf, sse)
        if best_sse is None:
            best_f, best_g, best_sse = f, g, sse
        else:
            better = sse < best_sse
            best_f, best_g, best_sse = (np.where(better, f, best_f), np.where(better, g, best_g),
                                        np.where(better, sse, best_sse))
    return best_f, best_g, best_sse


def _fit_error(n: np.ndarray, e: np.ndarray, c: float | None, floor: bool) -> tuple[float, float, float, float]:
    """(f, g, c, sse) of ``e = f + g * n^(-c)``; ``c`` None: chosen on the grid, then refined."""
    logn = np.log(n)

    def at(cs: np.ndarray):
        return _solve(np.exp(-np.outer(cs, logn)), e, floor)

    if c is not None:
        f, g, sse = at(np.array([c]))
        return float(f[0]), float(g[0]), float(c), float(sse[0])
    f, g, sse = at(_GRID)
    i = int(np.argmin(sse))
    lo, hi = math.log(_GRID[max(i - 1, 0)]), math.log(_GRID[min(i + 1, _GRID.size - 1)])
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(24):  # golden-section search on log c inside the grid's bracket
        m1, m2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        s = at(np.exp(np.array([m1, m2])))[2]
        if s[0] <= s[1]:
            hi = m2
        else:
            lo = m1
    c_best = math.exp((lo + hi) / 2)
    f1, g1, s1 = at(np.array([c_best]))
    if s1[0] <= sse[i]:
        return float(f1[0]), float(g1[0]), c_best, float(s1[0])
    return float(f[i]), float(g[i]), float(_GRID[i]), float(sse[i])


def fit_curve(n, y, *, higher_is_better: bool = True, best: float | None = None,
              c: float | None = None) -> CurveFit:
    """Fit ``y = a - b * n^(-c)`` to scores ``y`` (one per scored subset) at subset sizes ``n``.

    Args:
        n: (M,) subset sizes (>= 1); y: (M,) scores; NaN scores are left out.
        higher_is_better: True for Dice (the curve rises to ``a``), False for MRE (falls to ``a``).
        best: the best possible score (default 1 when higher is better, else 0); the curve
            never passes it.
        c: fix the exponent (otherwise: fitted with 3 or more sizes, ``C_PRIOR`` below).
    """
    n, y = np.asarray(n, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(y) & np.isfinite(n) & (n >= 1)
    n, y = n[keep], y[keep]
    if n.size == 0:
        raise ValueError("no finite score to fit")
    best = (1.0 if higher_is_better else 0.0) if best is None else float(best)
    sign = _sign(higher_is_better)
    e = np.maximum(sign * (best - y), 0.0)
    sizes = int(np.unique(n).size)
    floor = sizes >= 2
    if c is None and sizes < 3:
        c = C_PRIOR
    fitted = (["a"] if floor else []) + ["b"] + (["c"] if sizes >= 3 and c is None else [])
    f, g, c_fit, sse = _fit_error(n, e, c, floor)
    return CurveFit(a=best - sign * f, b=sign * g, c=c_fit, best=best, higher_is_better=higher_is_better,
                    fitted=fitted, rmse=math.sqrt(sse / n.size), points=int(n.size), sizes=sizes)


def bootstrap(n, y, at, *, higher_is_better: bool = True, best: float | None = None,
              replicates: int = REPLICATES, seed: int = 0) -> np.ndarray:
    """Predictions at sizes ``at`` of curves refitted to resampled scores: (replicates, len(at)).

    Scores are resampled with replacement within each subset size; when fewer than 3
    sizes were scored, each replicate's exponent is drawn log-uniformly from ``C_PRIOR_RANGE``.
    """
    n, y = np.asarray(n, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(y) & np.isfinite(n) & (n >= 1)
    n, y = n[keep], y[keep]
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(n == size) for size in np.unique(n)]
    free_c = len(groups) >= 3
    at = np.asarray(at, dtype=float)
    out = np.empty((replicates, at.size))
    for r in range(replicates):
        idx = np.concatenate([rng.choice(g, size=g.size, replace=True) for g in groups])
        c = None if free_c else math.exp(rng.uniform(*np.log(C_PRIOR_RANGE)))
        out[r] = fit_curve(n[idx], y[idx], higher_is_better=higher_is_better, best=best, c=c).predict(at)
    return out


def band(values: np.ndarray, estimate: float, level: float = INTERVAL) -> tuple[float, float]:
    """The central ``level`` range of ``values``, widened to contain ``estimate``."""
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(min(lo, estimate)), float(max(hi, estimate))
