"""One chart per patient: what the hospital's record says about a patient, drawn once and carried
from encounter to encounter.

The clinician's view of the latent factors is noisy (function and social circumstances are read
from frailty and social risk plus noise; a present condition is documented only with the style's
mention rate), but it is drawn once per patient, so a patient's problem list, home medications,
allergies and social history agree in every note. Later notes copy earlier sections forward,
often verbatim (typos included), as real charts do: `PatientRecord` keeps the sections last
written and the patient's earlier stays.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

import numpy as np

import sites.synthetic.charlson as charlson
from sites.synthetic.drugs import CONDITION_DRUGS
from sites.synthetic.note_builder import Section
from sites.synthetic.styles import NoteStyle

DISTRACTOR_RATES: dict[str, float] = {
    "htn": 0.45, "hld": 0.3, "gerd": 0.12, "afib": 0.12, "obesity": 0.15, "depression": 0.12,
    "hypothyroid": 0.08, "osa": 0.07}
"""Common non-Charlson conditions (noise a comorbidity model must ignore): rate before the age
factor (x1.5 from 65, x0.7 below)."""
_SURGERIES = ("appendectomy", "cholecystectomy", "inguinal hernia repair", "tonsillectomy",
              "cataract surgery", "carpal tunnel release", "hemorrhoidectomy")
_CONDITION_SURGERY = {"mi": "CABG", "pvd": "femoral-popliteal bypass", "cvd":
                      "carotid endarterectomy", "cancer": "tumor resection",
                      "renal": "AV fistula creation"}
_ALLERGIES = ("penicillin (rash)", "sulfa drugs (hives)", "codeine (nausea)",
              "lisinopril (cough)", "iodinated contrast (hives)", "latex")
_FAMILY = ("mother with hypertension", "father with coronary artery disease in his sixties",
           "sister with breast cancer", "brother with type 2 diabetes",
           "maternal grandmother with a stroke in her seventies", "paternal uncle with colon "
           "cancer", "no family history of early heart disease")
_JOBS = ("teacher", "construction worker", "nurse", "bus driver", "accountant", "cook",
         "warehouse worker", "office manager", "mechanic", "cleaner")
_TOBACCO = ("never smoker", "former smoker, quit years ago", "current smoker, one pack a day")


@dataclass(frozen=True)
class Chart:
    """What the record says about one patient; the same at every encounter."""

    variant: int
    """Fixes which alternative a phrasing takes (the same cancer, the same walking aid)."""
    history: tuple[str, ...]
    """Documented conditions in the chart's order: Charlson names and distractor keys."""
    surgeries: tuple[str, ...]
    home_meds: tuple[str, ...]
    """Drug keys of `sites.synthetic.drugs.DRUGS`."""
    allergies: tuple[str, ...]
    function_level: int
    """Perceived function, 0 (independent) to 3 (bedbound)."""
    social: tuple[str, ...]
    """Perceived social circumstances: keys of `sites.synthetic.vocabulary.SOCIAL`."""
    tobacco: str
    occupation: str
    home: str | None
    """Where the patient lives (None when homeless)."""
    drinks: Literal["none", "social", "heavy"]
    proxy: str
    """Health care proxy (label-free)."""
    family: tuple[str, ...]

    @property
    def conditions(self) -> tuple[str, ...]:
        """Documented Charlson conditions (the ones a comorbidity reader can use)."""
        return tuple(key for key in self.history if key in charlson.CONDITION_NAMES)


@dataclass
class PatientRecord:
    """A patient's chart, the history sections last written about them and their earlier stays
    (admission date and principal diagnosis)."""

    chart: Chart
    sections: dict[str, Section] = field(default_factory=dict)
    stays: list[tuple[date, str]] = field(default_factory=list)


