"""Score a model on one split: class probabilities per task, then a flat dict of metrics.

The metric keys depend only on the task list, never on the data: Flower stops a round when sites
reply with different keys, so an undefined value (no ceilings on real data, one class only
in a small split) is NaN, not a missing key. The keys, the reliability bins and the smallest bin a
site may publish are the wire's (strategies/exchange.py: `metric_keys`, `validation_keys`,
`NUM_BINS`, `MIN_BIN_COUNT`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from client.data import EncodedSplit
from client.model import MultiTaskModel, TaskModel
from client.precision import autocast
from sites.tasks import TASKS
from strategies.exchange import MIN_BIN_COUNT, NUM_BINS, VALIDATION_LOSS, VALIDATION_PREFIX


@torch.no_grad()
def log_probs(model: TaskModel, data: EncodedSplit, tasks: Sequence[str], *,
              batch_size: int) -> dict[str, np.ndarray]:
    """Log class probabilities [N, K] per task (log-softmax of `TaskModel.task_logits`: over the
    heads' outputs, or over the answer letters' logits), rows in the split's order.

    Rows are visited from shortest to longest inputs, so each batch is padded little (most of a CPU
    evaluation's time is padding otherwise), then put back in order.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` is {batch_size}; expected >= 1")
    tasks = tuple(tasks)
    out = {t: np.zeros((data.size, TASKS[t].num_classes), dtype=np.float64) for t in tasks}
    if data.size == 0:
        return out
    order = torch.argsort(data.lengths(tasks), stable=True)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, data.size, batch_size):
            index = order[start: start + batch_size]
            with autocast(model.device, model.base_dtype):
                logits_per_task = model.task_logits(data, index, tasks)
            for t, logits in logits_per_task.items():
                logp = torch.log_softmax(logits.float(), dim=-1)
                out[t][index.numpy()] = logp.cpu().numpy()
    finally:
        model.train(was_training)
    return out


def predict(model: MultiTaskModel, data: EncodedSplit, tasks: Sequence[str], *,
            batch_size: int) -> dict[str, np.ndarray]:
    """Softmax class probabilities [N, K] per task, rows in the split's order."""
    return {t: np.exp(lp) for t, lp in log_probs(model, data, tasks, batch_size=batch_size).items()}


def positives(task: str, y: np.ndarray) -> float:
    """Encounters of the positive class (binary tasks) or of the rarest class present
    (multi-class tasks) in a split: the count an AUROC rests on. A count of the split, like `n`;
    the coordinator leaves thin validation cells out of round selection with it."""
    counts = np.bincount(y, minlength=TASKS[task].num_classes)
    if TASKS[task].is_binary:
        return float(counts[1])
    present = counts[counts > 0]
    return float(present.min()) if present.size else 0.0


def _task_metrics(task: str, y: np.ndarray, probs: np.ndarray, oracle: np.ndarray | None,
                  note_ceiling: np.ndarray | None, seed: int,
                  n_resamples: int) -> dict[str, float | list[float]]:
    """One task's keys, in `METRIC_SUFFIXES` order: AUROC with CI (NaN when `n_resamples` is 0),
    n, positives, prevalence, oracle AUROC, note-level ceiling AUROC, then calibration (small
    reliability bins are withheld at the site)."""
    n = int(y.size)
    if n == 0:
        prevalence = math.nan
    elif TASKS[task].is_binary:
        prevalence = float(np.mean(y == 1))
    else:
        prevalence = float(np.bincount(y, minlength=TASKS[task].num_classes).max() / n)
    low, high = (bootstrap_ci(y, probs, n_resamples=n_resamples, seed=seed) if n and n_resamples
                 else (math.nan, math.nan))
    return {
        f"{task}.auroc": auroc(y, probs) if n else math.nan,
        f"{task}.auroc_low": low,
        f"{task}.auroc_high": high,
        f"{task}.n": float(n),
        f"{task}.positives": positives(task, y),
        f"{task}.prevalence": prevalence,
        f"{task}.oracle_auroc": auroc(y, oracle) if oracle is not None and n else math.nan,
        f"{task}.note_ceiling_auroc": (auroc(y, note_ceiling) if note_ceiling is not None and n
                                       else math.nan),
        **calibration_metrics(task, y, probs),
    }


