"""The task definitions: bin edges, class lists, oracle column names and task-list validation."""

from __future__ import annotations

import math

import pytest

from sites.tasks import NOTE_COLUMNS, TASK_NAMES, TASKS, cci_class, los_class, resolve_tasks


@pytest.mark.parametrize(
    ("days", "expected"),
    [(0, 0), (1, 0), (2, 0), (2.9, 0), (3, 1), (3.99, 1), (4, 2), (5, 2), (5.5, 2), (6, 3),
     (30, 3), (365.0, 3)],
)
def test_los_bins_at_every_edge(days: float, expected: int) -> None:
    assert los_class(days) == expected


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0, 0), (1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (7, 3), (8, 4), (20, 4)],
)
def test_cci_bins_at_every_edge(score: int, expected: int) -> None:
    assert cci_class(score) == expected


@pytest.mark.parametrize("function", [los_class, cci_class])
@pytest.mark.parametrize("bad", [-1, -0.5, math.nan, None])
def test_bins_reject_negative_or_missing(function, bad) -> None:
    with pytest.raises(ValueError, match="expected a number >= 0"):
        function(bad)


def test_task_table_matches_the_reference() -> None:
    assert TASK_NAMES == ("readmission", "mortality", "los", "comorbidity", "denial")
    assert {t: TASKS[t].note for t in TASK_NAMES} == {
        "readmission": "discharge", "mortality": "admission", "los": "admission",
        "comorbidity": "admission", "denial": "admission"}
    assert [TASKS[t].num_classes for t in TASK_NAMES] == [2, 2, 4, 5, 2]
    assert TASKS["los"].class_names == ("0-2", "3", "4-5", ">5")
    assert TASKS["comorbidity"].class_names == ("0", "1-2", "3-4", "5-7", ">7")
    assert set(NOTE_COLUMNS.values()) == {"admission_note", "discharge_note"}


def test_oracle_columns() -> None:
    assert TASKS["mortality"].oracle_columns == ("p_mortality",)
    assert TASKS["los"].oracle_columns == tuple(f"p_los_{k}" for k in range(4))
    assert TASKS["comorbidity"].oracle_columns == tuple(f"p_comorbidity_{k}" for k in range(5))


def test_resolve_tasks_accepts_a_subset_in_order() -> None:
    assert resolve_tasks(["denial", "los"], where="x.yaml: `tasks`") == ("denial", "los")


@pytest.mark.parametrize(
    ("names", "match"),
    [
        ([], r"^x\.yaml: `tasks`: the task list is empty; expected some of readmission"),
        (["readmission", "mortalty"], r"unknown task 'mortalty'; expected one of readmission"),
        (["los", "los"], r"names a task twice"),
    ],
)
def test_resolve_tasks_errors(names: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_tasks(names, where="x.yaml: `tasks`")
