"""Pieces both notes write the same way: demographics, the problem list, vitals, function, social
circumstances, payer and primary care, lists, and fitting a note into its word range.

Each piece carries the facts it states, so wherever a style puts it, the record of what the note
says where stays exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sites.synthetic.vocabulary as vocab
from sites.synthetic.chart import Chart
from sites.synthetic.note_builder import Note, Piece, Section, assemble
from sites.synthetic.styles import NoteStyle
from sites.synthetic.wording import Words, capital

MIN_WORDS = 300
MAX_WORDS = 1200


def age_piece(age: int, words: Words) -> Piece:
    return Piece(str(age), (f"age_band={age // 10 * 10}s",))


def sex_piece(sex: str, words: Words) -> Piece:
    female, male = words.style.sex_words
    return Piece(female if sex == "F" else male, (f"sex={sex}",))


def condition_piece(key: str, chart: Chart, words: Words) -> Piece:
    """A documented condition; only Charlson conditions are facts (distractors bear on no
    label)."""
    if key in vocab.CONDITIONS:
        return Piece(words.typos(words.pick(vocab.CONDITIONS[key], chart.variant)),
                     (f"condition={key}",))
    return Piece(words.typos(words.pick(vocab.DISTRACTORS[key], chart.variant)))


def history_pieces(chart: Chart, words: Words, limit: int | None = None) -> list[Piece]:
    """The first `limit` documented conditions as one comma-joined run, or the style's
    no-history phrase."""
    keys = chart.history[:limit] if limit is not None else chart.history
    if not keys:
        return [Piece(words.style.none_history)]
    pieces: list[Piece] = []
    for i, key in enumerate(keys):
        if i:
            pieces.append(Piece(" and " if i == len(keys) - 1 else ", "))
        pieces.append(condition_piece(key, chart, words))
    return pieces


def prior_piece(count: int, words: Words) -> Piece:
    """Admissions in the past 6 months, as the chart states them."""
    text = words.pick(vocab.PRIOR_ADMISSIONS[min(count, 1)]).replace("{k}", str(count))
    if count == 1:
        text = text.replace("admissions", "admission").replace("admits", "admit")
    return Piece(capital(text), (f"prior_admissions={count}",))


def diagnosis_piece(diagnosis: str, variant: int, words: Words) -> Piece:
    return Piece(words.pick(vocab.DIAGNOSES[diagnosis], variant), (f"diagnosis={diagnosis}",))


def function_piece(chart: Chart, words: Words) -> Piece:
    level = chart.function_level
    return Piece(words.typos(words.pick(vocab.FUNCTION[level], chart.variant)),
                 (f"function={level}",))


def social_pieces(chart: Chart, words: Words) -> list[Piece]:
    pieces: list[Piece] = []
    for i, key in enumerate(chart.social):
        if i:
            pieces.append(Piece("; "))
        pieces.append(Piece(words.typos(words.pick(vocab.SOCIAL[key], chart.variant)),
                            (f"social={key}",)))
    return pieces


def write_social(section: Section, chart: Chart, words: Words, *, full: bool) -> None:
    """Social history: the perceived circumstances, where the patient lives, alcohol and drugs
    (stated even when denied), and in full also tobacco, work and health care proxy."""
    pieces = social_pieces(chart, words)
    section.extend([Piece(capital(pieces[0].text), pieces[0].features), *pieces[1:]])
    if chart.home is not None:
        section.add(". ").add(f"Lives in {chart.home}", "housing=stable")
    if chart.drinks != "heavy":
        section.add(". ")
        if chart.drinks == "none":
            section.add(words.one(("Denies alcohol use", "No EtOH")), "alcohol=denied")
        else:
            section.add(words.one(("Drinks socially", "Social EtOH")), "alcohol=social")
    if "substances" not in chart.social:
        section.add(", ").add(words.one(("no illicit drug use", "no illicits")), "drugs=denied")
    section.add(".")
    if full:
        section.add(words.typos(f" {capital(chart.tobacco)}. {capital(chart.occupation)}. "
                                f"Health care proxy: {chart.proxy}."))


def payer_piece(payer: str, words: Words) -> Piece:
    return Piece(words.pick(vocab.PAYERS[payer]), (f"payer={payer}",))


def pcp_piece(has_pcp: bool, words: Words) -> Piece:
    """Primary care as a header field: a name, or none on file."""
    style = words.style
    if has_pcp:
        return Piece(f"Dr. {style.deid}", ("pcp=yes",))
    options = ("not registered with a GP", "none") if style.units == "uk" else (
        "none", "no PCP on file")
    return Piece(words.one(options), ("pcp=no",))


def write_list(section: Section, items: Sequence[Piece], style: NoteStyle) -> None:
    """Items as the style lists them: numbered or dashed lines, or one comma-separated run."""
    for i, item in enumerate(items):
        if style.list_format == "commas":
            section.extend([Piece(", " if i else ""), item])
        else:
            bullet = f"{i + 1}. " if style.list_format == "numbered" else "- "
            item = Piece(capital(item.text), item.features)
            section.extend([Piece(("\n" if i else "") + bullet), item])
    if style.list_format == "commas" and items:
        section.add(".")


def list_text(lines: Sequence[str], style: NoteStyle) -> str:
    """Lines as one text in the style's list format (for lists stated as one fact)."""
    if style.list_format == "commas":
        return ", ".join(lines) + "."
    if style.list_format == "numbered":
        return "\n".join(f"{i + 1}. {capital(line)}" for i, line in enumerate(lines))
    return "\n".join(f"- {capital(line)}" for line in lines)


def fit(sections: list[Section], words: Words, drop_order: Sequence[str],
        make_filler: Callable[[int], Section]) -> Note:
    """The note within MIN_WORDS..MAX_WORDS: sections in `drop_order` are left out while it is
    too long; label-free filler is appended while it is too short."""
    kept = list(sections)
    note = assemble(kept, words.style)
    for key in drop_order:
        if note.word_count <= MAX_WORDS:
            break
        kept = [s for s in kept if s.key != key]
        note = assemble(kept, words.style)
    sentences = 0
    while note.word_count < MIN_WORDS:
        sentences += max(2, (MIN_WORDS - note.word_count) // 5)
        note = assemble([*kept, make_filler(sentences)], words.style)
    return note


def filler_section(style: NoteStyle, words: Words, sentences: int) -> Section:
    """`sentences` label-free sentences from the style's filler, then its boilerplate."""
    pool = list(style.filler)
    words.rng.shuffle(pool)
    text = " ".join(pool[i % len(pool)] for i in range(sentences))
    return Section("addendum", None).add(f"{text} {words.one(style.boilerplate)}")
