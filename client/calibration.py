"""Calibration at the site: a 10-bin reliability diagram and the expected calibration error (ECE).

AUROC says whether a model ranks encounters well; a coordinator deciding whether a predicted 30 %
readmission risk *means* 30 % also needs calibration, and it can differ between sites (the external
system most of all). Binary tasks compare the positive-class probability with the observed positive
rate; multi-class tasks compare the top-label confidence with the accuracy. Both use `NUM_BINS`
equal-width bins on [0, 1]; ECE = Σ_b (n_b / N) · |confidence_b − frequency_b|.

Privacy: no per-example value may leave a site, and a reliability bin holding a handful of
encounters would reveal them — a bin of one encounter publishes its probability (its mean
confidence) and its label (its frequency). So a bin with fewer than `MIN_BIN_COUNT` encounters
reports NaN confidence and frequency (its count stays: a histogram of binned scores). Suppressing
those bins alone is not enough: the published prevalence and ECE cover the whole split, so their
difference with what the published bins explain would give the suppressed bins' share back — the
label and |p − y| of a lone encounter. Whenever the suppressed bins together hold between 1 and
`MIN_BIN_COUNT − 1` encounters, the next-smallest bins are suppressed too (complementary
suppression, as statistical offices do for tables), so whatever can be derived by subtraction
always pools at least `MIN_BIN_COUNT` encounters. A split smaller than `MIN_BIN_COUNT` reports no
ECE either.

Every list has exactly `NUM_BINS` entries whatever the data: Flower zips list metrics across sites
elementwise and strictly, and sites must reply with identical keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NUM_BINS = 10
"""Equal-width reliability bins on [0, 1]."""
MIN_BIN_COUNT = 10
"""Fewest encounters whose pooled confidence and outcome a site may publish."""


@dataclass(frozen=True)
class Reliability:
    """One split's reliability diagram: per bin mean confidence, observed frequency and count
    (NaN where suppressed or empty), and the ECE over the whole split (NaN if under
    `MIN_BIN_COUNT` encounters)."""

    confidence: list[float]
    frequency: list[float]
    count: list[float]
    ece: float


def confidence_and_outcome(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What each encounter's reliability point is made of: binary tasks → (P(class 1), y == 1);
    multi-class tasks → (top-label probability, whether the top label is right)."""
    y = np.asarray(y).astype(np.int64).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != y.shape[0] or probs.shape[1] < 2:
        raise ValueError(f"`probs` has shape {probs.shape}; expected [{y.shape[0]}, K>=2]")
    if probs.shape[1] == 2:
        return probs[:, 1], (y == 1).astype(np.float64)
    return probs.max(axis=1), (probs.argmax(axis=1) == y).astype(np.float64)


def _bin_index(confidence: np.ndarray, num_bins: int) -> np.ndarray:
    """Bin b holds [b/num_bins, (b+1)/num_bins); a confidence of exactly 1 goes to the last bin."""
    return np.clip(np.floor(confidence * num_bins).astype(np.int64), 0, num_bins - 1)


def suppressed_bins(counts: np.ndarray, min_count: int) -> np.ndarray:
    """Bins whose confidence and frequency stay at the site: those with 1..min_count−1 encounters,
    plus the smallest other non-empty bins until the suppressed ones pool ≥ min_count (or all
    non-empty bins are suppressed), so no subtraction isolates fewer than min_count encounters."""
    hidden = (counts > 0) & (counts < min_count)
    for b in np.argsort(counts, kind="stable"):
        if not 0 < counts[hidden].sum() < min_count:
            break
        if counts[b] > 0:
            hidden[b] = True
    return hidden


def reliability(y: np.ndarray, probs: np.ndarray, *, num_bins: int = NUM_BINS,
                min_count: int = MIN_BIN_COUNT) -> Reliability:
    """The reliability diagram and ECE of one task on one split (see the module docstring)."""
    confidence, outcome = confidence_and_outcome(y, probs)
    n = confidence.size
    index = _bin_index(confidence, num_bins)
    counts = np.bincount(index, minlength=num_bins).astype(np.float64)
    sum_conf = np.bincount(index, weights=confidence, minlength=num_bins)
    sum_outcome = np.bincount(index, weights=outcome, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, freq = sum_conf / counts, sum_outcome / counts  # empty bins: NaN
    ece = float(np.abs(sum_conf - sum_outcome).sum() / n) if n >= min_count else math.nan
    hidden = suppressed_bins(counts, min_count)
    mean_conf[hidden] = math.nan
    freq[hidden] = math.nan
    return Reliability(confidence=[float(v) for v in mean_conf], frequency=[float(v) for v in freq],
                       count=[float(v) for v in counts], ece=ece)


def calibration_metrics(task: str, y: np.ndarray,
                        probs: np.ndarray) -> dict[str, float | list[float]]:
    """Flat metric keys for one task: `<task>.ece` and `<task>.reliability_{confidence,frequency,
    count}` (lists of `NUM_BINS` floats), in this order."""
    result = reliability(y, probs)
    return {
        f"{task}.ece": result.ece,
        f"{task}.reliability_confidence": result.confidence,
        f"{task}.reliability_frequency": result.frequency,
        f"{task}.reliability_count": result.count,
    }
