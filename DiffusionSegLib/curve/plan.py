"""Which subsets of the labeled cases to fine-tune on: sizes, and seeded draws per size."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..errors import UserError

DEFAULT_FOLDS = 2          # subsets per size
MAX_DEFAULT_SIZES = 3      # so the default costs at most 6 fine-tunings
DEFAULT_ITERATIONS = 100


@dataclass
class Subset:
    n: int                 # how many labeled cases it trains on
    fold: int              # 0 .. folds-1 within its size
    train: list[str]       # case names
    test: list[str]        # the held-out labeled cases


def check_labeled(count: int, annotations) -> None:
    if count < 2:
        raise UserError(f"a curve needs at least 2 labeled cases (found {count}): it fine-tunes on some of them "
                        "and scores on the others.", path=annotations,
                        fix="label one more case, then run curve again.")


def default_sizes(labeled: int) -> list[int]:
    """1 .. N-1 when that is at most 3 sizes; else 1, the geometric middle, and N-1."""
    if labeled - 1 <= MAX_DEFAULT_SIZES:
        return list(range(1, labeled))
    return sorted({1, int(round(math.sqrt(labeled - 1))), labeled - 1})


def check_sizes(sizes: list[int], labeled: int) -> list[int]:
    bad = [s for s in sizes if not 1 <= s <= labeled - 1]
    if bad:
        raise UserError(f"--sizes {' '.join(map(str, bad))} cannot be used with {labeled} labeled cases: a subset "
                        "trains on 1 to N-1 cases so that at least one is left to score on.",
                        fix=f"pass --sizes with values from 1 to {labeled - 1}, or leave it out.")
    return sorted(set(sizes))


def plan_subsets(cases: list[str], sizes: list[int], folds: int, seed: int = 0) -> list[Subset]:
    """``folds`` distinct subsets of each size (all of them when there are fewer), seeded.

    Each subset trains on its cases and is scored on every other labeled case. Subsets of
    one size are drawn without repeats; when every subset of a size can be listed (at most
    ``folds`` of them, e.g. leave-one-out at N-1) they all are.
    """
    cases = sorted(cases)
    rng = np.random.default_rng(seed)
    plan: list[Subset] = []
    for n in sizes:
        total = math.comb(len(cases), n)
        if total <= folds:
            chosen = [list(c) for c in itertools.combinations(cases, n)]
        else:
            chosen, seen = [], set()
            while len(chosen) < folds:
                pick = tuple(sorted(rng.choice(len(cases), size=n, replace=False).tolist()))
                if pick not in seen:
                    seen.add(pick)
                    chosen.append([cases[i] for i in pick])
        for fold, train in enumerate(chosen):
            plan.append(Subset(n, fold, train, [c for c in cases if c not in train]))
    return plan
