"""Latent patient factors -> structured facts -> labels, with each label's true probability.

The causal order mirrors a hospital stay. Patient factors (age, sex, payer, frailty, social risk,
Charlson conditions) are shared by a patient's encounters; each encounter draws a principal
diagnosis group and an acuity, then what is known at admission (ICU or floor), then the outcomes:
in-hospital death, length of stay, discharge disposition, 30-day readmission and a first claim
denial, each from a logistic (or negative-binomial) model whose site intercept is solved so the
site's expected prevalence equals its profile's target.

Every label's probability is recorded given everything the generator drew before that label (the
oracle): `p_readmission` is 0 for a patient who died, `p_los_*` comes from the length-of-stay
distribution, `p_comorbidity_*` from the exact distribution of the coded Charlson score. Those
columns let the report show the Bayes AUROC, the ceiling any model reading the notes could reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

import sites.synthetic.charlson as charlson
from sites.synthetic.profiles import DIAGNOSES, PAYERS, SiteProfile
from sites.tasks import LOS_BINS, los_class


@dataclass(frozen=True)
class DiagnosisEffects:
    """How a principal diagnosis group moves each outcome (log-odds or log-mean)."""

    acuity: float
    icu: float
    mortality: float
    los: float
    readmission: float
    denial: float


DIAGNOSIS_EFFECTS: dict[str, DiagnosisEffects] = {
    "heart_failure": DiagnosisEffects(0.0, 0.0, 0.3, 0.15, 0.5, -0.1),
    "pneumonia": DiagnosisEffects(0.2, 0.1, 0.4, 0.1, 0.1, 0.1),
    "copd_exacerbation": DiagnosisEffects(0.0, 0.0, 0.0, 0.0, 0.4, 0.2),
    "sepsis": DiagnosisEffects(0.8, 0.6, 0.8, 0.3, 0.2, 0.5),
    "gi_bleed": DiagnosisEffects(0.3, 0.4, 0.3, 0.0, 0.2, 0.0),
    "stroke": DiagnosisEffects(0.3, 0.3, 0.6, 0.3, 0.0, -0.3),
    "chest_pain": DiagnosisEffects(-0.6, -0.8, -0.9, -0.6, -0.3, 1.1),
    "syncope": DiagnosisEffects(-0.5, -0.6, -0.7, -0.4, -0.3, 0.9),
    "cellulitis": DiagnosisEffects(-0.4, -0.8, -0.7, 0.0, -0.2, 0.3),
    "elective_surgery": DiagnosisEffects(-0.7, -0.5, -1.0, -0.1, -0.4, 0.6),
    "hip_fracture": DiagnosisEffects(0.0, -0.3, 0.3, 0.4, 0.1, -0.3),
    "oncology": DiagnosisEffects(0.4, 0.0, 0.9, 0.3, 0.7, 0.2),
}
# Patients with a condition are admitted more often for its diagnosis group (log weight).
_AFFINITY: dict[str, dict[str, float]] = {
    "heart_failure": {"chf": 2.5},
    "copd_exacerbation": {"copd": 2.5},
    "stroke": {"cvd": 1.5, "hemiplegia": 1.0},
    "gi_bleed": {"liver_severe": 1.5, "peptic_ulcer": 1.5, "liver_mild": 0.7},
    "oncology": {"cancer": 2.0, "metastatic": 2.5},
}
DISPOSITIONS: tuple[str, ...] = ("home", "home_services", "snf", "rehab", "ama")
LOS_DISPERSION = 4.0
"""Negative-binomial shape of length of stay (smaller = more long stays)."""
_PAYER_SOCIAL = {"medicare": 0.0, "medicare_advantage": 0.0, "medicaid": 0.5,
                 "commercial": -0.3, "self_pay": 0.8}


def simulate_encounters(profile: SiteProfile, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """`n` encounters of `profile`'s hospital: facts, latent factors, labels and oracle columns."""
    pop = profile.population
    patient = _patient_of_encounter(n, pop.encounters_per_patient, rng)
    people = _patient_factors(profile, int(patient.max()) + 1, rng)
    df = people.iloc[patient].reset_index(drop=True)
    df.insert(0, "patient_index", patient)
    present = np.stack(df["present"].to_numpy())
    df["true_cci"] = charlson.true_score(present)
    df["diagnosis"] = _diagnoses(pop.diagnosis_mix, present, rng)
    effects = {f: df["diagnosis"].map(lambda d, f=f: getattr(DIAGNOSIS_EFFECTS[d], f)).to_numpy()
               for f in DiagnosisEffects.__dataclass_fields__}
    # 1. What is known at admission: how sick, and whether the ICU takes the patient.
    df["acuity"] = rng.normal(0.0, 1.0, n) + pop.acuity_shift + effects["acuity"]
    df["icu"] = rng.random(n) < _sigmoid(profile.concept.icu_intercept + 1.3 * df["acuity"]
                                         + effects["icu"])
    # 2. How the stay ends, each outcome given everything drawn before it.
    _mortality(df, profile, effects["mortality"], rng)
    _length_of_stay(df, profile, effects["los"], rng)
    alive = df["mortality"].to_numpy() == 0
    decades = (df["age"].to_numpy() - 65.0) / 10.0
    df["disposition"] = np.where(alive, _dispositions(df, decades, rng), "expired")
    df["has_pcp"] = rng.random(n) < _sigmoid(1.4 - 0.9 * df["social_risk"].to_numpy())
    _readmission(df, profile, effects["readmission"], alive, rng)
    _denial(df, profile, effects["denial"], rng)
    # 3. What the coders make of the patient's conditions.
    _comorbidity(df, profile, present, rng)
    df["admit_date"] = _admit_dates(df, rng)
    return df


