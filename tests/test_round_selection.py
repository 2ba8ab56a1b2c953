"""Best-round selection: validation AUROC only, over the training sites and tasks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from server.round_selection import RoundArrays, select_round, validation_score

TASKS = ("mortality", "los")


def _site(mortality: float, los: float, *, test: float = 0.5) -> dict[str, float]:
    return {"validation.mortality.auroc": mortality, "validation.los.auroc": los,
            "mortality.auroc": test, "los.auroc": test}


def test_score_is_the_mean_over_sites_and_tasks_ignoring_undefined():
    per_site = {"a": _site(0.6, 0.8), "b": _site(0.7, math.nan), "x": _site(0.1, 0.1)}
    assert validation_score(per_site, ["a", "b"], TASKS) == pytest.approx((0.6 + 0.8 + 0.7) / 3)
    assert validation_score({"a": _site(math.nan, math.nan)}, ["a"], TASKS) is None


def test_selection_follows_validation_not_test():
    evaluation = {
        0: {"a": _site(0.9, 0.9)},                      # round 0 is never a candidate
        1: {"a": _site(0.60, 0.60, test=0.99)},          # best on test: must not matter
        2: {"a": _site(0.70, 0.72, test=0.50)},
        3: {"a": _site(0.65, 0.66, test=0.90)},
    }
    selection = select_round(evaluation, sites=["a"], tasks=TASKS, num_rounds=3)
    assert selection.round == 2
    assert selection.score_per_round == pytest.approx({1: 0.60, 2: 0.71, 3: 0.655})
    assert "validation" in selection.criterion


def test_external_sites_do_not_vote():
    evaluation = {1: {"a": _site(0.6, 0.6), "x": _site(0.9, 0.9)},
                  2: {"a": _site(0.7, 0.7), "x": _site(0.1, 0.1)}}
    assert select_round(evaluation, sites=["a"], tasks=TASKS, num_rounds=2).round == 2


def test_ties_pick_the_earliest_round_and_no_validation_picks_the_last():
    tie = {1: {"a": _site(0.7, 0.7)}, 2: {"a": _site(0.7, 0.7)}}
    assert select_round(tie, sites=["a"], tasks=TASKS, num_rounds=2).round == 1
    none = {1: {"a": _site(math.nan, math.nan)}, 2: {}}
    selection = select_round(none, sites=["a"], tasks=TASKS, num_rounds=2)
    assert selection.round == 2 and selection.score_per_round == {1: None, 2: None}


def test_round_arrays_keeps_a_copy_per_round():
    kept = RoundArrays()
    record = ArrayRecord({"adapter.w": Array(np.zeros(2, dtype=np.float32))})
    assert kept(1, record) is None  # Flower's evaluate_fn contract: no centralized metrics
    record["adapter.w"] = Array(np.ones(2, dtype=np.float32))
    kept(2, record)
    np.testing.assert_array_equal(kept[1]["adapter.w"].numpy(), [0, 0])
    np.testing.assert_array_equal(kept[2]["adapter.w"].numpy(), [1, 1])
    with pytest.raises(KeyError, match="no global adapter kept for round 3"):
        kept[3]
