"""Bring your own data, done wrong: each malformed mapping or table fails with one line naming the
file, the key path or the 1-based data row and column, and what was expected."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sites.config import InvalidSiteConfig, load_site
from sites.dataset import read_site_table
from sites.encounter_table import InvalidSiteData

SUFFIX = {"parquet": ".parquet", "jsonl": ".jsonl", "csv": ".csv"}
FOLDS = {"train": "TRAIN", "validation": "VAL", "test": "TEST"}
TASKS = ["readmission", "mortality", "los", "comorbidity", "denial"]


def hospital_table() -> pd.DataFrame:
    """Four encounters of three patients under a hospital's own names, labels partly raw."""
    return pd.DataFrame({
        "hadm": ["h1", "h2", "h3", "h4"],
        "mrn": ["m1", "m1", "m2", "m3"],
        "fold": ["TRAIN", "TRAIN", "VAL", "TEST"],
        "admit": ["2022-01-05", "2022-06-01", "2023-03-01", "2024-02-01"],
        "hp_text": ["65 yo M with CAP.", "Admit for CHF.", "Syncope.", "Hip fx."],
        "dc_text": ["Home.", "SNF.", "Home w/ VNA.", "Rehab."],
        "readm30": ["yes", "no", "No", "YES"],
        "died": [0, 0, 0, 1],
        "los_days": [1.5, 3.0, 4.9, 10.0],
        "charlson": [0, 2, 3, 8],
        "denied": [True, False, False, False],
    })


def hospital_data() -> dict:
    """The `data` block mapping `hospital_table` to our columns."""
    return {
        "path": "extract.csv", "format": "csv",
        "columns": {"encounter_id": "hadm", "patient_id": "mrn", "admission_note": "hp_text",
                    "discharge_note": "dc_text", "readmission": "readm30", "mortality": "died",
                    "denial": "denied"},
        "raw_labels": {"los": "los_days", "comorbidity": "charlson"},
        "split": {"column": "fold", "values": dict(FOLDS)},
    }


@dataclass(frozen=True)
class Case:
    """One malformed input: changes to the good table and data block, and the error they give."""

    id: str
    match: str
    error: type[Exception] = InvalidSiteData
    table: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    data: dict = field(default_factory=dict)
    """Dotted key -> new value in the data block (None deletes the key)."""
    fmt: str = "csv"
    tasks: tuple[str, ...] = tuple(TASKS)
    raw_bytes: Callable[[bytes], bytes] | None = None
    """Edits the written file's bytes (for text that is not UTF-8)."""