def _mortality(df: pd.DataFrame, profile: SiteProfile, dx: np.ndarray,
               rng: np.random.Generator) -> None:
    decades = (df["age"].to_numpy() - 65.0) / 10.0
    logit = (0.4 * decades + 0.6 * df["acuity"].to_numpy() + 0.35 * df["frailty"].to_numpy()
             + profile.concept.mortality_icu * df["icu"].to_numpy(dtype=float)
             + 0.1 * df["true_cci"].to_numpy() + dx)
    df["p_mortality"] = _sigmoid(logit + _intercept(logit, profile.prevalence.mortality))
    df["mortality"] = (rng.random(len(df)) < df["p_mortality"]).astype(np.int64)


def _length_of_stay(df: pd.DataFrame, profile: SiteProfile, dx: np.ndarray,
                    rng: np.random.Generator) -> None:
    """A stay lasts 1 + a negative-binomial number of extra days (nobody stays 0 days); the site's
    mean extra days are scaled to its profile's mean length of stay."""
    log_mean = (0.3 * df["acuity"].to_numpy() + 0.3 * df["frailty"].to_numpy()
                + 0.1 * df["social_risk"].to_numpy()
                + profile.concept.los_icu * df["icu"].to_numpy(dtype=float) + dx)
    extra = np.exp(log_mean) * (profile.prevalence.los_mean_days - 1.0) / np.exp(log_mean).mean()
    p = LOS_DISPERSION / (LOS_DISPERSION + extra)
    df["los_days"] = 1 + rng.negative_binomial(LOS_DISPERSION, p).astype(np.int64)
    df["los"] = df["los_days"].map(los_class).astype(np.int64)
    for k, probs in enumerate(_los_class_probabilities(extra).T):
        df[f"p_los_{k}"] = probs


def _readmission(df: pd.DataFrame, profile: SiteProfile, dx: np.ndarray, alive: np.ndarray,
                 rng: np.random.Generator) -> None:
    disposition = df["disposition"].to_numpy()
    concept = profile.concept
    logit = (concept.readmission_frailty * df["frailty"]
             + concept.readmission_social * df["social_risk"] + 0.1 * df["true_cci"]
             + concept.readmission_prior * np.log1p(df["prior_admissions"]) - 0.35 * df["has_pcp"]
             + 0.3 * (df["los_days"] > 5) + dx
             + 1.0 * (disposition == "ama") + concept.readmission_snf * (disposition == "snf")
             + 0.2 * (disposition == "home_services")).to_numpy(dtype=float)
    b = _intercept(logit[alive], profile.prevalence.readmission / max(alive.mean(), 1e-9))
    df["p_readmission"] = np.where(alive, _sigmoid(logit + b), 0.0)
    df["readmission"] = (rng.random(len(df)) < df["p_readmission"]).astype(np.int64)


def _denial(df: pd.DataFrame, profile: SiteProfile, dx: np.ndarray,
            rng: np.random.Generator) -> None:
    concept = profile.concept
    logit = (df["payer"].map(concept.denial_payer).to_numpy() + dx
             - concept.denial_low_acuity * df["acuity"].to_numpy()
             + 0.3 * df["social_risk"].to_numpy())
    df["p_denial"] = _sigmoid(logit + _intercept(logit, profile.prevalence.denial))
    df["denial"] = (rng.random(len(df)) < df["p_denial"]).astype(np.int64)


def _comorbidity(df: pd.DataFrame, profile: SiteProfile, present: np.ndarray,
                 rng: np.random.Generator) -> None:
    coding = charlson.coding_probabilities(present, profile.coding.rate,
                                           profile.coding.spurious_rate)
    df["cci_score"] = charlson.coded_score(rng, coding)
    df["comorbidity"] = df["cci_score"].map(charlson.cci_class).astype(np.int64)
    for k, probs in enumerate(charlson.cci_class_probabilities(coding).T):
        df[f"p_comorbidity_{k}"] = probs


def _patient_of_encounter(n: int, mean_encounters: float, rng: np.random.Generator) -> np.ndarray:
    counts = 1 + rng.poisson(max(mean_encounters - 1.0, 0.0), size=n)
    return np.repeat(np.arange(n), counts)[:n]


