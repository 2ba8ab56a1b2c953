"""Charlson conditions: who has them, which get coded, and the exact distribution of the score.

A patient's conditions are latent truth (the clinician may mention them in a note); the comorbidity
label is the Charlson index of the *coded* conditions, and a site codes each present condition only
with some probability (its coding practice: under-coding lowers the label without changing the
patient). Because coding draws are independent, the distribution of the coded score is a sum of
weighted Bernoullis, computed exactly by dynamic programming: that is the oracle for the comorbidity
task.

Conditions sharing a `group` are one hierarchy (diabetes without / with complications, mild / severe
liver disease, solid tumour / metastatic tumour): a patient has at most one of each group, as the
Quan/Charlson algorithms count only the more severe one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sites.tasks import CCI_BINS, cci_class


@dataclass(frozen=True)
class Condition:
    """One Charlson condition with its weight and how its prevalence depends on the patient."""

    name: str
    weight: int
    """Charlson weight (1, 2, 3 or 6)."""
    base_logit: float
    """Log-odds of having it at age 65 with average frailty."""
    age_slope: float
    """Log-odds per decade of age above 65."""
    frailty_slope: float
    """Log-odds per standard deviation of frailty."""
    coding_factor: float = 1.0
    """Multiplies the site's coding rate: conditions coders often miss have < 1."""
    group: str | None = None
    """Hierarchy group: at most one condition of a group is present."""


CONDITIONS: tuple[Condition, ...] = (
    Condition("mi", 1, -2.5, 0.35, 0.3),
    Condition("chf", 1, -2.1, 0.45, 0.5),
    Condition("pvd", 1, -2.9, 0.35, 0.35),
    Condition("cvd", 1, -2.7, 0.4, 0.35),
    Condition("dementia", 1, -3.4, 0.9, 0.7, coding_factor=0.85),
    Condition("copd", 1, -2.0, 0.25, 0.4),
    Condition("rheumatic", 1, -3.6, 0.1, 0.2, coding_factor=0.8),
    Condition("peptic_ulcer", 1, -3.7, 0.1, 0.2, coding_factor=0.75),
    Condition("liver_mild", 1, -3.3, -0.1, 0.2, group="liver"),
    Condition("diabetes", 1, -1.7, 0.15, 0.25, group="diabetes"),
    Condition("diabetes_complicated", 2, -2.6, 0.2, 0.45, group="diabetes"),
    Condition("hemiplegia", 2, -4.4, 0.2, 0.5, coding_factor=0.8),
    Condition("renal", 2, -2.2, 0.4, 0.5),
    Condition("cancer", 2, -2.7, 0.3, 0.2, group="cancer"),
    Condition("liver_severe", 3, -4.4, -0.1, 0.35, group="liver"),
    Condition("metastatic", 6, -3.4, 0.2, 0.4, group="cancer"),
    Condition("aids", 6, -5.5, -0.5, 0.3),
)
CONDITION_NAMES: tuple[str, ...] = tuple(c.name for c in CONDITIONS)
WEIGHTS = np.array([c.weight for c in CONDITIONS], dtype=np.int64)
_SCORE_CLASS = np.array([cci_class(s) for s in range(int(WEIGHTS.sum()) + 1)])


def draw_conditions(
    rng: np.random.Generator, logit_shift: np.ndarray, age: np.ndarray, frailty: np.ndarray
) -> np.ndarray:
    """Present conditions, bool [N, C]. `logit_shift` [N, C] adds site and diagnosis effects."""
    decades = (age - 65.0) / 10.0
    logits = np.stack(
        [c.base_logit + c.age_slope * decades + c.frailty_slope * frailty for c in CONDITIONS],
        axis=1,
    ) + logit_shift
    present = rng.random(logits.shape) < 1.0 / (1.0 + np.exp(-logits))
    for group in {c.group for c in CONDITIONS if c.group}:
        # Keep only the most severe condition of a hierarchy (the later one in CONDITIONS).
        members = [i for i, c in enumerate(CONDITIONS) if c.group == group]
        for lower, higher in zip(members, members[1:]):
            present[:, lower] &= ~present[:, higher]
    return present


def coding_probabilities(present: np.ndarray, coding_rate: float,
                         spurious_rate: float = 0.0) -> np.ndarray:
    """Probability each condition is coded [N, C]: the site's rate times the condition's coding
    factor when present, `spurious_rate` when absent."""
    factors = np.array([c.coding_factor for c in CONDITIONS])
    return np.where(present, np.clip(coding_rate * factors, 0.0, 1.0), spurious_rate)


def coded_score(rng: np.random.Generator, coding_prob: np.ndarray) -> np.ndarray:
    """Draw which conditions get coded and return the Charlson score of the coded ones [N]."""
    coded = rng.random(coding_prob.shape) < coding_prob
    return coded.astype(np.int64) @ WEIGHTS


def cci_class_probabilities(coding_prob: np.ndarray) -> np.ndarray:
    """Exact P(comorbidity class = k) [N, K] given each condition's coding probability [N, C].

    The coded score is a sum of independent weighted Bernoullis; its distribution is built by
    adding one condition at a time (dynamic programming over scores), then binned.
    """
    n = coding_prob.shape[0]
    dist = np.zeros((n, int(WEIGHTS.sum()) + 1))
    dist[:, 0] = 1.0
    for j, weight in enumerate(WEIGHTS):
        q = coding_prob[:, j : j + 1]
        shifted = np.zeros_like(dist)
        shifted[:, weight:] = dist[:, :-weight]
        dist = dist * (1.0 - q) + shifted * q
    classes = np.zeros((n, len(CCI_BINS)))
    for k in range(len(CCI_BINS)):
        classes[:, k] = dist[:, _SCORE_CLASS == k].sum(axis=1)
    return classes


def true_score(present: np.ndarray) -> np.ndarray:
    """Charlson score of the conditions the patient really has (what perfect coding would give)."""
    return present.astype(np.int64) @ WEIGHTS
