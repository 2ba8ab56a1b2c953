"""AUROC and its bootstrap confidence interval, the one score every task is judged by.

Multi-class tasks use the one-vs-rest macro average, computed per class so that a class absent from
a small site's split is skipped instead of failing (sklearn's `multi_class="ovr"` raises then); with
every class present the value equals sklearn's. Undefined cases (one class only, no rows) give NaN,
so a site always reports the same metric keys.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

_CELLS_PER_CHUNK = 4_000_000


def _check(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.int64).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != y.shape[0] or probs.shape[1] < 2:
        raise ValueError(f"`probs` has shape {probs.shape}; expected [{y.shape[0]}, K>=2]")
    if y.size and (y.min() < 0 or y.max() >= probs.shape[1]):
        raise ValueError(f"labels span {y.min()}..{y.max()}; expected 0..{probs.shape[1] - 1}")
    return y, probs


def _scored_classes(y: np.ndarray, k: int) -> list[int]:
    """Classes whose one-vs-rest AUROC is defined: present, and not the only class present."""
    present = np.unique(y)
    if present.size < 2:
        return []
    return [1] if k == 2 else [int(c) for c in present]


def auroc(y: np.ndarray, probs: np.ndarray) -> float:
    """Binary: AUROC of probs[:, 1]. Multi-class: mean one-vs-rest AUROC over the classes present.
    NaN when fewer than two classes are present."""
    y, probs = _check(y, probs)
    classes = _scored_classes(y, probs.shape[1])
    if not classes:
        return math.nan
    return float(np.mean([roc_auc_score(y == c, probs[:, c]) for c in classes]))


def _batched_auroc(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC per row of [R, N] arrays via the Mann-Whitney rank sum (ties get average ranks, which
    is exactly sklearn's trapezoidal AUROC)."""
    ranks = rankdata(scores, axis=1)
    n_pos = positive.sum(axis=1)
    n_neg = positive.shape[1] - n_pos
    rank_sum = (ranks * positive).sum(axis=1)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_ci(y: np.ndarray, probs: np.ndarray, *, n_resamples: int = 1000, seed: int,
                 level: float = 0.95) -> tuple[float, float]:
    """Stratified percentile bootstrap interval of `auroc`; (NaN, NaN) where AUROC is undefined.

    Stratified: each resample draws, with replacement, exactly as many rows of each class as the
    data has. An unstratified resample can miss the rare class entirely — mortality is about 2 %, so
    a test split of 150 holds ~3 deaths and ~5 % of plain resamples have none — and AUROC is then
    undefined (sklearn raises); dropping those resamples would bias the interval upwards. Keeping
    the class counts fixed matches how the split was drawn and keeps every resample scorable.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"`level` is {level}; expected 0 < level < 1")
    if n_resamples < 1:
        raise ValueError(f"`n_resamples` is {n_resamples}; expected >= 1")
    y, probs = _check(y, probs)
    classes = _scored_classes(y, probs.shape[1])
    if not classes:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(y == c) for c in np.unique(y)]
    chunk = max(1, _CELLS_PER_CHUNK // y.size)  # bounds memory on large splits
    scores = []
    for start in range(0, n_resamples, chunk):
        n = min(chunk, n_resamples - start)
        rows = np.concatenate(
            [s[rng.integers(0, s.size, size=(n, s.size))] for s in strata], axis=1
        )
        scores.append(np.mean([_batched_auroc(y[rows] == c, probs[rows, c]) for c in classes], 0))
    scores = np.concatenate(scores)
    alpha = (1.0 - level) / 2
    low, high = np.quantile(scores, [alpha, 1.0 - alpha])
    return float(low), float(high)
