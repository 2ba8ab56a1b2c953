"""The console line a run prints after each round: elapsed, what is left, how the model does."""

from __future__ import annotations

import math

import pytest

from server.round_progress import RoundProgress, duration, progress_line, time_left
from strategies import RunLog


@pytest.mark.parametrize(("seconds", "text"), [
    (4.2, "4 s"), (89, "89 s"), (162, "2.7 min"), (5399, "90.0 min"), (4680, "78.0 min"),
    (5400, "1.5 h"),
])
def test_durations_read_in_the_unit_a_person_expects(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize(("rounds", "left", "expected"), [
    ([], 5, None),  # after round 0 only: no training round timed yet
    ([60.0], 4, 240.0),
    ([60.0, 120.0], 3, 270.0),  # the mean of the training rounds so far
    ([60.0], 0, 0.0),
])
def test_time_left_is_the_mean_training_round_times_the_rounds_to_go(rounds, left, expected):
    assert time_left(rounds, left) == expected


def test_round_zero_is_named_the_untrained_evaluation():
    line = progress_line(server_round=0, num_rounds=5, elapsed_s=162, left_s=None,
                         validation=0.5012, external=0.4987, validation_loss=1.0119)
    assert line == ("round 0 of 5 (the untrained model, evaluated only): 2.7 min elapsed, "
                    "time left known after round 1; validation loss 1.012, AUROC 0.501 (training "
                    "sites), external AUROC 0.499")


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, "round 2 of 5: 10 s elapsed, about 30 s left; validation loss 0.631, AUROC 0.712 "
         "(training sites), external AUROC 0.655"),
    ({"external": None, "validation": None, "validation_loss": None},
     "round 2 of 5: 10 s elapsed, about 30 s left; validation loss –, AUROC – (training sites)"),
    ({"skipped": True, "failures": 1},
     "round 2 of 5: 10 s elapsed, about 30 s left; validation loss 0.631, AUROC 0.712 (training "
     "sites), external AUROC 0.655; skipped: too few training sites replied; 1 site failed (see "
     "the report)"),
    ({"server_round": 5, "left_s": 0.0},
     "round 5 of 5: 10 s elapsed, done; validation loss 0.631, AUROC 0.712 (training sites), "
     "external AUROC 0.655"),
])
def test_progress_line(fields, expected):
    values = {"server_round": 2, "num_rounds": 5, "elapsed_s": 10.0, "left_s": 30.0,
              "validation": 0.712, "external": 0.655, "validation_loss": 0.6312, **fields}
    assert progress_line(**values) == expected


def test_each_round_is_timed_and_scored_from_the_run_log(caplog):
    clock = iter([0.0, 100.0, 160.0, 220.0, 400.0])  # start, made, round 0, round 1, round 2
    log = RunLog()
    log.evaluation[0] = {"a": {"validation.mortality.auroc": 0.5, "mortality.auroc": 0.6},
                         "ext": {"validation.mortality.auroc": math.nan, "mortality.auroc": 0.4}}
    log.evaluation[1] = {"a": {"validation.mortality.auroc": 0.7, "mortality.auroc": 0.8,
                               "validation.mortality.n": 40.0, "validation.loss": 0.64},
                         "ext": {"validation.mortality.auroc": math.nan, "mortality.auroc": 0.55}}
    log.evaluation[2] = log.evaluation[1]
    log.failures[2] = ["site ext: no reply"]
    started = next(clock)
    progress = RoundProgress(num_rounds=3, training_sites=("a",), external_sites=("ext",),
                             tasks=("mortality",), started=started, clock=lambda: next(clock))
    with caplog.at_level("INFO", logger="server.round_progress"):
        lines = [progress(r, log) for r in range(3)]
    assert lines[0].startswith("round 0 of 3 (the untrained model, evaluated only): 2.7 min "
                               "elapsed, time left known after round 1; validation loss –, AUROC "
                               "0.500")
    assert lines[1] == ("round 1 of 3: 3.7 min elapsed, about 2.0 min left; validation loss "
                        "0.640, AUROC 0.700 (training sites), external AUROC 0.550")
    assert lines[2].startswith("round 2 of 3: 6.7 min elapsed, about 2.0 min left;")  # (60+180)/2
    assert lines[2].endswith("; 1 site failed (see the report)")
    assert [r.getMessage() for r in caplog.records] == lines


@pytest.mark.parametrize(("criterion", "warned"), [("auroc", True), ("loss", False)])
def test_selecting_on_auroc_the_first_line_is_preceded_by_a_warning_naming_thin_cells(
        caplog, criterion, warned):
    """Under `loss` no cell is left out of the choice, so there is nothing to warn about."""
    log = RunLog()
    log.evaluation[0] = {"a": {"validation.mortality.auroc": 0.986, "validation.mortality.n": 147.0,
                               "validation.mortality.positives": 1.0, "validation.loss": 0.7}}
    log.evaluation[1] = log.evaluation[0]
    progress = RoundProgress(num_rounds=2, training_sites=("a",), external_sites=(),
                             tasks=("mortality",), started=0.0, clock=lambda: 1.0,
                             criterion=criterion)
    with caplog.at_level("INFO", logger="server.round_progress"):
        progress(0, log)
        progress(1, log)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == (["fewer than 10 positives or negatives in the validation split, left out "
                         "of round selection: a × mortality (1 positive, 146 negatives)"]
                        if warned else [])
    assert ("validation loss 0.700, AUROC – (training sites)"
            in caplog.records[-1].getMessage())
