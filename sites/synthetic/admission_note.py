"""The admission history and physical (H&P): what is known when the patient is admitted.

Sections are written in the style's order, each by one small writer. History sections (problem
list, surgeries, medications, allergies, social, functional and family history) come from the
patient's chart and are often copied verbatim from the patient's last H&P. Nothing here states the
stay's length, outcome or disposition; durations are written in words, never as `N days`.
"""

from __future__ import annotations

from collections.abc import Callable

import sites.synthetic.vocabulary as vocab
from sites.synthetic.chart import Chart, PatientRecord
from sites.synthetic.drugs import CONDITION_DRUGS, medication_line
from sites.synthetic.encounter_view import Encounter
from sites.synthetic.findings import (
    CONDITION_DETAIL,
    EXAM_SYSTEMS,
    EXTRA_EXAM,
    FINDINGS,
    IMAGING,
    NORMAL_CXR,
    PLAN_BY_DIAGNOSIS,
    ROS_SYSTEMS,
    SYMPTOMS,
)
from sites.synthetic.hpi import complaint_piece, unit_piece, write_hpi, write_symptoms
from sites.synthetic.labs import write_results
from sites.synthetic.note_builder import Note, Piece, Section
from sites.synthetic.note_parts import (
    age_piece,
    condition_piece,
    diagnosis_piece,
    filler_section,
    fit,
    function_piece,
    history_pieces,
    list_text,
    payer_piece,
    pcp_piece,
    sex_piece,
    write_list,
    write_social,
)
from sites.synthetic.wording import Words, capital

HISTORY_SECTIONS = ("pmh", "psh", "meds", "allergies", "social", "function", "family")
"""Sections drawn from the chart: copied forward from the patient's last H&P."""
DROP_ORDER = ("family", "psh", "attestation", "allergies", "imaging")
"""Sections left out, in order, while a note is over MAX_WORDS."""
_CARDIAC = ("heart_failure", "chest_pain", "syncope", "stroke")


def render_admission(encounter: Encounter, record: PatientRecord,
                     words: Words) -> tuple[Note, dict[str, Section]]:
    """The H&P and its sections by key (the discharge summary and the next H&P copy them)."""
    style = words.style
    written: dict[str, Section] = {}
    for key in style.admission_order:
        previous = record.sections.get(key)
        if (key in HISTORY_SECTIONS and previous is not None
                and words.mention(style.copy_forward_rate)):
            written[key] = previous
        else:
            section = Section(key, style.headers.get(key))
            _WRITERS[key](section, encounter, record.chart, words)
            written[key] = section
    note = fit(list(written.values()), words, DROP_ORDER,
               lambda n: filler_section(style, words, n))
    return note, written


