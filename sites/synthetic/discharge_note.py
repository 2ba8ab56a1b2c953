"""The discharge summary: the stay as it ended (never how, for a patient who died).

Sections are written in the style's order; the history of present illness, past medical history
and social history are often copied verbatim from the encounter's H&P. A patient who died gets no
discharge medications, condition at discharge, disposition, follow-up or instructions, and no
therapist's disposition advice: the summary says nothing of how the stay ended. Stay length is
stated (admission and discharge dates, or a day count): readmission is the only task reading this
note.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sites.synthetic.vocabulary as vocab
from sites.synthetic.chart import Chart, PatientRecord
from sites.synthetic.course import (
    ACTIVITY,
    CLINICS,
    COMPLICATIONS,
    CONSULTANTS,
    COURSE_BY_DIAGNOSIS,
    DAILY_CARE,
    GENERAL_INSTRUCTIONS,
    INSTRUCTIONS,
    PROCEDURE_DETAIL,
    PROCEDURES,
    TRANSITIONS,
    UNCOMPLICATED,
)
from sites.synthetic.drugs import (
    CONDITION_DRUGS,
    NEW_AT_DISCHARGE,
    STOPPED_AT_DISCHARGE,
    medication_line,
)
from sites.synthetic.encounter_view import Encounter
from sites.synthetic.labs import discharge_value, result_pieces
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
    prior_piece,
    sex_piece,
    write_list,
    write_social,
)
from sites.synthetic.wording import Words, capital

ONLY_IF_ALIVE = ("dc_meds", "condition", "disposition", "followup", "instructions",
                 "transitions")
COPIED = {"dc_hpi": "hpi", "dc_pmh": "pmh", "dc_social": "social", "dc_exam": "exam"}
"""Discharge section -> the H&P section it may copy verbatim."""
DROP_ORDER = ("instructions", "consults", "transitions", "dc_pmh", "results", "dc_attestation",
              "dc_hpi")


def render_discharge(encounter: Encounter, record: PatientRecord, words: Words,
                     admission: Mapping[str, Section]) -> Note:
    """The discharge summary; `admission` holds the encounter's H&P sections by key."""
    style, chart = words.style, record.chart
    alive = encounter.facts["disposition"] != "expired"
    sections: list[Section] = []
    for key in style.discharge_order:
        if key in ONLY_IF_ALIVE and not alive:
            continue
        source = admission.get(COPIED.get(key, ""))
        section = Section(key, style.headers.get(key))
        if source is not None and (key == "dc_exam" or words.mention(style.copy_forward_rate)):
            section.extend(source.body)
        elif key == "results":
            _results(section, encounter, words, admission)
        else:
            _WRITERS[key](section, encounter, chart, words)
        sections.append(section)
    return fit(sections, words, DROP_ORDER, lambda n: filler_section(style, words, n))


