"""client.evaluate: ECE as defined, small bins withheld at the site, lists always 10 long."""

from __future__ import annotations

import math

import numpy as np
import pytest

from client.evaluate import calibration_metrics, reliability, suppressed_bins
from strategies.exchange import MIN_BIN_COUNT, NUM_BINS


def binary(p1: np.ndarray) -> np.ndarray:
    return np.column_stack([1 - p1, p1])


def calibrated_split(per_bin: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Per bin b: `per_bin` encounters at P(1) = (b + 0.5) / 10, of which exactly that share are
    positive — a perfectly calibrated model."""
    y, p1 = [], []
    for b in range(NUM_BINS):
        p = (b + 0.5) / NUM_BINS
        positives = round(p * per_bin)
        assert positives == p * per_bin  # the construction is exact for per_bin = 20
        y += [1] * positives + [0] * (per_bin - positives)
        p1 += [p] * per_bin
    return np.array(y), binary(np.array(p1))


def test_perfectly_calibrated_model_has_zero_ece() -> None:
    y, probs = calibrated_split()
    result = reliability(y, probs)
    assert result.ece == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(result.confidence, result.frequency)
    assert result.count == [20.0] * NUM_BINS


def test_ece_of_an_overconfident_model_matches_the_hand_computed_value() -> None:
    # 20 encounters at P(1) = 0.9 with 12 positives (rate 0.6), 30 at P(1) = 0.1 with 6 positives
    # (rate 0.2): ECE = 20/50 · |0.9 − 0.6| + 30/50 · |0.1 − 0.2| = 0.12 + 0.06 = 0.18.
    p1 = np.array([0.9] * 20 + [0.1] * 30)
    y = np.array([1] * 12 + [0] * 8 + [1] * 6 + [0] * 24)
    result = reliability(y, binary(p1))
    assert result.ece == pytest.approx(0.18)
    assert result.confidence[9] == pytest.approx(0.9) and result.frequency[9] == pytest.approx(0.6)
    assert result.confidence[1] == pytest.approx(0.1) and result.frequency[1] == pytest.approx(0.2)
    assert result.count == [0, 30, 0, 0, 0, 0, 0, 0, 0, 20]
    assert all(math.isnan(result.confidence[b]) for b in range(2, 9))  # empty bins


def test_bins_with_few_encounters_report_no_confidence_or_frequency() -> None:
    # 40 encounters in bin 1, 3 in bin 7 (one of them positive) and 9 in bin 9: the bins of 3 and 9
    # would show a handful of encounters' probabilities and labels
    p1 = np.array([0.15] * 40 + [0.72, 0.74, 0.78] + [0.95] * 9)
    y = np.array([0] * 34 + [1] * 6 + [1, 0, 0] + [1] * 9)
    result = reliability(y, binary(p1))
    assert result.count[7] == 3 and result.count[9] == 9  # counts stay
    for b in (7, 9):
        assert math.isnan(result.confidence[b]) and math.isnan(result.frequency[b])
    assert result.frequency[1] == pytest.approx(6 / 40)
    assert not math.isnan(result.ece)  # the two withheld bins pool 12 >= 10 encounters


def test_a_lone_small_bin_is_pooled_so_subtraction_reveals_no_encounter() -> None:
    # One encounter in bin 9 beside two large bins: publishing the others and the split's ECE and
    # prevalence would give its label and |p − y| back by subtraction, so the smallest other bin
    # is withheld with it.
    p1 = np.array([0.15] * 40 + [0.55] * 25 + [0.97])
    y = np.array([0] * 34 + [1] * 6 + [1] * 14 + [0] * 11 + [1])
    result = reliability(y, binary(p1))
    assert math.isnan(result.frequency[9]) and math.isnan(result.frequency[5])
    assert result.frequency[1] == pytest.approx(6 / 40)
    assert result.count == [0, 40, 0, 0, 0, 25, 0, 0, 0, 1]


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([0, 40, 0, 0, 0, 0, 0, 0, 0, 20], []),
        ([0, 40, 0, 12, 0, 0, 0, 0, 0, 1], [3, 9]),
        ([0, 40, 0, 0, 4, 0, 0, 0, 7, 0], [4, 8]),
        ([5, 3, 0, 0, 0, 0, 0, 0, 0, 0], [0, 1]),  # a split under 10 encounters: everything
    ],
)
def test_suppressed_bins_pool_at_least_the_minimum(counts: list[int], expected: list[int]) -> None:
    hidden = suppressed_bins(np.array(counts, dtype=float), MIN_BIN_COUNT)
    assert np.flatnonzero(hidden).tolist() == expected


def test_multiclass_uses_top_label_confidence_against_accuracy() -> None:
    # 20 encounters whose top label (class 2, p = 0.62) is right 10 times; 20 whose top label
    # (class 0, p = 0.45) is right 18 times: bins 6 and 4.
    probs = np.array([[0.18, 0.20, 0.62]] * 20 + [[0.45, 0.30, 0.25]] * 20)
    y = np.array([2] * 10 + [1] * 10 + [0] * 18 + [2] * 2)
    result = reliability(y, probs)
    assert result.count[6] == 20 and result.count[4] == 20
    assert result.confidence[6] == pytest.approx(0.62) and result.frequency[6] == pytest.approx(0.5)
    assert result.confidence[4] == pytest.approx(0.45) and result.frequency[4] == pytest.approx(0.9)
    assert result.ece == pytest.approx(0.5 * 0.12 + 0.5 * 0.45)


@pytest.mark.parametrize("n", [0, 1, 5, 9, 10, 300])
@pytest.mark.parametrize("k", [2, 4])
def test_lists_always_have_ten_floats(n: int, k: int) -> None:
    rng = np.random.default_rng(n)
    probs = rng.dirichlet(np.ones(k), size=n)
    y = rng.integers(0, k, size=n)
    metrics = calibration_metrics("los", y, probs)
    assert list(metrics) == ["los.ece", "los.reliability_confidence", "los.reliability_frequency",
                             "los.reliability_count"]
    for key in list(metrics)[1:]:
        assert len(metrics[key]) == NUM_BINS and all(type(v) is float for v in metrics[key])
    assert sum(metrics["los.reliability_count"]) == n
    assert type(metrics["los.ece"]) is float
    assert math.isnan(metrics["los.ece"]) == (n < MIN_BIN_COUNT)


def test_empty_split_reports_nan_and_zero_counts() -> None:
    result = reliability(np.zeros(0, int), np.zeros((0, 2)))
    assert math.isnan(result.ece)
    assert all(math.isnan(v) for v in result.confidence + result.frequency)
    assert result.count == [0.0] * NUM_BINS


def test_probability_one_lands_in_the_last_bin() -> None:
    result = reliability(np.ones(10, int), binary(np.ones(10)))
    assert result.count[-1] == 10 and result.frequency[-1] == 1.0 and result.ece == 0.0
