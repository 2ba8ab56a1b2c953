"""Best-round selection: on validation only (loss by default, or AUROC), over the training sites."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from server.round_selection import (
    MIN_LABELS,
    RoundArrays,
    ThinCell,
    select_round,
    thin_cells,
    validation_loss,
    validation_score,
)

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
    selection = select_round(evaluation, sites=["a"], tasks=TASKS, num_rounds=3,
                             criterion="auroc")
    assert selection.round == 2
    assert selection.score_per_round == pytest.approx({1: 0.60, 2: 0.71, 3: 0.655})
    assert "validation AUROC" in selection.criterion


def test_external_sites_do_not_vote():
    evaluation = {1: {"a": _site(0.6, 0.6), "x": _site(0.9, 0.9)},
                  2: {"a": _site(0.7, 0.7), "x": _site(0.1, 0.1)}}
    assert select_round(evaluation, sites=["a"], tasks=TASKS, num_rounds=2,
                        criterion="auroc").round == 2


def test_ties_pick_the_earliest_round_and_no_validation_picks_the_last():
    tie = {1: {"a": _site(0.7, 0.7)}, 2: {"a": _site(0.7, 0.7)}}
    assert select_round(tie, sites=["a"], tasks=TASKS, num_rounds=2, criterion="auroc").round == 1
    none = {1: {"a": _site(math.nan, math.nan)}, 2: {}}
    for criterion in ("auroc", "loss"):
        selection = select_round(none, sites=["a"], tasks=TASKS, num_rounds=2, criterion=criterion)
        assert selection.round == 2 and selection.score_per_round == {1: None, 2: None}


def _counted(site: dict[str, float], task: str, n: float, positives: float) -> dict[str, float]:
    return site | {f"validation.{task}.n": n, f"validation.{task}.positives": positives}


@pytest.mark.parametrize(("n", "positives", "thin"), [
    (147, 1, True),  # one death: the case
    (147, MIN_LABELS - 1, True),
    (147, MIN_LABELS, False),
    (2 * MIN_LABELS, MIN_LABELS, False),
    (2 * MIN_LABELS - 1, MIN_LABELS, True),  # too few negatives
    (0, 0, False),  # no validation split: nothing to leave out
    (math.nan, math.nan, False),  # a run recorded before counts were sent
])
def test_a_cell_is_thin_below_ten_positives_or_negatives(n, positives, thin):
    per_site = {"a": _counted(_site(0.7, 0.7), "mortality", n, positives)}
    expected = [ThinCell("a", "mortality", int(positives), int(n - positives))] if thin else []
    assert thin_cells(per_site, ["a"], ["mortality"]) == expected


def test_thin_validation_cells_do_not_choose_the_round():
    """Site `a` holds one death in its validation split: its mortality AUROC (best in round 1)
    must not choose; `b`, with enough of both classes, does (best in round 2)."""
    def round_(a_mortality: float, b_mortality: float) -> dict:
        return {"a": _counted(_site(a_mortality, math.nan), "mortality", 147, 1),
                "b": _counted(_site(b_mortality, math.nan), "mortality", 200, 30)}

    evaluation = {1: round_(0.986, 0.60), 2: round_(0.50, 0.70)}
    selection = select_round(evaluation, sites=["a", "b"], tasks=TASKS, num_rounds=2,
                             criterion="auroc")
    assert selection.round == 2
    assert selection.score_per_round == pytest.approx({1: 0.60, 2: 0.70})
    assert selection.left_out == (ThinCell("a", "mortality", 1, 146),)
    assert selection.left_out[0].describe() == "a × mortality (1 positive, 146 negatives)"
    assert "fewer than 10 positives or negatives" in selection.criterion


def _lossy(loss: float, n: float, *, auroc: float = 0.5, test: float = 0.5) -> dict[str, float]:
    return _counted(_site(auroc, auroc, test=test), "mortality", n, 1) | {"validation.loss": loss}


def test_loss_is_the_validation_size_weighted_mean_over_sites():
    per_site = {"a": _lossy(0.60, 100), "b": _lossy(0.90, 300), "x": _lossy(0.01, 1000),
                "c": _lossy(math.nan, 50), "d": _lossy(0.2, 0)}  # undefined, no split: no vote
    assert validation_loss(per_site, ["a", "b", "c", "d"], TASKS) == pytest.approx(
        (0.60 * 100 + 0.90 * 300) / 400)
    assert validation_loss({"c": _lossy(math.nan, 50)}, ["c"], TASKS) is None


def test_loss_selection_picks_the_lowest_loss_whatever_test_and_auroc_say():
    """The default criterion: the lowest validation loss, even where validation AUROC (noisy on
    one death) and test prefer other rounds; thin cells are not left out of anything."""
    evaluation = {0: {"a": _lossy(0.30, 147)},  # round 0 is never a candidate
                  1: {"a": _lossy(0.70, 147, auroc=0.99, test=0.99)},
                  2: {"a": _lossy(0.64, 147, auroc=0.55, test=0.50)},
                  3: {"a": _lossy(0.66, 147, auroc=0.60, test=0.90)}}
    selection = select_round(evaluation, sites=["a"], tasks=TASKS, num_rounds=3)
    assert selection.round == 2
    assert selection.score_per_round == pytest.approx({1: 0.70, 2: 0.64, 3: 0.66})
    assert selection.by == "loss" and selection.left_out == ()
    assert selection.criterion.startswith("lowest validation loss")
    tie = {1: {"a": _lossy(0.5, 147)}, 2: {"a": _lossy(0.5, 147)}}
    assert select_round(tie, sites=["a"], tasks=TASKS, num_rounds=2).round == 1


def test_an_unknown_criterion_is_named():
    with pytest.raises(ValueError, match="round selection 'f1'; expected one of loss, auroc"):
        select_round({}, sites=["a"], tasks=TASKS, num_rounds=1, criterion="f1")


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