def _patient_factors(profile: SiteProfile, m: int, rng: np.random.Generator) -> pd.DataFrame:
    pop = profile.population
    age = np.clip(rng.normal(pop.age_mean, pop.age_sd, m), 18, 99).round().astype(np.int64)
    young = _categorical(rng, pop.payer_under_65, PAYERS, m)
    old = _categorical(rng, pop.payer_65_plus, PAYERS, m)
    payer = np.where(age >= 65, old, young)
    frailty = rng.normal(0, 0.9, m) + 0.3 * (age - 65) / 10 + pop.frailty_shift
    social = (rng.normal(0, 1, m) + pd.Series(payer).map(_PAYER_SOCIAL).to_numpy()
              + pop.social_shift - 0.1 * (age - 65) / 10)
    shift = np.full((m, len(charlson.CONDITIONS)), pop.condition_shift)
    present = charlson.draw_conditions(rng, shift, age.astype(float), frailty)
    return pd.DataFrame({
        "age": age,
        "sex": np.where(rng.random(m) < pop.female_share, "F", "M"),
        "payer": payer,
        "frailty": frailty,
        "social_risk": social,
        "prior_admissions": rng.poisson(np.exp(-1.3 + 0.5 * frailty + 0.3 * social)),
        "present": list(present),
        "conditions": [";".join(np.array(charlson.CONDITION_NAMES)[row]) for row in present],
    })


def _diagnoses(mix: dict[str, float], present: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    log_w = np.log(np.array([mix.get(d, 0.0) for d in DIAGNOSES], dtype=float) + 1e-12)
    log_w = np.tile(log_w, (len(present), 1))
    for j, dx in enumerate(DIAGNOSES):
        for condition, weight in _AFFINITY.get(dx, {}).items():
            log_w[:, j] += weight * present[:, charlson.CONDITION_NAMES.index(condition)]
    return np.array(DIAGNOSES)[_sample_rows(rng, log_w)]


def _dispositions(df: pd.DataFrame, decades: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    frailty, social = df["frailty"].to_numpy(), df["social_risk"].to_numpy()
    dx = df["diagnosis"].to_numpy()
    scores = np.stack([
        np.zeros(len(df)),
        -1.6 + 0.6 * frailty + 0.3 * decades,
        -2.8 + 1.0 * frailty + 0.5 * decades + 1.5 * (dx == "hip_fracture"),
        -3.0 + 1.8 * (dx == "stroke") + 1.2 * (dx == "hip_fracture")
        + 1.0 * (dx == "elective_surgery"),
        -4.2 + 0.9 * social - 0.3 * decades,
    ], axis=1)
    return np.array(DISPOSITIONS)[_sample_rows(rng, scores)]


def _admit_dates(df: pd.DataFrame, rng: np.random.Generator) -> list[str]:
    """ISO dates; a patient's next encounter starts within 30 days of discharge exactly when the
    previous one was a readmission."""
    start = np.datetime64("2019-01-01")
    first = rng.integers(0, 5 * 365, len(df))
    gaps = np.where(df["readmission"].to_numpy() == 1, rng.integers(1, 30, len(df)),
                    rng.integers(31, 400, len(df)))
    dates, previous_patient, current = [], -1, start
    for i, patient in enumerate(df["patient_index"].to_numpy()):
        if patient != previous_patient:
            current = start + first[i]
        else:
            current = current + int(df["los_days"].iat[i - 1]) + gaps[i - 1]
        dates.append(str(current))
        previous_patient = patient
    return dates


def _los_class_probabilities(extra: np.ndarray) -> np.ndarray:
    """P(LOS class = k) [N, K] for stays of 1 + NegBin(mean `extra`) days: exact pmf sums over
    the whole days of each closed bin; the open last bin takes the rest."""
    r = LOS_DISPERSION
    q = extra / (r + extra)
    last = LOS_BINS[-2][1]
    pmf = np.zeros((len(extra), last + 1))  # pmf[:, d] = P(stay = d days); P(0 days) = 0
    pmf[:, 1] = (r / (r + extra)) ** r
    for d in range(1, last):
        pmf[:, d + 1] = pmf[:, d] * (d - 1 + r) / d * q
    classes = np.zeros((len(extra), len(LOS_BINS)))
    for day in range(last + 1):
        classes[:, los_class(day)] += pmf[:, day]
    classes[:, -1] = np.clip(1.0 - classes[:, :-1].sum(axis=1), 0.0, 1.0)
    return classes


def _intercept(linear: np.ndarray, target: float) -> float:
    """Site intercept b with mean(sigmoid(linear + b)) = target (bisection)."""
    low, high = -30.0, 30.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if _sigmoid(linear + mid).mean() < target else (low, mid)
    return (low + high) / 2


def _sigmoid(x) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def _categorical(rng: np.random.Generator, shares: dict[str, float], names: tuple[str, ...],
                 m: int) -> np.ndarray:
    weights = np.array([shares.get(k, 0.0) for k in names], dtype=float)
    return rng.choice(np.array(names), size=m, p=weights / weights.sum())


def _sample_rows(rng: np.random.Generator, log_weights: np.ndarray) -> np.ndarray:
    """One categorical draw per row from unnormalised log weights (Gumbel-max)."""
    return np.argmax(log_weights + rng.gumbel(size=log_weights.shape), axis=1)
