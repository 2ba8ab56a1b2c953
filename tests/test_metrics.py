"""client.evaluate and client.evaluate: AUROC as sklearn computes it, the bootstrap, stable keys."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from client.data import encode_site
from client.evaluate import (
    auroc,
    batched_auroc,
    bootstrap_ci,
    evaluate_split,
    positives,
    predict,
    validation_metrics,
)
from client.model import build_model, load_tokenizer
from strategies.exchange import metric_keys, validation_keys
from tests.model_settings import model_settings
from tests.tiny_models import keyword_table, with_stated_facts

TASKS = ("readmission", "mortality", "los", "comorbidity", "denial")


def scored(n: int, k: int, *, seed: int = 0, signal: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax probabilities that carry some signal about them."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) + signal * np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


def test_binary_auroc_equals_sklearn_with_ties() -> None:
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.2, 0.9])
    probs = np.column_stack([1 - p1, p1])
    assert auroc(y, probs) == pytest.approx(roc_auc_score(y, p1))


def test_multiclass_auroc_equals_sklearn_ovr_macro() -> None:
    y, probs = scored(200, 4)
    expected = roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert auroc(y, probs) == pytest.approx(expected)


def test_multiclass_auroc_averages_the_classes_present() -> None:
    y, probs = scored(200, 5)
    y = np.where(y == 4, 0, y)  # class 4 never occurs: sklearn's ovr would raise
    per_class = [roc_auc_score(y == c, probs[:, c]) for c in range(4)]
    assert auroc(y, probs) == pytest.approx(np.mean(per_class))


def test_auroc_is_nan_with_a_single_class() -> None:
    assert math.isnan(auroc(np.zeros(5, int), np.full((5, 2), 0.5)))


def test_fast_bootstrap_auroc_equals_sklearn() -> None:
    y, probs = scored(60, 2, seed=3)
    rows = np.random.default_rng(0).integers(0, 60, size=(20, 60))
    fast = batched_auroc(y[rows] == 1, np.round(probs[rows, 1], 2))  # rounding makes ties
    slow = [roc_auc_score(y[r] == 1, np.round(probs[r, 1], 2)) for r in rows]
    np.testing.assert_allclose(fast, slow)


@pytest.mark.parametrize("k", [2, 4])
def test_bootstrap_ci_contains_the_estimate_and_narrows_with_n(k: int) -> None:
    widths = []
    for n in (100, 1000):
        y, probs = scored(n, k, seed=n)
        low, high = bootstrap_ci(y, probs, seed=0)
        assert low < auroc(y, probs) < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2
    assert bootstrap_ci(y, probs, seed=0) == bootstrap_ci(y, probs, seed=0)


def test_bootstrap_ci_survives_a_rare_class() -> None:
    y, probs = scored(150, 2, seed=1)
    y[:] = 0
    y[:3] = 1  # 2 % prevalence, like mortality: plain resamples would often have no positive
    low, high = bootstrap_ci(y, probs, n_resamples=1000, seed=0)
    assert 0.0 <= low <= high <= 1.0
    assert all(math.isnan(v) for v in bootstrap_ci(np.zeros(5, int), probs[:5], seed=0))


@pytest.fixture(scope="module")
def tiny_setup(tiny_encoder: Path):
    settings = model_settings(base=str(tiny_encoder), max_length=32, tasks=TASKS)
    table = keyword_table(48)
    return build_model(settings, device=torch.device("cpu")), load_tokenizer(settings), table


def with_oracle(table):
    table = table.copy()
    rng = np.random.default_rng(0)
    for task in ("readmission", "mortality", "denial"):
        table[f"p_{task}"] = rng.uniform(size=len(table))
    for task, k in (("los", 4), ("comorbidity", 5)):
        p = rng.dirichlet(np.ones(k), size=len(table))
        for c in range(k):
            table[f"p_{task}_{c}"] = p[:, c]
    return table


def test_evaluate_split_keys_do_not_depend_on_the_data(tiny_setup) -> None:
    model, tokenizer, table = tiny_setup
    single_class = table.assign(mortality=0)
    results, encoded = {}, {}
    for name, df in (("plain", table), ("oracle", with_oracle(table)), ("single", single_class),
                     ("facts", with_stated_facts(with_oracle(table)))):
        test = encode_site(df, tokenizer, TASKS, max_length=32)["test"]
        results[name] = evaluate_split(model, test, TASKS, batch_size=5, seed=0)
        encoded[name] = test
    empty = encode_site(table, tokenizer, TASKS, max_length=32)["validation"]
    results["empty"] = evaluate_split(model, empty, TASKS, batch_size=5, seed=0)
    for metrics in results.values():
        assert list(metrics) == metric_keys(TASKS)
        for key, value in metrics.items():
            if ".reliability_" in key:  # Flower zips list metrics across sites: always 10 long
                assert len(value) == 10 and all(isinstance(v, float) for v in value)
            else:
                assert isinstance(value, float)
    assert math.isnan(results["plain"]["mortality.oracle_auroc"])
    assert not math.isnan(results["oracle"]["los.oracle_auroc"])
    assert math.isnan(results["oracle"]["los.note_ceiling_auroc"])  # no facts: no note ceiling
    facts = encoded["facts"]
    assert results["facts"]["los.note_ceiling_auroc"] == auroc(facts.labels["los"].numpy(),
                                                               facts.note_ceiling["los"])
    assert results["facts"]["los.oracle_auroc"] == results["oracle"]["los.oracle_auroc"]
    assert math.isnan(results["single"]["mortality.auroc"])
    assert results["single"]["mortality.prevalence"] == 0.0
    assert results["plain"]["mortality.n"] == 12.0 and results["empty"]["mortality.n"] == 0.0
    assert results["single"]["mortality.positives"] == 0.0
    assert results["empty"]["mortality.positives"] == 0.0
    assert results["plain"]["loss"] > 0 and math.isnan(results["empty"]["loss"])
    assert math.isnan(results["empty"]["mortality.ece"])
    assert results["empty"]["mortality.reliability_count"] == [0.0] * 10
    assert sum(results["plain"]["los.reliability_count"]) == 12.0


@pytest.mark.parametrize(("task", "labels", "expected"), [
    ("mortality", [0, 0, 1, 0, 1], 2.0),  # binary: the positive class
    ("mortality", [0, 0, 0], 0.0),
    ("mortality", [], 0.0),
    ("los", [0, 0, 1, 1, 1, 3], 1.0),  # multi-class: the rarest class present
    ("comorbidity", [2, 2, 2], 3.0),  # one class only: AUROC is undefined anyway
])
def test_positives_count_what_an_auroc_rests_on(task, labels, expected) -> None:
    assert positives(task, np.array(labels, dtype=np.int64)) == expected


def test_validation_loss_is_the_mean_cross_entropy_over_tasks(tiny_setup) -> None:
    """Round selection's default score: each task's mean -log p(true class), averaged over the
    tasks — the test split's `loss` computed the same way on the validation split."""
    model, tokenizer, table = tiny_setup
    splits = encode_site(table, tokenizer, TASKS, max_length=32)
    test = splits["test"]
    probs = predict(model, test, TASKS, batch_size=4)
    expected = np.mean([-np.log(probs[t][np.arange(test.size), test.labels[t].numpy()]).mean()
                        for t in TASKS])
    metrics = validation_metrics(model, test, TASKS, batch_size=3)
    assert metrics["validation.loss"] == pytest.approx(expected, rel=1e-5)
    assert metrics["validation.loss"] == pytest.approx(
        evaluate_split(model, test, TASKS, batch_size=3, seed=0, n_resamples=0)["loss"], rel=1e-6)
    assert list(metrics) == validation_keys(TASKS)
    assert math.isnan(validation_metrics(model, test.subset([]), TASKS, batch_size=3)[
        "validation.loss"])


def test_predict_keeps_row_order_whatever_the_batch_size(tiny_setup) -> None:
    model, tokenizer, table = tiny_setup
    train = encode_site(table, tokenizer, TASKS, max_length=32)["train"]
    one = predict(model, train, TASKS, batch_size=1)
    many = predict(model, train, TASKS, batch_size=7)
    for task in TASKS:
        np.testing.assert_allclose(many[task], one[task], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(one[task].sum(axis=1), 1.0, rtol=1e-6)
