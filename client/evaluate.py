"""Score a model on one split: class probabilities per task, then a flat dict of metrics.

The metric keys depend only on the task list, never on the data: Flower stops a round when sites
reply with different keys, so an undefined value (no oracle columns on real data, one class only
in a small split) is NaN, not a missing key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from sites.tasks import TASKS

from client.calibration import calibration_metrics
from client.data import EncodedSplit
from client.metrics import auroc, bootstrap_ci
from client.model import MultiTaskModel, TaskModel
from client.precision import autocast

METRIC_SUFFIXES = ("auroc", "auroc_low", "auroc_high", "n", "prevalence", "oracle_auroc",
                   "ece", "reliability_confidence", "reliability_frequency", "reliability_count")
"""Per-task metric names; the `reliability_*` ones are lists of `calibration.NUM_BINS` floats."""


def metric_keys(tasks: Sequence[str]) -> list[str]:
    """Keys of `evaluate_split`'s result for `tasks`, in order."""
    return [f"{t}.{s}" for t in tasks for s in METRIC_SUFFIXES] + ["loss"]


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
            with autocast(model.device):
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


def _task_metrics(task: str, y: np.ndarray, probs: np.ndarray, oracle: np.ndarray | None,
                  seed: int, n_resamples: int) -> dict[str, float | list[float]]:
    """One task's keys, in `METRIC_SUFFIXES` order: AUROC with CI, n, prevalence, oracle AUROC,
    then calibration (`client.calibration`: small reliability bins are withheld at the site)."""
    n = int(y.size)
    if n == 0:
        prevalence = math.nan
    elif TASKS[task].is_binary:
        prevalence = float(np.mean(y == 1))
    else:
        prevalence = float(np.bincount(y, minlength=TASKS[task].num_classes).max() / n)
    low, high = (bootstrap_ci(y, probs, n_resamples=n_resamples, seed=seed) if n
                 else (math.nan, math.nan))
    return {
        f"{task}.auroc": auroc(y, probs) if n else math.nan,
        f"{task}.auroc_low": low,
        f"{task}.auroc_high": high,
        f"{task}.n": float(n),
        f"{task}.prevalence": prevalence,
        f"{task}.oracle_auroc": auroc(y, oracle) if oracle is not None and n else math.nan,
        **calibration_metrics(task, y, probs),
    }


def evaluate_split(model: MultiTaskModel, data: EncodedSplit, tasks: Sequence[str], *,
                   batch_size: int, seed: int, n_resamples: int = 1000) -> dict[str, float]:
    """Per-task AUROC with a 95 % stratified bootstrap interval, n, prevalence and the oracle's
    AUROC (the ceiling on synthetic data), plus `loss`: the mean over tasks of the cross-entropy.
    Keys are exactly `metric_keys(tasks)` whatever the data."""
    tasks = tuple(tasks)
    logp = log_probs(model, data, tasks, batch_size=batch_size)
    metrics: dict[str, float] = {}
    losses = []
    for i, task in enumerate(tasks):
        y = data.labels[task].cpu().numpy().astype(np.int64)
        metrics.update(_task_metrics(task, y, np.exp(logp[task]), data.oracle.get(task),
                                     seed=seed + i, n_resamples=n_resamples))
        if y.size:
            losses.append(float(-logp[task][np.arange(y.size), y].mean()))
    metrics["loss"] = float(np.mean(losses)) if losses else math.nan
    return metrics


VALIDATION_PREFIX = "validation."
"""Validation metrics are keyed `validation.<task>.auroc|n`: the server selects the best round on
them (never on test), so they travel beside the test metrics under their own names."""


def validation_keys(tasks: Sequence[str]) -> list[str]:
    """Keys of `validation_metrics`'s result for `tasks`, in order."""
    return [f"{VALIDATION_PREFIX}{t}.{s}" for t in tasks for s in ("auroc", "n")]


def validation_metrics(model: MultiTaskModel, data: EncodedSplit, tasks: Sequence[str], *,
                       batch_size: int) -> dict[str, float]:
    """Per-task AUROC and n on the validation split, for round selection: no interval (nothing
    is reported about it), NaN where undefined (no validation split, one class only)."""
    tasks = tuple(tasks)
    probs = predict(model, data, tasks, batch_size=batch_size)
    metrics: dict[str, float] = {}
    for task in tasks:
        y = data.labels[task].cpu().numpy().astype(np.int64)
        metrics[f"{VALIDATION_PREFIX}{task}.auroc"] = auroc(y, probs[task]) if y.size else math.nan
        metrics[f"{VALIDATION_PREFIX}{task}.n"] = float(y.size)
    return metrics
