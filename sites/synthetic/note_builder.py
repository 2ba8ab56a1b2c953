"""Sections of a note -> the note's text and the record of what it states where.

A section is a header and a body of pieces; a piece that states label-relevant facts carries their
features. Pieces are final text (typos already made) except for casing, which is applied to the
whole note at the end: our text is ASCII, so upper- or lower-casing keeps every offset. Offsets are
therefore counted once, while the note is joined, and always point into the final text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from string import Formatter

from sites.synthetic.stated_facts import StatedFact
from sites.synthetic.styles import NoteStyle
from sites.synthetic.wording import NEVER_WRITTEN


@dataclass(frozen=True)
class Piece:
    """Text of a note; `features` are the facts it states (`key=value`), if any."""

    text: str
    features: tuple[str, ...] = ()


@dataclass
class Section:
    """One section of a note: its key (the style's section name), its header and its body."""

    key: str
    header: str | None
    body: list[Piece] = field(default_factory=list)

    def add(self, text: str, *features: str) -> Section:
        """Append `text`, stating `features` (empty text is skipped; a stated fact needs text)."""
        if text:
            self.body.append(Piece(text, tuple(features)))
        elif features:
            raise ValueError(f"section {self.key!r}: features {features} stated by empty text")
        return self

    def extend(self, pieces: Sequence[Piece]) -> Section:
        self.body.extend(piece for piece in pieces if piece.text)
        return self

    def fill(self, frame: str, values: Mapping[str, str | Piece | Sequence[Piece]]) -> Section:
        """Append `frame` (a `str.format` template) with each placeholder's value: plain text,
        or pieces that state facts. The frame's first letter is upper-cased."""
        first = True
        for literal, name, _, _ in Formatter().parse(frame):
            pieces: list[Piece] = [Piece(literal)] if literal else []
            if name is not None:
                value = values[name]
                pieces += ([Piece(value)] if isinstance(value, str) else
                           [value] if isinstance(value, Piece) else list(value))
            for piece in pieces:
                if first and piece.text:
                    piece = Piece(piece.text[:1].upper() + piece.text[1:], piece.features)
                    first = False
                self.extend([piece])
        return self


@dataclass(frozen=True)
class Note:
    """A finished note and the facts it states, in order."""

    text: str
    facts: tuple[StatedFact, ...]

    @property
    def word_count(self) -> int:
        return len(self.text.split())


def assemble(sections: Sequence[Section], style: NoteStyle) -> Note:
    """Join `sections` the style's way (header, then the body on its own line when it has several
    lines) and record each stated fact's span in the final text."""
    parts: list[str] = []
    facts: list[StatedFact] = []
    position = 0
    for section in sections:
        if not section.body:
            continue
        if parts:
            parts.append(style.section_gap)
            position += len(style.section_gap)
        if section.header:
            multiline = any("\n" in piece.text for piece in section.body)
            head = f"{section.header}:" + ("\n" if multiline else " ")
            parts.append(head)
            position += len(head)
        for piece in section.body:
            end = position + len(piece.text)
            facts.extend(StatedFact(feature, position, end) for feature in piece.features)
            parts.append(piece.text)
            position = end
    text = "".join(parts)
    if style.casing == "upper":
        text = text.upper()
    elif style.casing == "lower":
        text = text.lower()
    if len(text) != position:  # casing changed a length: offsets would be wrong
        raise ValueError(f"style {style.name!r}: casing changed the note's length; "
                         "expected ASCII text")
    leak = NEVER_WRITTEN.search(text)
    if leak:
        raise ValueError(f"style {style.name!r}: a note states {leak.group(0)!r}; "
                         "expected no label word (see sites/synthetic/vocabulary.py)")
    return Note(text, tuple(sorted(facts, key=lambda f: (f.start, f.end, f.feature))))
