"""One encounter as its clinicians see it: acuity, vitals, labs, symptoms and findings, drawn
once and shared by the encounter's two notes.

The clinician's view is noisy: acuity is described from the latent factor plus noise, vitals and
labs are noisy readings of it, function and social circumstances come from the patient's chart
(drawn once, with noise), and each condition is documented only with the style's mention rate, so
even a perfect reader of the notes stays below the oracle. Both notes of an encounter share one
view (`Encounter`), and a patient's notes share one chart, so nothing contradicts. No label is
ever written (`sites.synthetic.notes`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from sites.synthetic.chart import PatientRecord
from sites.synthetic.findings import DIAGNOSIS_FINDINGS, POSITIVE_SYMPTOMS
from sites.synthetic.labs import Result, draw_labs
from sites.synthetic.note_builder import Piece
from sites.synthetic.wording import Words

_RESPIRATORY = ("pneumonia", "copd_exacerbation", "heart_failure")
_INFECTION = ("sepsis", "pneumonia", "cellulitis", "oncology")


@dataclass(frozen=True)
class Vitals:
    """Admission vital signs."""

    temperature: float
    heart_rate: int
    systolic: int
    diastolic: int
    respiratory_rate: int
    saturation: int

    def flags(self) -> dict[str, str]:
        """Each vital's flag, the fact its value states."""
        return {
            "temp": "high" if self.temperature >= 38.0 else "normal",
            "hr": "high" if self.heart_rate > 100 else "low" if self.heart_rate < 50 else "normal",
            "sbp": "low" if self.systolic < 100 else "high" if self.systolic > 160 else "normal",
            "rr": "high" if self.respiratory_rate > 22 else "normal",
            "spo2": "low" if self.saturation < 92 else "normal",
        }

    def pieces(self, words: Words) -> list[Piece]:
        """The vitals line, each value stating its flag."""
        flags, short = self.flags(), words.style.units == "uk" or words.short()
        oxygen = ("RA" if short else "room air") if self.saturation >= 92 else (
            "2L NC" if self.saturation >= 88 else "4L NC" if self.saturation >= 84 else "NRB")
        values = (("temp", f"T {self.temperature:.1f}", f"temperature {self.temperature:.1f}"),
                  ("hr", f"HR {self.heart_rate}", f"heart rate {self.heart_rate}"),
                  ("sbp", f"BP {self.systolic}/{self.diastolic}",
                   f"blood pressure {self.systolic}/{self.diastolic}"),
                  ("rr", f"RR {self.respiratory_rate}",
                   f"respiratory rate {self.respiratory_rate}"),
                  ("spo2", f"SpO2 {self.saturation}% on {oxygen}",
                   f"oxygen saturation {self.saturation}% on {oxygen}"))
        pieces: list[Piece] = []
        for i, (key, brief, plain) in enumerate(values):
            if i:
                pieces.append(Piece(", "))
            pieces.append(Piece(brief if short else plain, (f"{key}={flags[key]}",)))
        return pieces


@dataclass(frozen=True)
class Encounter:
    """One encounter as its clinicians see it (shared by its two notes)."""

    facts: Mapping[str, object]
    acuity_level: int
    vitals: Vitals
    labs: tuple[Result, ...]
    positives: tuple[str, ...]
    """Symptoms the patient reports."""
    findings: tuple[tuple[str, str], ...]
    """(exam system, finding) present on examination."""
    complicated: bool
    variant: int
    """Fixes which alternative the diagnosis phrasing takes in both notes."""
    prior_stated: int
    """Admissions in the past 6 months as the notes state them (the patient's usual count plus
    their earlier stays here within 6 months)."""
    last_stay: tuple[date, str] | None
    admitted: date
    discharged: date

    @property
    def diagnosis(self) -> str:
        return str(self.facts["diagnosis"])


def perceive(facts: Mapping[str, object], record: PatientRecord,
             rng: random.Random) -> Encounter:
    """The clinicians' noisy view of one encounter."""
    acuity = float(facts["acuity"])
    dx = str(facts["diagnosis"])
    acuity_level = sum(acuity + rng.gauss(0.0, 0.6) > edge for edge in (-0.6, 0.5, 1.4))
    g = rng.gauss
    vitals = Vitals(
        temperature=37.0 + 0.3 * acuity + (0.6 + 0.6 * rng.random()) * (dx in _INFECTION)
        + g(0, 0.35),
        heart_rate=round(82 + 13 * acuity + 8 * (dx in ("sepsis", "gi_bleed")) + g(0, 8)),
        systolic=(sbp := round(128 - 14 * acuity - 8 * (dx in ("sepsis", "gi_bleed"))
                               + g(0, 10))),
        diastolic=round(sbp * 0.6 + g(0, 4)),
        respiratory_rate=round(16 + 2.5 * acuity + 3 * (dx in _RESPIRATORY) + g(0, 2)),
        saturation=min(100, round(96 - 2 * acuity - 2.5 * (dx in _RESPIRATORY) + g(0, 1.5))),
    )
    conditions = frozenset(c for c in str(facts["conditions"]).split(";") if c)
    admitted = date.fromisoformat(str(facts["admit_date"]))
    recent = sum((admitted - when).days <= 183 for when, _ in record.stays)
    return Encounter(
        facts=facts, acuity_level=acuity_level, vitals=vitals,
        labs=draw_labs(facts, conditions, rng),
        positives=tuple(s for s in POSITIVE_SYMPTOMS[dx] if rng.random() < 0.8)
        or POSITIVE_SYMPTOMS[dx][:1],
        findings=tuple(f for f in DIAGNOSIS_FINDINGS.get(dx, ()) if rng.random() < 0.75),
        complicated=acuity + rng.gauss(0, 0.8) > 1.0,
        variant=rng.randrange(12),
        prior_stated=int(facts["prior_admissions"]) + recent,
        last_stay=record.stays[-1] if record.stays else None,
        admitted=admitted,
        discharged=admitted + timedelta(days=int(facts["los_days"])),
    )
