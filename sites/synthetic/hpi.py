"""The history of present illness: the presenting complaint, symptoms reported and denied, the
patient's recent admissions and, at hospitals that write one, the emergency department course.

Durations are written in words, never as `N days` (an admission note states no day counts).
"""

from __future__ import annotations

from collections.abc import Sequence

import sites.synthetic.vocabulary as vocab
from sites.synthetic.chart import Chart
from sites.synthetic.encounter_view import Encounter
from sites.synthetic.findings import CONDITION_DETAIL, DURATIONS, ED_TREATMENT, HPI_DETAIL, SYMPTOMS
from sites.synthetic.labs import result_pieces
from sites.synthetic.note_builder import Piece, Section
from sites.synthetic.note_parts import (
    age_piece,
    condition_piece,
    diagnosis_piece,
    history_pieces,
    prior_piece,
    sex_piece,
)
from sites.synthetic.wording import Words, capital

_HPI_COLOUR = ("Symptoms came on gradually and have been getting worse.",
               "The patient tried rest at home without relief.",
               "Family brought the patient in after noticing the change.",
               "No recent travel or sick contacts.",
               "The patient reports taking all medications as prescribed.",
               "Appetite has been poor and sleep interrupted.",
               "There was no clear trigger.")


def complaint_piece(encounter: Encounter, words: Words) -> Piece:
    dx = encounter.diagnosis
    return Piece(words.pick(vocab.COMPLAINTS[dx]), (f"complaint={dx}",))


def write_hpi(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    style, facts, rng = words.style, encounter.facts, words.rng
    complaint = complaint_piece(encounter, words)
    section.fill(words.one(style.frames["hpi_open"]), {
        "age": age_piece(int(facts["age"]), words), "sex": sex_piece(str(facts["sex"]), words),
        "history": history_pieces(chart, words, style.hpi_history),
        "complaint": complaint, "duration": _duration(complaint.text, words)})
    section.add(" " + words.one(("Reports ", "Endorses ", "Also notes ")))
    write_symptoms(section, encounter.positives, "reported", words)
    detail = HPI_DETAIL[encounter.diagnosis]
    colour = rng.sample(detail, rng.randint(2, len(detail))) + rng.sample(_HPI_COLOUR, 2)
    section.add(". " + words.typos(" ".join(colour)) + " ")
    if style.template in ("sectioned", "narrative", "clerking"):
        for key in chart.conditions:
            if words.mention(0.5):
                detail = CONDITION_DETAIL[key][chart.variant % len(CONDITION_DETAIL[key])]
                section.add("Of note, the patient's ").extend([condition_piece(key, chart, words)])
                section.add(f" ({detail}) has been stable recently. ")
    negatives = [s for s in SYMPTOMS if s not in encounter.positives]
    section.add(words.one(("Denies ", "No ", "Negative for ")))
    write_symptoms(section, rng.sample(negatives, rng.randint(2, 4)), "denied", words)
    section.add(".")
    if words.mention():
        section.add(" ").extend([prior_piece(encounter.prior_stated, words)]).add(".")
    if encounter.last_stay is not None and words.mention():
        when, dx = encounter.last_stay
        section.add(f" Last admitted here in {when.strftime('%B %Y')} with ")
        section.add(words.pick(vocab.DIAGNOSES[dx]), f"prior_diagnosis={dx}").add(".")
    if style.ed_course:
        _ed_course(section, encounter, words)


def _ed_course(section: Section, encounter: Encounter, words: Words) -> None:
    """What the emergency department saw and did, and where the patient goes (and why)."""
    style, level = words.style, encounter.acuity_level
    section.add(" Seen in ED: " if style.units == "uk" else " In the ED, the patient was ")
    section.add(words.pick(vocab.ACUITY[level]), f"acuity={level}").add("; ")
    section.extend(encounter.vitals.pieces(words))
    abnormal = [r for r in encounter.labs if r.flag != "normal"][:4]
    if abnormal:
        section.add(". Labs notable for ").extend(result_pieces(abnormal, style, True))
    section.add(f". The patient was {ED_TREATMENT[encounter.diagnosis]}. ")
    section.extend([unit_piece(encounter, words)]).add(" for ")
    section.extend([diagnosis_piece(encounter.diagnosis, encounter.variant, words)]).add(".")


def _duration(complaint: str, words: Words) -> str:
    """How long, with its lead-in; nothing when the complaint already says so."""
    if any(mark in complaint for mark in ("week", "days", "x3d", "wk", "/7", "day ", "OA", "osteoarthritis")):
        return ""
    duration = words.pick(DURATIONS)
    return (" for " if duration[0] in "abt" else " ") + duration


def write_symptoms(section: Section, symptoms: Sequence[str], state: str, words: Words) -> None:
    """Symptoms as a list, each stating `<symptom>=<state>` (reported or denied)."""
    for i, symptom in enumerate(symptoms):
        if i:
            section.add(" or " if state == "denied" and i == len(symptoms) - 1 else ", ")
        section.add(words.pick(SYMPTOMS[symptom]), f"{symptom}={state}")


def unit_piece(encounter: Encounter, words: Words) -> Piece:
    icu = bool(encounter.facts["icu"])
    return Piece(capital(words.pick(vocab.UNIT["icu" if icu else "floor"])),
                 (f"icu={'yes' if icu else 'no'}",))