def cell(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        df = df.astype({column: object})
        df.loc[row, column] = value
        return df
    return change


def drop(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda df: df.drop(columns=[column])


BY_DATE = {"by": "date", "column": "admit", "test_from": "2024-01-01"}

CONFIG_CASES = [
    Case("columns-unknown-key", r"`data.columns.admision_note` is 'hp_text'; expected keys from "
         r"encounter_id, .* \(did you mean 'admission_note'\?\)", InvalidSiteConfig,
         data={"columns.admission_note": None, "columns.admision_note": "hp_text"}),
    Case("columns-split", r"`data.columns.split` is 'fold'; expected the split column under "
         r"`split.column`", InvalidSiteConfig, data={"columns.split": "fold"}),
    Case("columns-empty-name", r"`data.columns.patient_id` is ''; expected the name of a column",
         InvalidSiteConfig, data={"columns.patient_id": ""}),
    Case("columns-not-a-mapping", r"`data.columns` is \['hadm'\]; expected a mapping of our names "
         r"to the table's column names", InvalidSiteConfig, data={"columns": ["hadm"]}),
    Case("columns-one-column-twice", r"`data.columns.patient_id` is 'hadm'; expected a column not "
         r"already mapped \(it is mapped by `columns.encounter_id`; only the two note types may "
         r"share one column\)", InvalidSiteConfig,
         data={"columns.patient_id": "hadm"}),
    Case("raw-label-of-binary-task", r"`data.raw_labels.mortality` is 'died'; expected keys from "
         r"los, comorbidity", InvalidSiteConfig,
         data={"columns.mortality": None, "raw_labels.mortality": "died"}),
    Case("label-mapped-twice", r"`data.raw_labels.los` is 'los_days'; expected the label of 'los' "
         r"mapped once", InvalidSiteConfig, data={"columns.los": "los_bin"}),
    Case("label-of-undeclared-task", r"`data.columns.denial` is 'denied'; expected labels only for "
         r"tasks the site declares \(add 'denial' to `tasks`", InvalidSiteConfig,
         tasks=("readmission", "mortality", "los", "comorbidity")),
    Case("split-by-unknown", r"`data.split.by` is 'random'; expected 'column', 'patient' or 'date'",
         InvalidSiteConfig, data={"split": {"by": "random"}}),
    Case("split-unknown-key", r"`data.split.sed` is not a known key; expected one of .* \(did you "
         r"mean `seed`\?\)", InvalidSiteConfig, data={"split": {"sed": 3}}),
    Case("split-key-of-another-rule", r"`data.split.values` is not a known key; expected one of "
         r"by, seed, fractions", InvalidSiteConfig,
         data={"split": {"by": "patient", "seed": 1, "values": {}}}),
    Case("split-seed-missing", r"`data.split.seed` is missing; expected an integer >= 0",
         InvalidSiteConfig, data={"split": {"by": "patient"}}),
    Case("split-fractions-sum", r"`data.split.fractions` is \{'train': 0.7, 'validation': 0.2, "
         r"'test': 0.2\}; expected shares \{train, validation, test\} >= 0 that sum to 1",
         InvalidSiteConfig, data={"split": {"seed": 1, "fractions": {"validation": 0.2}}}),
    Case("split-bad-test-date", r"`data.split.test_from` is '2024-13-01'; expected a date like "
         r"2024-01-01", InvalidSiteConfig, data={"split": {**BY_DATE, "test_from": "2024-13-01"}}),
    Case("split-cuts-out-of-order", r"`data.split.validation_from` is datetime.date\(2025, 1, 1\); "
         r"expected a date before `test_from` \(2024-01-01\)", InvalidSiteConfig,
         data={"split": {**BY_DATE, "validation_from": "2025-01-01"}}),
    Case("split-straddling", r"`data.split.straddling` is 'split'; expected 'first'",
         InvalidSiteConfig, data={"split": {**BY_DATE, "straddling": "split"}}),
    Case("split-values-unknown-split", r"`data.split.values.training` is not a known key; expected "
         r"one of train, validation, test, exclude \(did you mean `train`\?\)", InvalidSiteConfig,
         data={"split.values.train": None, "split.values.training": "TRAIN"}),
    Case("split-values-twice", r"`data.split.values.test` is 'VAL'; expected each value under one "
         r"split only \(it is also under 'validation'\)", InvalidSiteConfig,
         data={"split.values.test": "VAL"}),
    Case("split-values-boolean", r"`data.split.values.test` is True; expected a value or a list of "
         r"values .*quote yes/no/true/false", InvalidSiteConfig, data={"split.values.test": True}),
    Case("options-for-a-table", r"`data.options` is .*; expected no `options` for a csv table",
         InvalidSiteConfig, data={"options": {"notes": "x"}}),
    Case("format-unknown", r"`data.format` is 'xlsx'; expected 'parquet', 'jsonl' or 'csv' \(a "
         r"table\), or 'mimic-iv' or 'meds'", InvalidSiteConfig, data={"format": "xlsx"}),
    Case("columns-for-a-dataset", r"`data.columns` is .*; expected no `columns` for a meds dataset",
         InvalidSiteConfig, data={"format": "meds", "raw_labels": None, "split": None}),
    Case("mimic-without-split", r"`data.split` is missing; expected a split rule by patient or by "
         r"date \(MIMIC-IV has no split column\)", InvalidSiteConfig,
         data={"format": "mimic-iv", "columns": None, "raw_labels": None, "split": None}),
    Case("mimic-split-by-column", r"`data.split` is 'by column'; expected a split rule by patient "
         r"or by date", InvalidSiteConfig,
         data={"format": "mimic-iv", "columns": None, "raw_labels": None}),
    Case("mimic-with-denial", r"`tasks\[4\]` is 'denial'; expected tasks MIMIC-IV has labels for: "
         r"readmission, mortality, los, comorbidity \(denial is unavailable for MIMIC-IV",
         InvalidSiteConfig, data={"format": "mimic-iv", "columns": None, "raw_labels": None,
                                  "split": {"seed": 1}}),
]

DATA_CASES = [
    Case("file-missing", r"missing.csv: does not exist; expected the encounter table of site "
         r"'north'", data={"path": "missing.csv"}),
    Case("path-is-a-folder", r": is a folder; expected a csv file \(`data.path`\)",
         data={"path": "."}),
    Case("not-parquet", r"extract.parquet: cannot be read as parquet \(.*\); expected a parquet "
         r"encounter table", fmt="parquet", raw_bytes=lambda b: b"not parquet at all"),
    Case("mapped-column-missing", r"column `hp_text` is missing \(mapped to `admission_note` by "
         r"`data.columns.admission_note`\); expected it for the admission note read by task "
         r"'mortality'", table=drop("hp_text")),
    Case("mapped-column-misspelt", r"column `hp_txt` is missing \(mapped to `admission_note`.* "
         r"\(the table has `hp_text`\)", data={"columns.admission_note": "hp_txt"}),
    Case("raw-label-column-missing", r"column `los_days` is missing; expected it for the raw label "
         r"of task 'los' \(`data.raw_labels.los`\)", table=drop("los_days")),
    Case("split-column-missing", r"column `fold` is missing; expected it for the split of each "
         r"encounter \(`data.split.column`\)", table=drop("fold")),
    Case("no-split-and-no-rule", r"column `split` is missing; expected it for the split \(or a "
         r"`data.split` rule", data={"split": None}),
    Case("date-column-missing", r"column `admit` is missing; expected it for the date of each "
         r"encounter", table=drop("admit"), data={"split": BY_DATE}),
    Case("no-rows", r"extract.csv: has no rows; expected one row per encounter",
         table=lambda df: df.iloc[:0]),
    Case("note-empty", r"row 3, column `hp_text` is empty; expected the note text",
         table=cell("hp_text", 2, "  ")),
    Case("note-not-utf8", r"row 3, column `hp_text` is not valid UTF-8; expected UTF-8 text",
         raw_bytes=lambda b: b.replace(b"Syncope", b"Syncop\xe9")),
    Case("note-not-utf8-jsonl", r"row 3, column `hp_text` is not valid UTF-8", fmt="jsonl",
         raw_bytes=lambda b: b.replace(b"Syncope", b"Syncop\xe9")),
    Case("note-a-number", r"row 1, column `hp_text` is 42 \(int\); expected text \(the admission "
         r"note\)", table=cell("hp_text", 0, 42), fmt="jsonl"),
    Case("note-a-list", r"row 2, column `dc_text` is \['SNF'\] \(list\); expected text",
         table=cell("dc_text", 1, ["SNF"]), fmt="jsonl"),
    Case("id-a-fraction", r"row 4, column `mrn` is 3.5 \(float\); expected a text or whole-number "
         r"id", table=cell("mrn", 3, 3.5), fmt="jsonl"),
    Case("encounter-id-duplicate", r"row 4, column `hadm` is 'h2', already used at row 2; expected "
         r"unique encounter ids", table=cell("hadm", 3, "h2")),
    Case("patient-id-empty", r"row 2, column `mrn` is empty; expected a non-empty id",
         table=cell("mrn", 1, "")),
    Case("patient-in-two-splits", r"row 2, column `fold`: patient 'm1' is in 'test' but in 'train' "
         r"at row 1; expected all encounters of a patient in one split",
         table=cell("fold", 1, "TEST")),
    Case("split-value-unknown", r"row 3, column `fold` is 'HOLDOUT'; expected one of TRAIN, VAL, "
         r"TEST \(the values of `data.split.values`\)", table=cell("fold", 2, "HOLDOUT")),
    Case("split-value-empty", r"row 1, column `fold` is empty; expected one of TRAIN, VAL, TEST",
         table=cell("fold", 0, "")),
    Case("split-value-unmapped-column", r"row 1, column `fold` is 'TRAIN'; expected one of "
         r"train, validation, test", data={"split.values": None}),
    Case("raw-los-negative", r"row 2, column `los_days` is -1; expected a length of stay in days "
         r">= 0 \(`data.raw_labels.los`, binned 0-2, 3, 4-5, >5\)",
         table=cell("los_days", 1, -1)),
    Case("raw-los-text", r"row 1, column `los_days` is 'two'; expected a length of stay",
         table=cell("los_days", 0, "two")),
    Case("raw-los-missing", r"row 4, column `los_days` is missing; expected a length of stay",
         table=cell("los_days", 3, "")),
    Case("raw-charlson-fraction", r"row 3, column `charlson` is 2.5; expected a whole Charlson "
         r"score >= 0", table=cell("charlson", 2, 2.5)),
    Case("binary-label-word", r"row 1, column `readm30` is 'maybe'; expected an integer class: "
         r"0 \(no\), 1 \(yes\) \(true/false, yes/no and y/n also work; map other words under "
         r"`data.label_values`\)",
         table=cell("readm30", 0, "maybe")),
    Case("binary-label-out-of-range", r"row 4, column `died` is 2; expected an integer class: "
         r"0 \(no\), 1 \(yes\)", table=cell("died", 3, 2)),
    Case("class-index-out-of-range", r"row 2, column `los_bin` is 7; expected an integer class: "
         r"0 \(0-2\), 1 \(3\), 2 \(4-5\), 3 \(>5\)",
         table=lambda df: df.assign(los_bin=[0, 7, 1, 3]),
         data={"raw_labels.los": None, "columns.los": "los_bin"}),
    Case("date-unparseable", r"row 2, column `admit` is '2022-02-30'; expected a date like "
         r"2024-01-31 \(ISO 8601\)", table=cell("admit", 1, "2022-02-30"), data={"split": BY_DATE}),
    Case("date-not-iso", r"row 1, column `admit` is '05/01/2022'; expected a date like",
         table=cell("admit", 0, "05/01/2022"), data={"split": BY_DATE}),
    Case("date-empty", r"row 3, column `admit` is empty; expected a date",
         table=cell("admit", 2, ""), data={"split": BY_DATE}),
    Case("date-a-number", r"row 1, column `admit` is 20220105; expected a date", fmt="jsonl",
         table=cell("admit", 0, 20220105), data={"split": BY_DATE}),
    Case("nothing-left-after-exclusion", r"extract.csv: no rows left after the split rule left out "
         r"all 4 encounters \(4 encounters left out: their `fold` is listed under "
         r"`data.split.values.exclude`\); expected at least one encounter",
         data={"split.values": {"exclude": ["TRAIN", "VAL", "TEST"]}}),
]


def _edit(data: dict, changes: dict) -> dict:
    data = yaml.safe_load(yaml.safe_dump(data, sort_keys=False))  # a deep copy
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data
        for parent in parents:
            node = node.setdefault(parent, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return data


def _write_case(directory: Path, case: Case) -> Path:
    table = hospital_table()
    if case.table is not None:
        table = case.table(table)
    data = hospital_data()
    data["path"], data["format"] = f"extract{SUFFIX[case.fmt]}", case.fmt
    data = _edit(data, case.data)
    path = directory / f"extract{SUFFIX[case.fmt]}"
    if case.fmt == "csv":
        table.to_csv(path, index=False)
    elif case.fmt == "jsonl":
        table.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        table.to_parquet(path, index=False)
    if case.raw_bytes is not None:
        path.write_bytes(case.raw_bytes(path.read_bytes()))
    site = {"name": "north", "role": "train", "data": data, "tasks": list(case.tasks)}
    file = directory / "north.yaml"
    file.write_text(yaml.safe_dump(site, sort_keys=False))
    return file


def test_the_good_table_reads(tmp_path: Path) -> None:
    table = read_site_table(load_site(_write_case(tmp_path, Case("good", ""))))
    assert table["los"].tolist() == [0, 1, 2, 3] and table["comorbidity"].tolist() == [0, 1, 2, 4]
    assert table["readmission"].tolist() == [1, 0, 0, 1]
    assert table["denial"].tolist() == [1, 0, 0, 0]
    assert table["split"].tolist() == ["train", "train", "validation", "test"]


def test_the_corpus_is_large_enough() -> None:
    assert len(CONFIG_CASES) + len(DATA_CASES) >= 30
    assert len({case.id for case in CONFIG_CASES + DATA_CASES}) == len(CONFIG_CASES + DATA_CASES)


@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda case: case.id)
def test_bad_mapping_names_file_and_key(tmp_path: Path, case: Case) -> None:
    file = _write_case(tmp_path, case)
    with pytest.raises(InvalidSiteConfig, match=case.match) as error:
        load_site(file)
    assert str(error.value).startswith(f"{file}: ") and "\n" not in str(error.value)


@pytest.mark.parametrize("case", DATA_CASES, ids=lambda case: case.id)
def test_bad_table_names_file_row_and_column(tmp_path: Path, case: Case) -> None:
    file = _write_case(tmp_path, case)
    site = load_site(file)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(InvalidSiteData, match=case.match) as error:
        read_site_table(site)
    assert str(error.value).startswith(str(site.data.path)) and "\n" not in str(error.value)
    assert sorted(os.listdir(tmp_path)) == before  # an import writes nothing, half or whole