def _header(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    style, icu = words.style, bool(encounter.facts["icu"])
    title = style.titles["icu" if icu else "floor"]
    states_unit = style.titles["icu"] != style.titles["floor"]
    section.fill(words.one(style.frames["header"]), {
        "title": Piece(title, (f"icu={'yes' if icu else 'no'}",) if states_unit else ()),
        "name": style.deid, "date": encounter.admitted.strftime(style.date_format),
        "pcp": pcp_piece(bool(encounter.facts["has_pcp"]), words)})


def _cc(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    stated = (diagnosis_piece(encounter.diagnosis, encounter.variant, words)
              if words.style.cc == "diagnosis" else complaint_piece(encounter, words))
    section.extend([Piece(capital(stated.text), stated.features)]).add(".")


def _pmh(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    if not chart.history:
        section.add(capital(words.style.none_history) + ".")
        return
    detailed = words.style.list_format != "commas"
    items = []
    for key in chart.history:
        item = condition_piece(key, chart, words)
        if detailed and words.mention(0.6):
            detail = CONDITION_DETAIL[key][chart.variant % len(CONDITION_DETAIL[key])]
            item = Piece(f"{item.text} - {detail}", item.features)
        items.append(item)
    write_list(section, items, words.style)


def _psh(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    section.add(words.typos(list_text(chart.surgeries, words.style)) if chart.surgeries
                else words.one(("None.", "No prior surgeries.")))


def _meds(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    lines = [medication_line(k, words.style, short=words.short()) for k in chart.home_meds]
    text = list_text(lines, words.style) if lines else "None."
    section.add(words.typos(text), f"meds={len(lines)}")


def _allergies(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    section.add(list_text(chart.allergies, words.style) if chart.allergies
                else words.one(("NKDA.", "No known drug allergies.")))


def _social(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    write_social(section, chart, words, full=True)


def _function(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    if section.header is None:
        section.add("At baseline the patient ")
    section.extend([function_piece(chart, words)]).add(".")


def _family(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    section.add(capital("; ".join(chart.family)) + ".")


def _ros(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    positives = encounter.positives
    if words.style.ros == "brief":
        section.add("Ten-point review of systems negative except as in the HPI. Specifically "
                    "denies ")
        negatives = [s for s in SYMPTOMS if s not in positives]
        write_symptoms(section, words.rng.sample(negatives, 3), "denied", words)
        section.add(".")
        return
    gap = " " if words.style.template == "narrative" else "\n"
    for i, (name, short, symptoms, other) in enumerate(ROS_SYSTEMS):
        section.add(("" if i == 0 else gap) + (short if words.short() else name) + ": ")
        found = [s for s in symptoms if s in positives]
        if found:
            section.add("(+) ")
            write_symptoms(section, found, "reported", words)
            section.add(". ")
        denied = [s for s in symptoms if s not in positives]
        if denied:
            section.add("Denies ")
            write_symptoms(section, denied, "denied", words)
            section.add(".")
        elif other:
            section.add(capital(other) + ".")


def _exam(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    gap = " " if words.style.template == "narrative" else "\n"
    section.add("Vitals: ").extend(encounter.vitals.pieces(words)).add(f".{gap}General: ")
    level = encounter.acuity_level
    section.add(capital(words.pick(vocab.ACUITY[level])), f"acuity={level}").add(".")
    findings = dict(encounter.findings)
    for key, name, plain, short in EXAM_SYSTEMS:
        section.add(f"{gap}{name}: ")
        if key in findings:
            finding = findings[key]
            section.add(words.pick(FINDINGS[finding]), f"exam={finding}").add(".")
        else:
            section.add(capital(short if words.short() else plain) + ".")
    if words.style.ros == "full":
        for name, plain, short in EXTRA_EXAM:
            section.add(f"{gap}{name}: " + capital(short if words.short() else plain) + ".")


def _labs(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    write_results(section, encounter.labs, words.style, words.short())


def _imaging(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    study, finding, phrasing = IMAGING.get(encounter.diagnosis, NORMAL_CXR)
    section.add(f"{study}: ").add(capital(words.pick(phrasing)), f"imaging={finding}").add(".")
    if encounter.diagnosis in _CARDIAC:
        section.add(" ECG: sinus rhythm, no acute ST changes.")


def _ap(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    style, facts, rng = words.style, encounter.facts, words.rng
    dx = encounter.diagnosis
    section.fill(words.one(style.frames["ap_open"]), {
        "age": age_piece(int(facts["age"]), words), "sex": sex_piece(str(facts["sex"]), words),
        "history": history_pieces(chart, words, 3),
        "dx": diagnosis_piece(dx, encounter.variant, words)})
    gap = " " if style.template == "narrative" else "\n"
    section.add(f"{gap}# ").extend([diagnosis_piece(dx, encounter.variant, words)]).add(": ")
    plan = PLAN_BY_DIAGNOSIS[dx]
    section.add(words.typos("; ".join(rng.sample(plan, rng.randint(2, len(plan))))) + ". ")
    section.extend([unit_piece(encounter, words)]).add(".")
    for key in chart.conditions[:5]:
        section.add(f"{gap}# ").extend([condition_piece(key, chart, words)]).add(": ")
        drugs = [d for d in CONDITION_DRUGS[key] if d in chart.home_meds]
        if drugs:
            lines = ", ".join(medication_line(d, style, short=True) for d in drugs)
            section.add(words.one(("continue ", "stable, continue ", "c/w ")) + lines + ".")
        else:
            section.add(words.one(("stable, monitor.", "no active issues, monitor.")))
    if dx in ("elective_surgery", "hip_fracture"):
        section.add(f"{gap}# Pre-op: consent obtained after discussing bleeding, infection, "
                    "blood clots, nerve injury and the need for further surgery; NPO after "
                    "midnight; type and screen; antibiotics on call to the OR.")
    section.add(f"{gap}# FEN/PPx: " + words.one(("diet as tolerated", "cardiac diet",
                                                "NPO for now")) + ", subcutaneous heparin.")
    section.add(f"{gap}# Code status: full (presumed). Contact: {chart.proxy}.")


def _preop(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    """The surgeons' pre-anesthesia check (ASA class from function and documented conditions)."""
    if encounter.diagnosis not in ("elective_surgery", "hip_fracture"):
        section.add("Surgical evaluation: no operative intervention indicated at this time; "
                    "will follow.")
        return
    asa = min(4, 1 + (chart.function_level >= 2) + (len(chart.conditions) >= 1)
              + (len(chart.conditions) >= 3))
    section.add("ASA class ").add(str(asa), f"asa={asa}")
    anticoagulated = any(d in chart.home_meds for d in ("apixaban", "clopidogrel"))
    section.add(". Airway: Mallampati II, full dentition. Last oral intake last evening. "
                f"Anticoagulation: {'held' if anticoagulated else 'none'}. Site marked. "
                "Consent signed and in the chart. Blood bank sample sent.")


def _payer(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    section.extend([payer_piece(str(encounter.facts["payer"]), words)]).add(".")


def _attestation(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    section.add(words.one(words.style.boilerplate))


_WRITERS: dict[str, Callable[[Section, Encounter, Chart, Words], None]] = {
    "header": _header, "cc": _cc, "hpi": write_hpi, "pmh": _pmh, "psh": _psh, "meds": _meds,
    "allergies": _allergies, "social": _social, "function": _function, "family": _family,
    "ros": _ros, "exam": _exam, "labs": _labs, "imaging": _imaging, "ap": _ap,
    "payer": _payer, "attestation": _attestation, "preop": _preop,
}
