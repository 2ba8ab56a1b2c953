"""What a synthetic note states, and where: the record behind the note-level ceiling.

The generator knows every fact it wrote into a note and the characters that say it. It keeps them
next to the note (`admission_facts`, `discharge_facts`: a JSON list of `[feature, start, end]`), so
the ceiling of a reader who sees only the first `max-length` tokens can be computed from exactly
the facts that lie within those tokens — nothing the note leaves unsaid, nothing cut off.

A feature is `key=value` (`acuity=2`, `condition=chf`, `social=housing`, `chest_pain=denied`):
categorical, so the ceiling's model needs no knowledge of how the note phrased it. Only facts that
bear on a label are recorded; filler and boilerplate are not. Models never read these columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FACTS_COLUMNS: dict[str, str] = {"admission": "admission_facts", "discharge": "discharge_facts"}
"""Note type -> the table column listing the facts its note states."""


@dataclass(frozen=True)
class StatedFact:
    """One fact a note states: `feature` (`key=value`) written at characters `start`:`end`."""

    feature: str
    start: int
    end: int

    def __post_init__(self) -> None:
        key, sep, value = self.feature.partition("=")
        if not (key and sep and value):
            raise ValueError(f"stated fact {self.feature!r}: expected 'key=value'")
        if not 0 <= self.start < self.end:
            raise ValueError(f"stated fact {self.feature!r}: span {self.start}:{self.end}; "
                             "expected 0 <= start < end")


def encode_facts(facts: Iterable[StatedFact]) -> str:
    """The column value: facts in the order they appear in the note."""
    ordered = sorted(facts, key=lambda f: (f.start, f.end, f.feature))
    return json.dumps([[f.feature, f.start, f.end] for f in ordered], separators=(",", ":"))


def decode_facts(text: str, *, where: str) -> list[StatedFact]:
    """Parse one column value; `where` (file, column and row) names the culprit in any error."""
    try:
        rows = json.loads(text)
    except (TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{where}: not a JSON list of [feature, start, end] ({error})") from None
    if not isinstance(rows, list):
        raise ValueError(f"{where}: expected a JSON list of [feature, start, end]")
    facts = []
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str)
                and all(isinstance(x, int) for x in row[1:])):
            raise ValueError(f"{where}: item {i} is {row!r}; expected [feature, start, end]")
        try:
            facts.append(StatedFact(row[0], row[1], row[2]))
        except ValueError as error:
            raise ValueError(f"{where}: item {i}: {error}") from None
    return facts


def features_within(facts: Sequence[StatedFact], char_limit: int | None) -> frozenset[str]:
    """The features a reader of the note's first `char_limit` characters has seen in full (every
    feature when `char_limit` is None: the note was not cut)."""
    if char_limit is None:
        return frozenset(f.feature for f in facts)
    return frozenset(f.feature for f in facts if f.end <= char_limit)
