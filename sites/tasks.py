"""The five ReMedE tasks, defined once for the generator, the importers, the client and the report.

Definitions follow Lang1 / ReMedE (arXiv 2511.13703) as summarised in the project's task reference:
each task reads one note type (the first tokens of it), has a fixed class list, and is scored by
AUROC (one-vs-rest macro for the multi-class tasks). Each task also carries its multiple-choice
question and readable options: Lang1 poses a task to a decoder that way and scores the answer
letters (client/letter_scoring.py). Raw quantities (length of stay in days, the Charlson score) are
binned here and nowhere else, so a generated site and an imported site cannot disagree about a bin
edge.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

NoteType = Literal["admission", "discharge"]

OPTION_LETTERS = "ABCDEFGH"
"""Letters that name a multiple-choice question's options, in class order."""


@dataclass(frozen=True)
class TaskSpec:
    """One prediction task: which note it reads, which table column holds its label, its classes."""

    name: str
    note: NoteType
    """Note type the task reads: `admission` (H&P) or `discharge`."""
    label_column: str
    """Column of the encounter table holding the class index (0..num_classes-1)."""
    class_names: tuple[str, ...]
    description: str
    question: str
    """The task posed as a question about the note, as Lang1 scores decoders: it asks, never
    answers, so it is the same for every encounter and cannot leak the label."""
    options: tuple[str, ...]
    """Readable answers, one per class in `class_names` order; lettered A, B, … in the prompt."""

    def __post_init__(self) -> None:
        if len(self.options) != len(self.class_names):
            raise ValueError(f"task `{self.name}`: {len(self.options)} `options` for "
                             f"{len(self.class_names)} classes; expected one option per class")
        if len(self.options) > len(OPTION_LETTERS):
            raise ValueError(f"task `{self.name}`: {len(self.options)} options; expected at "
                             f"most {len(OPTION_LETTERS)} (one letter each)")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def letters(self) -> tuple[str, ...]:
        """Answer letters, one per class: A, B, … ."""
        return tuple(OPTION_LETTERS[: self.num_classes])

    def multiple_choice(self) -> str:
        """The question and its lettered options, one per line (no answer cue)."""
        lines = [f"Question: {self.question}"]
        lines += [f"{letter}. {option}" for letter, option in zip(self.letters, self.options)]
        return "\n".join(lines)

    @property
    def is_binary(self) -> bool:
        return self.num_classes == 2

    @property
    def oracle_columns(self) -> tuple[str, ...]:
        """Columns with the generator's true label probability: one for a binary task (positive
        class), one per class otherwise. Real data has none of them."""
        if self.is_binary:
            return (f"p_{self.name}",)
        return tuple(f"p_{self.name}_{k}" for k in range(self.num_classes))


# Bin edges are inclusive upper bounds in whole days / Charlson points.
LOS_BINS: tuple[tuple[str, int | None], ...] = (("0-2", 2), ("3", 3), ("4-5", 5), (">5", None))
CCI_BINS: tuple[tuple[str, int | None], ...] = (
    ("0", 0),
    ("1-2", 2),
    ("3-4", 4),
    ("5-7", 7),
    (">7", None),
)


def _bin(value: float, bins: tuple[tuple[str, int | None], ...], what: str) -> int:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError(f"{what} is missing; expected a number >= 0")
    if value < 0:
        raise ValueError(f"{what} is {value}; expected a number >= 0")
    for index, (_, upper) in enumerate(bins):
        if upper is None or value <= upper:
            return index
    raise AssertionError("the last bin is open-ended")  # pragma: no cover


def los_class(days: float) -> int:
    """Length-of-stay class from days in hospital.

    Fractional days are floored first (a stay of 2.9 days is a "0-2" stay), matching how whole
    calendar days are counted by the paper's bins 0-2, 3, 4-5, >5.
    """
    if days is not None and not (isinstance(days, float) and math.isnan(days)) and days >= 0:
        days = math.floor(days)
    return _bin(days, LOS_BINS, "length of stay (days)")


def cci_class(score: int) -> int:
    """Comorbidity class from a Charlson Comorbidity Index: bins 0, 1-2, 3-4, 5-7, >7."""
    return _bin(score, CCI_BINS, "Charlson score")


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="readmission",
            note="discharge",
            label_column="readmission",
            class_names=("no", "yes"),
            description="readmitted for any cause within 30 days of discharge",
            question="Will the patient be readmitted to hospital for any cause within 30 days "
                     "of discharge?",
            options=("No", "Yes"),
        ),
        TaskSpec(
            name="mortality",
            note="admission",
            label_column="mortality",
            class_names=("no", "yes"),
            description="in-hospital death (discharge disposition 'expired')",
            question="Will the patient die during this hospital stay?",
            options=("No", "Yes"),
        ),
        TaskSpec(
            name="los",
            note="admission",
            label_column="los",
            class_names=tuple(name for name, _ in LOS_BINS),
            description="length of stay in days, binned 0-2, 3, 4-5, >5",
            question="How many days will the patient stay in hospital?",
            options=("0-2 days", "3 days", "4-5 days", "more than 5 days"),
        ),
        TaskSpec(
            name="comorbidity",
            note="admission",
            label_column="comorbidity",
            class_names=tuple(name for name, _ in CCI_BINS),
            description="Charlson Comorbidity Index of the encounter's ICD codes, binned",
            question="What is the patient's Charlson Comorbidity Index?",
            options=("0", "1-2", "3-4", "5-7", "more than 7"),
        ),
        TaskSpec(
            name="denial",
            note="admission",
            label_column="denial",
            class_names=("no", "yes"),
            description="insurance claim first denied, whatever the appeal outcome",
            question="Will the insurance claim for this hospital stay be denied?",
            options=("No", "Yes"),
        ),
    )
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)

NOTE_COLUMNS: dict[NoteType, str] = {"admission": "admission_note", "discharge": "discharge_note"}
"""Encounter-table column holding each note type's text."""

ID_COLUMNS: tuple[str, ...] = ("encounter_id", "patient_id")
SPLIT_COLUMN = "split"
SPLITS: tuple[str, ...] = ("train", "validation", "test")


def resolve_tasks(names: Iterable[str], *, where: str) -> tuple[str, ...]:
    """Validate a task list from a config; `where` names the file and key for the error."""
    names = tuple(names)
    if not names:
        raise ValueError(f"{where}: the task list is empty; expected some of {', '.join(TASK_NAMES)}")
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ValueError(
            f"{where}: unknown task {unknown[0]!r}; expected one of {', '.join(TASK_NAMES)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: task list {list(names)} names a task twice")
    return names
