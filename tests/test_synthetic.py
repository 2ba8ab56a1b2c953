"""Synthetic hospitals: deterministic, realistic prevalences, valid oracles, label-free notes."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from sites.cli import generate, summarize
from sites.config import SyntheticSpec, load_consortium
from sites.splits import SplitFractions, split_by_patient
from sites.synthetic import (
    PROFILES,
    charlson,
    generate_consortium,
    generate_site,
    site_seed,
    vocabulary,
)
from sites.synthetic.notes import MAX_WORDS, MIN_WORDS
from sites.synthetic.patients import simulate_encounters
from sites.tasks import TASKS, cci_class, los_class

TRAINING_PROFILES = ("academic", "community", "safety_net", "surgical")
LABEL_WORDS = re.compile(
    r"\b(?:expired|died|dead|death|deceased|mortality|passed away|readmit\w*|re-admi\w*|readmission"
    r"|denied|denial|charlson|cci|length of stay)\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def cohorts() -> dict[str, pd.DataFrame]:
    """About 3000 encounters per profile: facts, labels and oracles (no notes; fast)."""
    return {name: simulate_encounters(profile, 3000, np.random.default_rng(11))
            for name, profile in PROFILES.items()}


@pytest.fixture(scope="module")
def sites() -> dict[str, pd.DataFrame]:
    """Small full tables, notes included, per profile."""
    return {name: generate_site(SyntheticSpec(name, 400), site_name=name, seed=3)
            for name in PROFILES}


def test_same_seed_same_table_other_seed_or_name_differs() -> None:
    spec = SyntheticSpec("safety_net", 150)
    first = generate_site(spec, site_name="a", seed=7)
    pd.testing.assert_frame_equal(first, generate_site(spec, site_name="a", seed=7))
    for other in (generate_site(spec, site_name="a", seed=8),
                  generate_site(spec, site_name="b", seed=7)):
        assert not first["admission_note"].equals(other["admission_note"])
        assert not np.allclose(first["p_mortality"], other["p_mortality"])
    assert site_seed(7, "a") != site_seed(7, "b") and site_seed(7, "a") == site_seed(7, "a")


@pytest.mark.parametrize("profile", list(PROFILES))
def test_prevalences_in_the_reference_ranges(cohorts, profile: str) -> None:
    df = cohorts[profile]
    assert 0.08 <= df["readmission"].mean() <= 0.16
    assert 0.01 <= df["mortality"].mean() <= 0.035
    assert 0.04 <= df["denial"].mean() <= 0.15
    assert 3 <= df["los_days"].median() <= 4
    assert df["los_days"].min() >= 1
    for k in range(5):  # every comorbidity class occurs
        assert (df["comorbidity"] == k).any()


@pytest.mark.parametrize("profile", list(PROFILES))
def test_oracle_probabilities_are_valid_and_calibrated(cohorts, profile: str) -> None:
    df = cohorts[profile]
    for spec in TASKS.values():
        probs = df[list(spec.oracle_columns)].to_numpy()
        assert np.all((probs >= 0) & (probs <= 1))
        if not spec.is_binary:
            np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
            shares = np.bincount(df[spec.label_column], minlength=spec.num_classes) / len(df)
            np.testing.assert_allclose(probs.mean(axis=0), shares, atol=0.03)
        else:
            assert abs(probs.mean() - df[spec.label_column].mean()) < 0.015
    assert (df.loc[df["mortality"] == 1, "p_readmission"] == 0).all()  # no return after death


@pytest.mark.parametrize("profile", list(PROFILES))
def test_oracle_auroc_is_realistic(cohorts, profile: str) -> None:
    df = cohorts[profile]
    for task in ("readmission", "mortality", "denial"):
        value = roc_auc_score(df[task], df[f"p_{task}"])
        assert 0.70 <= value <= 0.92, (task, value)


def test_labels_agree_with_raw_values(sites) -> None:
    for df in sites.values():
        assert (df["los"] == df["los_days"].map(los_class)).all()
        assert (df["comorbidity"] == df["cci_score"].map(cci_class)).all()
        assert (df.loc[df["mortality"] == 1, "disposition"] == "expired").all()
        assert (df.loc[df["mortality"] == 0, "disposition"] != "expired").all()


def test_comorbidity_oracle_is_the_exact_coded_score_distribution() -> None:
    rng = np.random.default_rng(0)
    coding = np.where(rng.random((3, len(charlson.CONDITIONS))) < 0.3, 0.8, 0.02)
    exact = charlson.cci_class_probabilities(coding)
    brute = np.zeros_like(exact)
    for coded in itertools.product((0, 1), repeat=len(charlson.CONDITIONS)):
        coded = np.array(coded)
        probability = np.prod(np.where(coded, coding, 1 - coding), axis=1)
        brute[:, cci_class(int(coded @ charlson.WEIGHTS))] += probability
    np.testing.assert_allclose(exact, brute, atol=1e-12)


def test_notes_never_state_a_label_and_have_the_right_length(sites) -> None:
    for name, df in sites.items():
        for column in ("admission_note", "discharge_note"):
            notes = df[column]
            leaks = notes[notes.str.contains(LABEL_WORDS)]
            assert leaks.empty, (name, leaks.iloc[0] if len(leaks) else "")
            words = notes.str.split().str.len()
            assert words.between(MIN_WORDS, MAX_WORDS).all(), (name, words.min(), words.max())
        admission = df["admission_note"].str.lower()
        assert not admission.str.contains(r"\d+ (?:days?|nights?)\b").any()  # no stay length


def test_notes_carry_the_facts_in_the_site_style(sites) -> None:
    academic, safety_net = sites["academic"], sites["safety_net"]
    assert academic["admission_note"].str.contains(r"\[\*\*Name\*\*\]").all()
    assert safety_net["admission_note"].str.contains("<NAME>").mean() > 0.5
    assert (safety_net["admission_note"] == safety_net["admission_note"].str.upper()).all()
    ages = academic.apply(lambda r: str(r["age"]) in r["admission_note"], axis=1)
    assert ages.all()  # the presentation line is always written


def test_external_vocabulary_is_held_out(sites) -> None:
    external_only = {phrase.lower() for table in (
        vocabulary.CONDITIONS, vocabulary.DIAGNOSES, vocabulary.PAYERS, vocabulary.UNIT)
        for phrasing in table.values() for phrase in phrasing.external}
    training_text = " ".join(sites[p][c].str.lower().str.cat(sep=" ") for p in TRAINING_PROFILES
                             for c in ("admission_note", "discharge_note"))
    external_text = " ".join(sites["external_system"][c].str.lower().str.cat(sep=" ")
                             for c in ("admission_note", "discharge_note"))
    assert not [p for p in external_only if p in training_text]
    assert sum(p in external_text for p in external_only) > 0.5 * len(external_only)


def test_split_is_by_patient(sites) -> None:
    for df in sites.values():
        assert (df.groupby("patient_id")["split"].nunique() == 1).all()
        assert df["patient_id"].duplicated().any()  # some patients have several encounters
        shares = df["split"].value_counts(normalize=True)
        assert abs(shares["train"] - 0.7) < 0.06 and abs(shares["test"] - 0.2) < 0.06


def test_split_by_patient_ignores_row_order() -> None:
    ids = np.array([f"p{i % 37}" for i in range(200)])
    splits = split_by_patient(ids, seed=1)
    order = np.random.default_rng(0).permutation(len(ids))
    assert (split_by_patient(ids[order], seed=1) == splits[order]).all()
    assert set(splits) == {"train", "validation", "test"}
    with pytest.raises(ValueError, match=r"expected shares >= 0 that sum to 1"):
        SplitFractions(train=0.8, validation=0.1, test=0.2)


def test_generate_consortium_writes_and_keeps(tmp_path: Path) -> None:
    site = {"role": "train", "data": {"path": "x.csv"}, "tasks": ["mortality", "los"],
            "synthetic": {"profile": "surgical", "encounters": 40}}
    raw = {"name": "tiny", "seed": 4, "sites": [
        {**site, "name": "s1", "data": {"path": "s1/t.csv"}},
        {**site, "name": "s2", "role": "external", "data": {"path": "s2/t.jsonl"}}]}
    file = tmp_path / "c.yaml"
    file.write_text(yaml.safe_dump(raw))
    consortium = load_consortium(file, data_root=tmp_path / "data")
    written = generate_consortium(consortium)
    assert written == {"s1": tmp_path / "data/s1/t.csv", "s2": tmp_path / "data/s2/t.jsonl"}
    assert generate_consortium(consortium) == {}  # existing tables are kept
    assert set(generate_consortium(consortium, overwrite=True)) == {"s1", "s2"}
    report = summarize(consortium.site("s2"))  # external: 40 encounters may hold no death
    assert "40 encounters" in report and "mortality" in report and "admission note words" in report
    assert set(generate(file, tmp_path / "other", fmt="parquet")) == {"s1", "s2"}
    assert (tmp_path / "other/s2/t.parquet").is_file()
