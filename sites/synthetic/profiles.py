"""Site profiles: the knobs that make one synthetic hospital differ from another.

Each knob is one kind of distribution shift between hospitals, so an experiment can say which shift
it studies:

- covariate (`Population`): who comes in (age, sex, payer and diagnosis mix, frailty, acuity, social
  risk, comorbidity burden);
- label (`Prevalence`): how common each outcome is, via the site intercept of each logistic model;
- concept (`Concept`): how the same patient maps to an outcome (payer-specific denial rules,
  discharge practice);
- coding practice (`Coding`): how completely present conditions are ICD-coded, which moves the
  comorbidity label without changing the patient;
- style (`sites.synthetic.styles.NoteStyle`): how the notes are written.

The four training hospitals differ mildly among themselves; `external_system` is a different health
system: an older population with another payer and diagnosis mix, higher prevalences, its own denial
rules, and a note style and vocabulary that no training hospital uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sites.synthetic.styles import STYLES, NoteStyle

PAYERS: tuple[str, ...] = ("medicare", "medicare_advantage", "medicaid", "commercial", "self_pay")
DIAGNOSES: tuple[str, ...] = (
    "heart_failure", "pneumonia", "copd_exacerbation", "sepsis", "gi_bleed", "stroke",
    "chest_pain", "syncope", "cellulitis", "elective_surgery", "hip_fracture", "oncology",
)


@dataclass(frozen=True)
class Population:
    """Covariate knobs: the mix of patients a site admits."""

    age_mean: float
    age_sd: float
    female_share: float
    payer_under_65: Mapping[str, float]
    """Payer shares for patients under 65 (normalised; keys from PAYERS)."""
    payer_65_plus: Mapping[str, float]
    diagnosis_mix: Mapping[str, float]
    """Relative weight of each principal diagnosis group (normalised; keys from DIAGNOSES)."""
    frailty_shift: float = 0.0
    """Added to the standard-normal frailty factor."""
    acuity_shift: float = 0.0
    social_shift: float = 0.0
    condition_shift: float = 0.0
    """Log-odds added to every Charlson condition's prevalence."""
    encounters_per_patient: float = 1.25
    """Mean encounters per patient (1 + Poisson), so splits by patient matter."""


@dataclass(frozen=True)
class Prevalence:
    """Label knobs: each logistic model's site intercept is solved to hit these on average."""

    readmission: float
    mortality: float
    denial: float
    los_mean_days: float
    """Mean length of stay; the median lands near 3-4 days."""


@dataclass(frozen=True)
class Concept:
    """Concept knobs: how a patient's facts map to outcomes at this site."""

    denial_payer: Mapping[str, float] = field(default_factory=lambda: {
        "medicare": 0.0, "medicare_advantage": 0.5, "medicaid": 0.5, "commercial": 0.3,
        "self_pay": 1.0,
    })
    """Log-odds of a first denial per payer (the payers' rules)."""
    denial_low_acuity: float = 0.9
    """Log-odds per SD of *low* acuity: medical-necessity denials of stays that look elective."""
    readmission_social: float = 0.5
    """Log-odds of readmission per SD of social risk (housing, substance use, living alone)."""
    readmission_frailty: float = 0.5
    """Log-odds of readmission per SD of frailty."""
    readmission_prior: float = 0.45
    """Log-odds of readmission per log(1 + admissions in the past 6 months)."""
    readmission_snf: float = 0.3
    """Log-odds of readmission after discharge to a skilled nursing facility."""
    icu_intercept: float = -2.2
    """Log-odds of an ICU admission at average acuity (the site's ICU bed policy)."""
    mortality_icu: float = 0.6
    """Log-odds of in-hospital death of an ICU admission, beyond its acuity."""
    los_icu: float = 0.55
    """Log length-of-stay multiplier of an ICU admission."""


@dataclass(frozen=True)
class Coding:
    """Coding-practice knob."""

    rate: float
    """Probability that a present Charlson condition is ICD-coded (before per-condition factors)."""
    spurious_rate: float = 0.01
    """Probability that an absent condition is coded anyway (rule-out and copied-forward codes)."""


@dataclass(frozen=True)
class SiteProfile:
    """Everything that defines one kind of synthetic hospital."""

    name: str
    description: str
    population: Population
    prevalence: Prevalence
    concept: Concept
    coding: Coding
    style: NoteStyle


_MEDICARE_AGE = {"medicare": 0.62, "medicare_advantage": 0.25, "medicaid": 0.05,
                 "commercial": 0.07, "self_pay": 0.01}