def _header(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    style, days = words.style, int(encounter.facts["los_days"])
    section.fill(words.one(style.frames["dc_header"]), {
        "title": style.titles["discharge"], "name": style.deid,
        "admitted": encounter.admitted.strftime(style.date_format),
        "discharged": Piece(encounter.discharged.strftime(style.date_format),
                            (f"los_days={days}",)),
        "days": Piece(str(days), (f"los_days={days}",))})


def _diagnoses(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    section.add("Principal: ").extend([diagnosis_piece(encounter.diagnosis, encounter.variant,
                                                       words)])
    section.add(". Secondary: ").extend(history_pieces(chart, words)).add(".")


def _hpi(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    facts = encounter.facts
    section.fill(words.one(words.style.frames["course_open"]), {
        "age": age_piece(int(facts["age"]), words), "sex": sex_piece(str(facts["sex"]), words),
        "history": history_pieces(chart, words, words.style.hpi_history),
        "dx": Piece(words.pick(vocab.COMPLAINTS[encounter.diagnosis]),
                    (f"complaint={encounter.diagnosis}",))})


def _pmh(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    if chart.history:
        write_list(section, [condition_piece(k, chart, words) for k in chart.history],
                   words.style)
    else:
        section.add(capital(words.style.none_history) + ".")


def _social(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    write_social(section, chart, words, full=False)


def _course(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    style, facts = words.style, encounter.facts
    days, disposition = int(facts["los_days"]), str(facts["disposition"])
    section.fill(words.one(style.frames["course_open"]), {
        "age": age_piece(int(facts["age"]), words), "sex": sex_piece(str(facts["sex"]), words),
        "history": history_pieces(chart, words, 3),
        "dx": diagnosis_piece(encounter.diagnosis, encounter.variant, words)})
    if words.mention():
        section.add(" ").extend([prior_piece(encounter.prior_stated, words)]).add(".")
    if facts["icu"]:
        unit = words.pick(vocab.UNIT["icu"]).replace("admit ", "admitted ", 1)
        section.add(" Initially ").add(unit, "icu=yes")
        section.add(" for close monitoring, then to the floor once stable.")
    elif words.mention(0.5):
        section.add(" ").add(capital(words.pick(vocab.UNIT["floor"])), "icu=no").add(".")
    for sentence in COURSE_BY_DIAGNOSIS[encounter.diagnosis]:
        section.add(" " + words.typos(words.pick(sentence)))
    rng = words.rng
    section.add(" " + words.typos(" ".join(rng.sample(DAILY_CARE, min(len(DAILY_CARE),
                                                                    1 + days // 2)))))
    complication = COMPLICATIONS[encounter.variant % len(COMPLICATIONS)]
    course = "complicated" if encounter.complicated else "uncomplicated"
    section.add(" ").add(words.pick(complication if encounter.complicated else UNCOMPLICATED),
                         f"course={course}")
    if "housing" in chart.social or "substances" in chart.social:
        key = "housing" if "housing" in chart.social else "substances"
        section.add(" Social work consulted (")
        section.add(words.pick(vocab.SOCIAL[key], chart.variant), f"social={key}")
        section.add("), resources provided.")
    if disposition != "expired" and words.mention(style.therapy_rate):
        section.add(" Physical therapy recommended discharge to ")
        section.add(words.pick(vocab.DISPOSITIONS[disposition]), f"disposition={disposition}")
        section.add(".")
    if words.mention(0.5):
        section.add(" Hospital stay of ").add(f"{days} day{'s' if days > 1 else ''}",
                                              f"los_days={days}").add(".")
    gap = " " if style.template == "narrative" else "\n"
    for key in chart.conditions[:4]:
        section.add(f"{gap}# ").extend([condition_piece(key, chart, words)]).add(": ")
        drugs = [d for d in CONDITION_DRUGS[key] if d in chart.home_meds]
        section.add(("continued " + ", ".join(medication_line(d, style, short=True)
                                              for d in drugs)) if drugs else "stable")
        section.add(".")


def _procedures(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    phrasing = PROCEDURES.get(encounter.diagnosis)
    if phrasing is None:
        section.add("None.")
        return
    section.add(capital(words.pick(phrasing, encounter.variant)),
                f"procedure={encounter.diagnosis}").add(".")
    detail = PROCEDURE_DETAIL.get(encounter.diagnosis)
    if detail:
        section.add(" " + detail)


def _consults(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    section.add(capital(f"{CONSULTANTS[encounter.diagnosis]}, physical therapy, nutrition."))


def _results(section: Section, encounter: Encounter, words: Words,
             admission: Mapping[str, Section]) -> None:
    """Admission labs (often the H&P's table copied whole) and imaging, then the last values of
    the abnormal tests."""
    style = words.style
    abnormal = [r for r in encounter.labs if r.flag != "normal"]
    gap = " " if style.template == "narrative" else "\n"
    if "labs" in admission and words.mention(min(1.0, style.copy_forward_rate + 0.2)):
        section.add("Admission labs:" + gap).extend(admission["labs"].body)
        if "imaging" in admission:
            section.add(gap).extend(admission["imaging"].body)
    elif abnormal:
        section.add("On admission: ").extend(result_pieces(abnormal, style, True)).add(".")
    else:
        section.add("Admission labs unremarkable.")
    if abnormal:
        last = [discharge_value(r, worse=encounter.complicated and r.test == "creatinine",
                                rng=words.rng) for r in abnormal[:4]]
        section.add(gap + "Most recent: ")
        section.extend(result_pieces(last, style, True, suffix="_discharge")).add(".")


def _meds(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    stopped = [k for k in STOPPED_AT_DISCHARGE.get(encounter.diagnosis, ()) if k in
               chart.home_meds]
    new = [k for k in NEW_AT_DISCHARGE[encounter.diagnosis] if k not in chart.home_meds]
    keep = [k for k in chart.home_meds if k not in stopped]
    short = words.short()
    lines = [medication_line(k, words.style, short=short) for k in keep]
    lines += [medication_line(k, words.style, short=short) + " (new)" for k in new]
    text = list_text(lines, words.style) if lines else "None."
    section.add(words.typos(text), f"meds={len(lines)}")
    if stopped:
        names = ", ".join(medication_line(k, words.style, short=True) for k in stopped)
        section.add(f"\nStopped: {names}.")


def _condition(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    section.add("Mental status: clear and coherent. Level of consciousness: alert and "
                "interactive. Activity status: ")
    section.extend([function_piece(chart, words)]).add(".")
    section.add(" Discharge exam: afebrile, vital signs stable. " + words.one((
        "General: no distress. Lungs: clear. Heart: regular. Extremities: warm, no edema.",
        "Gen: NAD. CV: RRR. Resp: CTAB. Abd: soft. Ext: WWP.")))


def _transitions(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    items = [*TRANSITIONS.get(encounter.diagnosis, ()), "recheck a basic metabolic panel at "
             "the first visit", "reconcile medications at the first visit",
             f"code status full; contact {chart.proxy}"]
    section.add(list_text([capital(item) for item in items], words.style))


def _disposition(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    disposition = str(encounter.facts["disposition"])
    section.add(capital(words.pick(vocab.DISPOSITIONS[disposition])),
                f"disposition={disposition}").add(".")


def _followup(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    has_pcp = bool(encounter.facts["has_pcp"])
    section.add(capital(words.pick(vocab.FOLLOW_UP["pcp" if has_pcp else "no_pcp"])),
                f"pcp={'yes' if has_pcp else 'no'}")
    section.add(f". {capital(CLINICS[encounter.diagnosis])}.")


def _instructions(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    section.add(words.typos(f"{GENERAL_INSTRUCTIONS} {INSTRUCTIONS[encounter.diagnosis]}"))
    section.add(" " + words.one(ACTIVITY))


def _payer(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    section.extend([payer_piece(str(encounter.facts["payer"]), words)]).add(".")


def _attestation(section: Section, encounter: Encounter, chart: Chart, words: Words) -> None:
    section.add(words.one(words.style.boilerplate))


_WRITERS: dict[str, Callable[[Section, Encounter, Chart, Words], None]] = {
    "dc_header": _header, "dc_diagnoses": _diagnoses, "dc_hpi": _hpi, "dc_pmh": _pmh,
    "dc_social": _social, "course": _course, "procedures": _procedures, "consults": _consults,
    "dc_meds": _meds, "condition": _condition, "transitions": _transitions,
    "disposition": _disposition, "followup": _followup, "instructions": _instructions,
    "dc_payer": _payer, "dc_attestation": _attestation,
}