def evaluate_split(model: MultiTaskModel, data: EncodedSplit, tasks: Sequence[str], *,
                   batch_size: int, seed: int, n_resamples: int = 1000,
                   logp: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Per-task AUROC with a 95 % stratified bootstrap interval, n, positives, prevalence and the
    two ceilings' AUROCs on synthetic data (the oracle's, and the note-level ceiling's: the best a
    reader of the encoded note could do), plus `loss`: the mean over tasks of the cross-entropy.
    Keys are exactly `strategies.exchange.metric_keys(tasks)` whatever the data; `n_resamples` = 0
    skips the bootstrap (its interval is NaN), for evaluations nothing reports. `logp`: the
    split's log probabilities (`log_probs`) when already computed; the model is not run then."""
    if n_resamples < 0:
        raise ValueError(f"`n_resamples` is {n_resamples}; expected >= 0 (0: no interval)")
    tasks = tuple(tasks)
    if logp is None:
        logp = log_probs(model, data, tasks, batch_size=batch_size)
    metrics: dict[str, float] = {}
    for i, task in enumerate(tasks):
        y = data.labels[task].cpu().numpy().astype(np.int64)
        metrics.update(_task_metrics(task, y, np.exp(logp[task]), data.oracle.get(task),
                                     data.note_ceiling.get(task), seed=seed + i,
                                     n_resamples=n_resamples))
    metrics["loss"] = mean_cross_entropy(data, logp)
    return metrics


def validation_metrics(model: MultiTaskModel, data: EncodedSplit, tasks: Sequence[str], *,
                       batch_size: int) -> dict[str, float]:
    """Per-task AUROC, n and positives on the validation split, and `validation.loss` (the mean
    over tasks of the cross-entropy), for round selection: no interval (nothing is reported about
    it), NaN where undefined (no validation split, one class only)."""
    tasks = tuple(tasks)
    logp = log_probs(model, data, tasks, batch_size=batch_size)
    metrics: dict[str, float] = {}
    for task in tasks:
        y = data.labels[task].cpu().numpy().astype(np.int64)
        metrics[f"{VALIDATION_PREFIX}{task}.auroc"] = (auroc(y, np.exp(logp[task])) if y.size
                                                       else math.nan)
        metrics[f"{VALIDATION_PREFIX}{task}.n"] = float(y.size)
        metrics[f"{VALIDATION_PREFIX}{task}.positives"] = positives(task, y)
    metrics[VALIDATION_LOSS] = mean_cross_entropy(data, logp)
    return metrics


def mean_cross_entropy(data: EncodedSplit, logp: dict[str, np.ndarray]) -> float:
    """The mean over tasks of a split's cross-entropy (each task's mean over its encounters): one
    number over the whole split, defined however rare a class is; NaN for an empty split."""
    losses = []
    for task, lp in logp.items():
        y = data.labels[task].cpu().numpy().astype(np.int64)
        if y.size:
            losses.append(float(-lp[np.arange(y.size), y].mean()))
    return float(np.mean(losses)) if losses else math.nan


# -----------------------------------------------------------------------------------------------
# AUROC and its bootstrap confidence interval, the one score every task is judged by.
#
# Multi-class tasks use the one-vs-rest macro average, computed per class so that a class absent from
# a small site's split is skipped instead of failing (sklearn's `multi_class="ovr"` raises then); with
# every class present the value equals sklearn's. Undefined cases (one class only, no rows) give NaN,
# so a site always reports the same metric keys.
# -----------------------------------------------------------------------------------------------


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


def batched_auroc(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
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
        scores.append(np.mean([batched_auroc(y[rows] == c, probs[rows, c]) for c in classes], 0))
    scores = np.concatenate(scores)
    alpha = (1.0 - level) / 2
    low, high = np.quantile(scores, [alpha, 1.0 - alpha])
    return float(low), float(high)


# -----------------------------------------------------------------------------------------------
# Calibration at the site: a 10-bin reliability diagram and the expected calibration error (ECE).
#
# AUROC says whether a model ranks encounters well; a coordinator deciding whether a predicted 30 %
# readmission risk *means* 30 % also needs calibration, and it can differ between sites (the external
# system most of all). Binary tasks compare the positive-class probability with the observed positive
# rate; multi-class tasks compare the top-label confidence with the accuracy. Both use `NUM_BINS`
# equal-width bins on [0, 1]; ECE = Σ_b (n_b / N) · |confidence_b − frequency_b|.
#
# Privacy: no per-example value may leave a site, and a reliability bin holding a handful of
# encounters would reveal them — a bin of one encounter publishes its probability (its mean
# confidence) and its label (its frequency). So a bin with fewer than `MIN_BIN_COUNT` encounters
# reports NaN confidence and frequency (its count stays: a histogram of binned scores). Suppressing
# those bins alone is not enough: the published prevalence and ECE cover the whole split, so their
# difference with what the published bins explain would give the suppressed bins' share back — the
# label and |p − y| of a lone encounter. Whenever the suppressed bins together hold between 1 and
# `MIN_BIN_COUNT − 1` encounters, the next-smallest bins are suppressed too (complementary
# suppression, as statistical offices do for tables), so whatever can be derived by subtraction
# always pools at least `MIN_BIN_COUNT` encounters. A split smaller than `MIN_BIN_COUNT` reports no
# ECE either.
#
# Every list has exactly `NUM_BINS` entries whatever the data: Flower zips list metrics across sites
# elementwise and strictly, and sites must reply with identical keys.
# -----------------------------------------------------------------------------------------------


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