PROFILES: dict[str, SiteProfile] = {
    profile.name: profile
    for profile in (
        SiteProfile(
            name="academic",
            description="tertiary academic medical centre: sicker referrals, oncology, "
                        "thorough coding",
            population=Population(
                age_mean=61, age_sd=16, female_share=0.5,
                payer_under_65={"medicaid": 0.25, "commercial": 0.65, "self_pay": 0.05,
                                "medicare": 0.05},
                payer_65_plus=_MEDICARE_AGE,
                diagnosis_mix={"heart_failure": 10, "pneumonia": 9, "copd_exacerbation": 6,
                               "sepsis": 12, "gi_bleed": 7, "stroke": 9, "chest_pain": 8,
                               "syncope": 5, "cellulitis": 5, "elective_surgery": 8,
                               "hip_fracture": 4, "oncology": 17},
                acuity_shift=0.2, condition_shift=0.1,
            ),
            prevalence=Prevalence(readmission=0.125, mortality=0.025, denial=0.08,
                                  los_mean_days=4.6),
            concept=Concept(),
            coding=Coding(rate=0.93),
            style=STYLES["academic"],
        ),
        SiteProfile(
            name="community",
            description="community hospital: older, Medicare-heavy, lower acuity, "
                        "some under-coding",
            population=Population(
                age_mean=67, age_sd=15, female_share=0.55,
                payer_under_65={"medicaid": 0.25, "commercial": 0.62, "self_pay": 0.08,
                                "medicare": 0.05},
                payer_65_plus=_MEDICARE_AGE,
                diagnosis_mix={"heart_failure": 12, "pneumonia": 13, "copd_exacerbation": 10,
                               "sepsis": 8, "gi_bleed": 6, "stroke": 6, "chest_pain": 14,
                               "syncope": 9, "cellulitis": 9, "elective_surgery": 4,
                               "hip_fracture": 6, "oncology": 3},
                acuity_shift=-0.15, frailty_shift=0.1,
            ),
            prevalence=Prevalence(readmission=0.11, mortality=0.02, denial=0.10,
                                  los_mean_days=4.1),
            concept=Concept(),
            coding=Coding(rate=0.82),
            style=STYLES["community"],
        ),
        SiteProfile(
            name="safety_net",
            description="urban safety-net hospital: younger, Medicaid and uninsured, "
                        "high social risk",
            population=Population(
                age_mean=53, age_sd=15, female_share=0.45,
                payer_under_65={"medicaid": 0.55, "commercial": 0.2, "self_pay": 0.22,
                                "medicare": 0.03},
                payer_65_plus={"medicare": 0.65, "medicare_advantage": 0.12, "medicaid": 0.18,
                               "commercial": 0.02, "self_pay": 0.03},
                diagnosis_mix={"heart_failure": 10, "pneumonia": 11, "copd_exacerbation": 8,
                               "sepsis": 10, "gi_bleed": 11, "stroke": 6, "chest_pain": 12,
                               "syncope": 5, "cellulitis": 15, "elective_surgery": 2,
                               "hip_fracture": 3, "oncology": 7},
                social_shift=0.8, frailty_shift=0.1, condition_shift=0.1,
            ),
            prevalence=Prevalence(readmission=0.14, mortality=0.02, denial=0.13,
                                  los_mean_days=4.4),
            concept=Concept(),
            coding=Coding(rate=0.76),
            style=STYLES["safety_net"],
        ),
        SiteProfile(
            name="surgical",
            description="orthopaedic and surgical specialty hospital: elective procedures, "
                        "hip fractures",
            population=Population(
                age_mean=64, age_sd=13, female_share=0.58,
                payer_under_65={"medicaid": 0.12, "commercial": 0.8, "self_pay": 0.03,
                                "medicare": 0.05},
                payer_65_plus=_MEDICARE_AGE,
                diagnosis_mix={"heart_failure": 4, "pneumonia": 4, "copd_exacerbation": 2,
                               "sepsis": 4, "gi_bleed": 3, "stroke": 2, "chest_pain": 5,
                               "syncope": 4, "cellulitis": 6, "elective_surgery": 42,
                               "hip_fracture": 20, "oncology": 4},
                acuity_shift=-0.25, frailty_shift=-0.1, condition_shift=-0.2,
            ),
            prevalence=Prevalence(readmission=0.095, mortality=0.016, denial=0.065,
                                  los_mean_days=3.8),
            concept=Concept(),
            coding=Coding(rate=0.88),
            style=STYLES["surgical"],
        ),
        SiteProfile(
            name="external_system",
            description="a different health system: older, Medicare Advantage-heavy, its own payer "
                        "rules and a note style no training hospital uses",
            population=Population(
                age_mean=72, age_sd=13, female_share=0.52,
                payer_under_65={"medicaid": 0.35, "commercial": 0.5, "self_pay": 0.1,
                                "medicare": 0.05},
                payer_65_plus={"medicare": 0.3, "medicare_advantage": 0.55, "medicaid": 0.07,
                               "commercial": 0.07, "self_pay": 0.01},
                diagnosis_mix={"heart_failure": 16, "pneumonia": 14, "copd_exacerbation": 12,
                               "sepsis": 11, "gi_bleed": 6, "stroke": 8, "chest_pain": 6,
                               "syncope": 6, "cellulitis": 5, "elective_surgery": 3,
                               "hip_fracture": 10, "oncology": 3},
                frailty_shift=0.25, condition_shift=0.15,
            ),
            prevalence=Prevalence(readmission=0.145, mortality=0.028, denial=0.12,
                                  los_mean_days=4.9),
            concept=Concept(
                # Payer-specific rules of this system: Medicare Advantage plans deny far more
                # (prior-authorisation rules), commercial plans less, and low-acuity stays are not
                # targeted the way they are at the training hospitals.
                denial_payer={"medicare": 0.0, "medicare_advantage": 1.2, "medicaid": 0.2,
                              "commercial": 0.0, "self_pay": 0.8},
                denial_low_acuity=0.4,
                # A transitional-care programme for frequent attenders blunts social risk and
                # prior use; frail patients sent to step-down beds return more often.
                readmission_social=0.1,
                readmission_prior=0.1,
                readmission_frailty=0.6,
                readmission_snf=0.9,
                # Liberal ICU/HDU admission for monitoring: an ICU bed says less about death.
                icu_intercept=-1.5,
                mortality_icu=0.1,
                los_icu=0.8,
            ),
            coding=Coding(rate=0.7),
            style=STYLES["external_system"],
        ),
    )
}