def draw_chart(facts: Mapping[str, object], style: NoteStyle, rng: random.Random) -> Chart:
    """The chart of the patient of `facts` (any of their encounters: patient factors are shared)."""
    age, female = int(facts["age"]), facts["sex"] == "F"
    present = np.asarray(facts["present"], dtype=bool)
    conditions = [name for name, has in zip(charlson.CONDITION_NAMES, present) if has]
    history = [c for c in conditions if rng.random() < style.mention_rate]
    history += [d for d, rate in DISTRACTOR_RATES.items()
                if rng.random() < rate * (1.5 if age >= 65 else 0.7)]
    rng.shuffle(history)
    social_noisy = float(facts["social_risk"]) + rng.gauss(0.0, 0.6)
    social = _social(social_noisy, rng)
    function_level = sum(float(facts["frailty"]) + rng.gauss(0.0, 0.5) > edge
                         for edge in (0.2, 0.9, 1.5))
    return Chart(
        variant=rng.randrange(12),
        history=tuple(history),
        surgeries=_surgeries(history, age, female, rng),
        home_meds=_home_meds(history, age, female, float(facts["frailty"]), rng),
        allergies=tuple(rng.sample(_ALLERGIES, 1 + (rng.random() < 0.3)))
        if rng.random() < 0.3 else (),
        function_level=function_level,
        social=social,
        tobacco=("former smoker, quit years ago" if "copd" in history and rng.random() < 0.6
                 else rng.choices(_TOBACCO, (0.5, 0.3, 0.2 + 0.1 * max(social_noisy, 0)))[0]),
        occupation=("unemployed" if social_noisy > 1.9 else
                    f"retired {rng.choice(_JOBS)}" if age >= 67 else rng.choice(_JOBS)),
        home=None if "housing" in social else (
            "a nursing home" if function_level == 3 else "assisted living" if function_level == 2
            else rng.choice(("a house", "an apartment", "a house", "a senior apartment"))),
        drinks="heavy" if "alcohol" in social else rng.choice(("none", "none", "social")),
        proxy=rng.choice(("daughter", "son", "spouse", "sister", "not designated")),
        family=tuple(rng.sample(_FAMILY, rng.randint(1, 2))),
    )


def _social(noisy: float, rng: random.Random) -> tuple[str, ...]:
    """Social circumstances from the perceived social risk (as the notes used to write them)."""
    social: list[str] = []
    if noisy > 1.9:
        social.append("housing")
    if noisy > 1.2:
        social.append("substances" if rng.random() < 0.4 else "alcohol")
    elif noisy > 0.4:
        social.append("alone")
    else:
        social.append("supported")
    return tuple(social)


def _home_meds(history: list[str], age: int, female: bool, frailty: float,
               rng: random.Random) -> tuple[str, ...]:
    """Usual drugs of each documented condition (most of them), and a few common extras."""
    meds: list[str] = []
    for key in history:
        options = CONDITION_DRUGS[key]
        taken = [drug for drug in options if rng.random() < 0.75] or list(options[:1])
        meds += [drug for drug in taken if drug not in meds]
    extras = (("vitamin_d", 0.4 if age >= 65 else 0.1), ("acetaminophen", 0.3),
              ("senna", 0.25 if frailty > 0.8 else 0.05),
              ("tamsulosin", 0.3 if not female and age >= 60 else 0.0),
              ("alendronate", 0.2 if female and age >= 65 else 0.0))
    meds += [drug for drug, rate in extras if rng.random() < rate and drug not in meds]
    return tuple(meds)


def _surgeries(history: list[str], age: int, female: bool, rng: random.Random) -> tuple[str, ...]:
    done = [surgery for key, surgery in _CONDITION_SURGERY.items()
            if key in history and rng.random() < 0.4]
    pool = [s for s in _SURGERIES if age >= 60 or s != "cataract surgery"]
    pool += ["hysterectomy", "cesarean section"] if female else []
    done += rng.sample(pool, min(len(pool), int(rng.random() * 3 * min(age, 80) / 60)))
    return tuple(done)
