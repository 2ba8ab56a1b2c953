"""Render an encounter's admission (H&P) and discharge notes from its facts, in its site's style.

The clinician's view is noisy: acuity, function and social risk are described from the latent
factor plus noise, and each optional fact is written only with the style's mention rate, so even a
perfect reader of the notes stays below the oracle. Label-relevant facts come first (the model
reads the first tokens); boilerplate and filler come last. Each note is kept within
`MIN_WORDS`..`MAX_WORDS` words: too long, and the least useful sections are dropped; too short, and
label-free filler is appended. No label is ever written (see `sites.synthetic.vocabulary`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import sites.synthetic.vocabulary as vocab
from sites.synthetic.styles import NoteStyle

MIN_WORDS = 50
MAX_WORDS = 110
MAX_HISTORY_ITEMS = 7
# Sections dropped first when a note is too long.
_DROP_ORDER = ("boilerplate", "title", "meds", "function", "social", "insurance", "followup",
               "plan")
_SENTENCE_START = re.compile(r"(?:^|(?<=[.] ))[a-z]")
_DISTRACTOR_RATES = {"htn": 0.45, "hld": 0.3, "gerd": 0.12, "afib": 0.12, "obesity": 0.15,
                     "depression": 0.12, "hypothyroid": 0.08, "osa": 0.07}


@dataclass(frozen=True)
class Perception:
    """What the clinician perceives of an encounter (one draw shared by both notes)."""

    acuity_level: int
    function_level: int
    social: tuple[str, ...]
    vitals: str


def perceive(facts: Mapping[str, object], rng: random.Random) -> Perception:
    """Noisy descriptors of the latent acuity, frailty and social risk."""
    acuity = float(facts["acuity"])
    noisy = acuity + rng.gauss(0.0, 0.6)
    acuity_level = sum(noisy > edge for edge in (-0.6, 0.5, 1.4))
    function_level = sum(float(facts["frailty"]) + rng.gauss(0.0, 0.5) > edge
                         for edge in (0.2, 0.9, 1.5))
    social_noisy = float(facts["social_risk"]) + rng.gauss(0.0, 0.6)
    social: list[str] = []
    if social_noisy > 1.9:
        social.append("housing")
    if social_noisy > 1.2:
        social.append("substances" if rng.random() < 0.4 else "alcohol")
    elif social_noisy > 0.4:
        social.append("alone")
    else:
        social.append("supported")
    hr = round(82 + 13 * acuity + rng.gauss(0, 8))
    sbp = round(128 - 14 * acuity + rng.gauss(0, 10))
    spo2 = min(100, round(96 - 2 * acuity + rng.gauss(0, 1.5)))
    vitals = f"HR {hr}, BP {sbp}/{round(sbp * 0.6)}, SpO2 {spo2}%"
    return Perception(acuity_level, function_level, tuple(social), vitals)


def render_admission(facts: Mapping[str, object], seen: Perception, style: NoteStyle,
                     rng: random.Random) -> str:
    """The H&P note: what is known when the patient is admitted (no stay length, no outcome)."""
    words = _Words(style, rng)
    values = _common_values(facts, seen, words)
    sections = {
        "title": True, "presentation": True, "history": True, "complaint": words.mention(),
        "exam": words.mention(), "plan": words.mention(), "function": words.mention(),
        "social": words.mention(), "insurance": words.mention(),
    }
    values["unit"] = words.pick(vocab.UNIT["icu" if facts["icu"] else "floor"])
    values["acuity"] = words.pick(vocab.ACUITY[seen.acuity_level])
    values["payer"] = words.pick(vocab.PAYERS[str(facts["payer"])])
    values["complaint"] = words.pick(vocab.COMPLAINTS[str(facts["diagnosis"])])
    return _assemble(style, style.admission_order, sections, values, rng, title="title")


def render_discharge(facts: Mapping[str, object], seen: Perception, style: NoteStyle,
                     rng: random.Random) -> str:
    """The discharge note: the stay as it ended (never how, for a patient who died)."""
    words = _Words(style, rng)
    values = _common_values(facts, seen, words)
    disposition = str(facts["disposition"])
    sections = {
        "title": True, "summary": True, "history": True, "function": words.mention(),
        "social": words.mention(), "disposition": disposition != "expired" and words.mention(),
        "followup": disposition != "expired" and words.mention(), "meds": words.mention(),
    }
    complicated = float(facts["acuity"]) + rng.gauss(0, 0.8) > 1.0
    values["course"] = words.pick(vocab.COURSE[int(complicated)])
    values["days"] = str(facts["los_days"])
    if disposition != "expired":
        values["disposition"] = words.pick(vocab.DISPOSITIONS[disposition])
    values["followup"] = words.pick(vocab.FOLLOW_UP["pcp" if facts["has_pcp"] else "no_pcp"])
    prior = int(facts["prior_admissions"])
    values["prior"] = words.pick(vocab.PRIOR_ADMISSIONS[min(prior, 1)]).replace("{k}", str(prior))
    values["meds"] = str(3 + round(0.6 * float(facts["true_cci"]) + 0.05 * (int(facts["age"]) - 50))
                         + rng.randint(0, 3))
    return _assemble(style, style.discharge_order, sections, values, rng, title="discharge_title")


class _Words:
    """The style's choices: whether to mention a fact, and which phrasing (held-out, short or
    plain) to write it with."""

    def __init__(self, style: NoteStyle, rng: random.Random) -> None:
        self.style, self.rng = style, rng

    def mention(self) -> bool:
        return self.rng.random() < self.style.mention_rate

    def pick(self, phrasing: vocab.Phrasing) -> str:
        novel = self.style.novel_vocabulary_rate
        if novel and self.rng.random() < novel:
            return self.rng.choice(phrasing.external)
        if self.rng.random() < self.style.abbreviation_rate:
            return self.rng.choice(phrasing.short)
        return self.rng.choice(phrasing.plain)


def _common_values(facts: Mapping[str, object], seen: Perception, words: _Words) -> dict[str, str]:
    style, rng = words.style, words.rng
    history = [words.pick(vocab.CONDITIONS[c]) for c in str(facts["conditions"]).split(";")
               if c and rng.random() < style.mention_rate]
    history += [words.pick(vocab.DISTRACTORS[d]) for d, rate in _DISTRACTOR_RATES.items()
                if rng.random() < rate * (1.5 if int(facts["age"]) >= 65 else 0.7)]
    rng.shuffle(history)
    female, male = style.sex_words
    return {
        "name": style.deid,
        "date": date.fromisoformat(str(facts["admit_date"])).strftime(style.date_format),
        "age": str(facts["age"]),
        "sex": female if facts["sex"] == "F" else male,
        "dx": words.pick(vocab.DIAGNOSES[str(facts["diagnosis"])]),
        "conditions": ", ".join(history[:MAX_HISTORY_ITEMS]) or style.none_history,
        "vitals": seen.vitals,
        "function": words.pick(vocab.FUNCTION[seen.function_level]),
        "social": ", ".join(words.pick(vocab.SOCIAL[s]) for s in seen.social),
    }


def _assemble(style: NoteStyle, order: tuple[str, ...], include: dict[str, bool],
              values: dict[str, str], rng: random.Random, *, title: str) -> str:
    parts: dict[str, str] = {}
    for section in order:
        if not include.get(section):
            continue
        frame = rng.choice(style.frames[title if section == "title" else section])
        text = _capitalise_sentences(frame.format(**values))
        header = style.headers.get(section)
        parts[section] = f"{header}: {text}" if header else text
    parts["boilerplate"] = rng.choice(style.boilerplate)
    for section in _DROP_ORDER:
        if _count(_layout(style, parts, [])) <= MAX_WORDS:
            break
        parts.pop(section, None)
    fillers = list(style.filler)
    rng.shuffle(fillers)
    filler: list[str] = []
    while _count(_layout(style, parts, filler)) < MIN_WORDS:
        filler.append(fillers[len(filler) % len(fillers)])
    note = _layout(style, parts, filler)
    if _count(note) > MAX_WORDS:  # only with an extreme history list; cut at a word boundary
        note = " ".join(note.split()[:MAX_WORDS])
    if style.casing == "upper":
        return note.upper()
    return note.lower() if style.casing == "lower" else note


def _layout(style: NoteStyle, parts: Mapping[str, str], filler: list[str]) -> str:
    """Sections in order, filler before the boilerplate, joined the way the template writes."""
    lines = [text for section, text in parts.items() if section != "boilerplate"]
    if filler:
        lines.append(" ".join(filler))
    if "boilerplate" in parts:
        lines.append(parts["boilerplate"])
    if style.template == "narrative":
        return " ".join(lines)
    prefix = "- " if style.template == "bullets" else ""
    return "\n".join(prefix + line for line in lines)


def _capitalise_sentences(text: str) -> str:
    """Upper-case the first letter of each sentence (phrasings are stored in lower case)."""
    return _SENTENCE_START.sub(lambda m: m.group(0).upper(), text)


def _count(text: str) -> int:
    return len(text.split())
