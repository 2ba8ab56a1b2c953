"""Bring your own data: a hospital's table under its own column names, raw labels and split rules,
read back as the synthetic table it was made from; and the MIMIC-IV / MEDS wiring, with fakes."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from server.cli import main as lang1_fl
from sites.cli import summarize
from sites.config import InvalidSiteConfig, SyntheticSpec, load_site
from sites.dataset import count_training_encounters, read_site_table
from sites.encounter_table import InvalidSiteData
from sites.synthetic import generate_site
from sites.tasks import TASK_NAMES, TASKS

SUFFIX = {"parquet": ".parquet", "jsonl": ".jsonl", "csv": ".csv"}
LABELS = [TASKS[t].label_column for t in TASK_NAMES]

MAPPING = {"encounter_id": "hadm", "patient_id": "mrn", "admission_note": "hp_text",
           "discharge_note": "dc_text", "readmission": "readm30", "mortality": "died",
           "denial": "claim_denied"}
RAW = {"los": "los_days", "comorbidity": "charlson_score"}
FOLDS = {"train": "TRAIN", "validation": "VAL", "test": "TEST"}


@pytest.fixture(scope="module")
def generated() -> pd.DataFrame:
    return generate_site(SyntheticSpec("community", 80), site_name="t", seed=5)


def hospital_view(table: pd.DataFrame) -> pd.DataFrame:
    """`table` as a hospital might export it: its own column names, yes/no and true/false binary
    labels, raw days and Charlson points instead of our classes, its own fold names."""
    view = table.rename(columns={ours: theirs for ours, theirs in MAPPING.items()})
    view = view.rename(columns={"cci_score": "charlson_score"})
    view["readm30"] = np.where(view["readm30"] == 1, "Yes", "no")
    view["died"] = view["died"].astype(bool)
    view["fold"] = view.pop("split").map(FOLDS)
    return view.drop(columns=["los", "comorbidity"])


def write_site(directory: Path, table: pd.DataFrame, data: dict, *,
               tasks: tuple[str, ...] = TASK_NAMES, fmt: str = "csv") -> Path:
    """A site YAML whose table is `table` written as `fmt`; `data` is the rest of its data block."""
    path = directory / f"extract{SUFFIX[fmt]}"
    if fmt == "csv":
        table.to_csv(path, index=False)
    elif fmt == "jsonl":
        table.to_json(path, orient="records", lines=True, force_ascii=False, date_format="iso")
    else:
        table.to_parquet(path, index=False)
    site = {"name": "north", "role": "train", "data": {"path": path.name, **data},
            "tasks": list(tasks), "device": "cpu"}
    file = directory / "north.yaml"
    file.write_text(yaml.safe_dump(site, sort_keys=False))
    return file


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_hospital_table_reads_back_as_the_synthetic_one(tmp_path: Path, generated: pd.DataFrame,
                                                          fmt: str) -> None:
    data = {"columns": MAPPING, "raw_labels": RAW, "split": {"column": "fold", "values": FOLDS}}
    site = load_site(write_site(tmp_path, hospital_view(generated), data, fmt=fmt))
    back = read_site_table(site)
    for column in ("encounter_id", "patient_id", "split", "admission_note", "discharge_note",
                   *LABELS):
        assert back[column].tolist() == generated[column].tolist(), column
    assert all(back[label].dtype == np.int64 for label in LABELS)
    assert count_training_encounters(site) == int((generated["split"] == "train").sum())


def test_class_indices_may_be_mapped_as_they_are(tmp_path: Path, generated: pd.DataFrame) -> None:
    view = generated.rename(columns={"los": "los_bin", "encounter_id": "visit"})
    site = load_site(write_site(tmp_path, view, {"columns": {"los": "los_bin",
                                                             "encounter_id": "visit"}},
                                tasks=("los",), fmt="parquet"))
    back = read_site_table(site)
    assert back["los"].tolist() == generated["los"].tolist()
    assert "los_bin" not in back.columns and "visit" not in back.columns


def test_an_unmapped_column_with_one_of_our_names_is_not_taken_for_ours(
        tmp_path: Path, generated: pd.DataFrame) -> None:
    view = generated.assign(mortality_mapped=generated["mortality"], mortality=7)
    site = load_site(write_site(tmp_path, view, {"columns": {"mortality": "mortality_mapped"}},
                                tasks=("mortality",), fmt="parquet"))
    assert read_site_table(site)["mortality"].tolist() == generated["mortality"].tolist()


# -- split rules --------------------------------------------------------------------------------


def _patients_in_one_split(table: pd.DataFrame) -> bool:
    return bool((table.groupby("patient_id")["split"].nunique() == 1).all())


def test_seeded_split_by_patient_keeps_patients_together_and_ignores_row_order(
        tmp_path: Path, generated: pd.DataFrame) -> None:
    table = generated.drop(columns=["split"])
    rule = {"by": "patient", "seed": 11, "fractions": {"train": 0.6, "validation": 0.2,
                                                       "test": 0.2}}
    first = read_site_table(load_site(write_site(tmp_path, table, {"split": rule})))
    shuffled = table.sample(frac=1.0, random_state=3)
    (tmp_path / "again").mkdir()
    again = read_site_table(load_site(write_site(tmp_path / "again", shuffled, {"split": rule})))
    assert _patients_in_one_split(first)
    assert set(first["split"]) == {"train", "validation", "test"}
    by_encounter = dict(zip(first["encounter_id"], first["split"]))
    assert all(by_encounter[e] == s for e, s in zip(again["encounter_id"], again["split"]))
    other = read_site_table(load_site(write_site(tmp_path, table, {"split": {**rule, "seed": 12}})))
    assert other["split"].tolist() != first["split"].tolist()
    patients = first.drop_duplicates("patient_id")["split"].value_counts(normalize=True)
    assert patients["train"] == pytest.approx(0.6, abs=0.05)


def test_a_rule_replaces_the_tables_own_split_column(tmp_path: Path,
                                                     generated: pd.DataFrame) -> None:
    site = load_site(write_site(tmp_path, generated, {"split": {"seed": 1}}))
    assert site.data.split is not None and read_site_table(site)["split"].tolist() != (
        generated["split"].tolist())


def _visits() -> pd.DataFrame:
    """Six encounters of four patients around the cuts 2023-01-01 (validation) and 2024-01-01
    (test): p1 straddles both cuts, p2 stays in 2022, p3 is new in validation, p4 new in test."""
    return pd.DataFrame({
        "encounter_id": ["e1", "e2", "e3", "e4", "e5", "e6"],
        "patient_id": ["p1", "p2", "p1", "p3", "p1", "p4"],
        "admit": ["2022-03-01", "2022-05-01", "2023-06-01", "2023-02-01T08:30:00",
                  "2024-02-01", "2024-03-01"],
        "admission_note": ["a"] * 6,
        "mortality": [0, 1, 0, 0, 1, 0],
    })


@pytest.mark.parametrize(("straddling", "expected"), [
    ("first", {"e1": "train", "e2": "train", "e3": "train", "e4": "validation", "e5": "train",
               "e6": "test"}),
    ("drop", {"e1": "train", "e2": "train", "e4": "validation", "e6": "test"}),
])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_split_by_date_puts_a_straddling_patient_by_first_encounter_or_drops_later_stays(
        tmp_path: Path, straddling: str, expected: dict[str, str], fmt: str) -> None:
    rule = {"by": "date", "column": "admit", "validation_from": "2023-01-01",
            "test_from": "2024-01-01", "straddling": straddling}
    table = _visits()
    if fmt == "parquet":
        table["admit"] = pd.to_datetime(table["admit"], format="ISO8601")
    site = load_site(write_site(tmp_path, table, {"split": rule}, tasks=("mortality",), fmt=fmt))
    back = read_site_table(site)
    assert dict(zip(back["encounter_id"], back["split"])) == expected
    assert _patients_in_one_split(back)
    assert count_training_encounters(site) == sum(s == "train" for s in expected.values())
    report = summarize(site)
    assert "by date `admit`: validation from 2023-01-01, test from 2024-01-01" in report
    assert "2 encounters of 1 patients first seen in an earlier split" in report


def test_split_by_date_without_validation_cut_and_with_yaml_dates(tmp_path: Path) -> None:
    file = write_site(tmp_path, _visits(), {}, tasks=("mortality",))
    text = file.read_text().replace(  # an unquoted YAML date, as a person would write it
        "  path: extract.csv\n",
        "  path: extract.csv\n  split: {column: admit, test_from: 2024-01-01}\n")
    file.write_text(text)
    back = read_site_table(load_site(file))
    assert set(back["split"]) == {"train", "test"}  # `by` inferred from `test_from`
    assert dict(zip(back["encounter_id"], back["split"]))["e4"] == "train"


def test_split_values_may_list_several_values_and_exclude_some(tmp_path: Path) -> None:
    table = _visits().assign(fold=[1, 2, 1, 3, 1, 9])
    rule = {"column": "fold", "values": {"train": [1, 2], "test": 3, "exclude": 9}}
    site = load_site(write_site(tmp_path, table, {"split": rule}, tasks=("mortality",),
                                fmt="parquet"))
    back = read_site_table(site)
    assert back["encounter_id"].tolist() == ["e1", "e2", "e3", "e4", "e5"]
    assert back["split"].tolist() == ["train", "train", "train", "test", "train"]
    assert count_training_encounters(site) == 4
    assert "1 encounters left out" in summarize(site)


def test_rows_left_out_keep_the_files_row_numbers_in_errors(tmp_path: Path) -> None:
    table = _visits().assign(fold=["X", "T", "T", "T", "T", "T"])
    table.loc[3, "admission_note"] = " "
    rule = {"column": "fold", "values": {"train": "T", "exclude": "X"}}
    site = load_site(write_site(tmp_path, table, {"split": rule}, tasks=("mortality",)))
    with pytest.raises(InvalidSiteData, match=r"row 4, column `admission_note` is empty"):
        read_site_table(site)


# -- sites check --------------------------------------------------------------------------------


def test_sites_check_names_importer_mapping_and_unavailable_tasks(
        tmp_path: Path, generated: pd.DataFrame, capsys) -> None:
    data = {"columns": {k: v for k, v in MAPPING.items() if k != "denial"}, "raw_labels": RAW,
            "split": {"column": "fold", "values": FOLDS}}
    tasks = tuple(t for t in TASK_NAMES if t != "denial")
    file = write_site(tmp_path, hospital_view(generated).drop(columns=["claim_denied"]), data,
                      tasks=tasks)
    assert lang1_fl(["sites", "check", str(file)]) == 0
    out = capsys.readouterr().out
    assert "importer: csv table (sites.importers.tables)\n" in out
    assert "  columns: encounter_id <- hadm, patient_id <- mrn" in out
    assert "  raw labels: los <- los_days (days, binned), comorbidity <- charlson_score" in out
    assert "  split: from column `fold` (train = TRAIN, validation = VAL, test = TEST)" in out
    assert "tasks unavailable here: denial (not in `tasks`)" in out
    assert "80 encounters" in out and "admission note words: p10" in out


def test_sites_check_of_our_own_table_says_no_mapping(tmp_path: Path,
                                                      generated: pd.DataFrame) -> None:
    report = summarize(load_site(write_site(tmp_path, generated, {}, fmt="parquet")))
    assert "columns: as named (no mapping)\n  split: from column `split`" in report
    assert "tasks unavailable here: none" in report


# -- MIMIC-IV and MEDS: our wiring, their readers faked -----------------------------------------


def _dataset_table(n: int = 12, *, split: bool = False, denial: bool = False) -> pd.DataFrame:
    table = pd.DataFrame({
        "encounter_id": [f"h{i}" for i in range(n)],
        "patient_id": [f"s{i // 2}" for i in range(n)],
        "admission_note": [f"note {i}" for i in range(n)],
        "discharge_note": [f"summary {i}" for i in range(n)],
        "readmission": np.arange(n, dtype=np.int64) % 2,
        "mortality": np.zeros(n, dtype=np.int64),
        "los": np.arange(n, dtype=np.int64) % 4,
        "comorbidity": np.arange(n, dtype=np.int64) % 5,
        "admittime": pd.date_range("2015-01-01", periods=n, freq="90D"),
    })
    if split:
        table["split"] = ["train"] * (n - 4) + ["validation"] * 2 + ["test"] * 2
    if denial:
        table["denial"] = np.ones(n, dtype=np.int64)
    return table


@pytest.fixture
def fake_readers(monkeypatch) -> dict[str, list]:
    """`sites.importers.mimic` / `.meds` replaced by fakes recording their calls."""
    calls: dict[str, list] = {"mimic": [], "meds": []}
    returns: dict[str, pd.DataFrame] = {"mimic": _dataset_table(),
                                        "meds": _dataset_table(split=True, denial=True)}

    def fake(kind: str):
        def read(root: Path, options, *, where: str) -> pd.DataFrame:
            calls[kind].append((root, dict(options), where))
            return returns[kind].copy()
        return read

    for kind, function in (("mimic", "read_mimic"), ("meds", "read_meds")):
        module = types.ModuleType(f"sites.importers.{kind}")
        setattr(module, function, fake(kind))
        monkeypatch.setitem(sys.modules, f"sites.importers.{kind}", module)
    calls["returns"] = returns  # type: ignore[assignment]
    return calls


def _dataset_site(directory: Path, fmt: str, *, tasks=("readmission", "mortality", "los",
                                                        "comorbidity"), **data) -> Path:
    root = directory / "dataset"
    root.mkdir(exist_ok=True)
    site = {"name": "mimic", "role": "external", "data": {"path": "dataset", "format": fmt, **data},
            "tasks": list(tasks)}
    file = directory / "site.yaml"
    file.write_text(yaml.safe_dump(site, sort_keys=False))
    return file


def test_mimic_options_go_verbatim_and_the_split_rule_applies(tmp_path: Path,
                                                              fake_readers) -> None:
    options = {"notes": "note/discharge.csv.gz", "skip_elective": True, "nested": {"a": [1, 2]}}
    file = _dataset_site(tmp_path, "mimic-iv", options=options,
                         split={"by": "date", "column": "admittime", "test_from": "2017-01-01"})
    site = load_site(file)
    back = read_site_table(site)
    [(root, passed, where)] = fake_readers["mimic"]
    assert root == tmp_path / "dataset" and passed == options and str(file.name) in where
    assert set(back["split"]) == {"train", "test"} and _patients_in_one_split(back)
    report = summarize(site)
    assert "importer: MIMIC-IV folder (sites.importers.mimic)" in report
    assert "tasks unavailable here: denial (MIMIC-IV has no insurance claims)" in report


def test_mimic_split_by_patient_and_count(tmp_path: Path, fake_readers) -> None:
    site = load_site(_dataset_site(tmp_path, "mimic-iv", split={"seed": 3}))
    back = read_site_table(site)
    assert _patients_in_one_split(back)
    assert count_training_encounters(site) == int((back["split"] == "train").sum())


def test_meds_keeps_its_split_and_drops_undeclared_labels(tmp_path: Path, fake_readers) -> None:
    back = read_site_table(load_site(_dataset_site(tmp_path, "meds", options={"cohort": "x"})))
    assert back["split"].tolist() == fake_readers["returns"]["meds"]["split"].tolist()
    assert "denial" not in back.columns
    assert fake_readers["meds"][0][1] == {"cohort": "x"}


def test_meds_task_without_labels_is_unavailable(tmp_path: Path, fake_readers) -> None:
    fake_readers["returns"]["meds"] = _dataset_table(split=True)
    site = load_site(_dataset_site(tmp_path, "meds", tasks=("mortality", "denial")))
    with pytest.raises(InvalidSiteData, match=r"dataset: task 'denial' is unavailable for MEDS "
                                              r"\(its importer gives no `denial` labels\); "
                                              r"expected `tasks` without 'denial' in .*site.yaml"):
        read_site_table(site)


def test_mimic_declaring_denial_is_refused_before_reading(tmp_path: Path, fake_readers) -> None:
    file = _dataset_site(tmp_path, "mimic-iv", tasks=("mortality", "denial"), split={"seed": 1})
    with pytest.raises(InvalidSiteConfig, match=r"site.yaml: `tasks\[1\]` is 'denial'; expected "
                                                r"tasks MIMIC-IV has labels for: .*denial is "
                                                r"unavailable for MIMIC-IV"):
        load_site(file)
    assert fake_readers["mimic"] == []


def test_reader_errors_reach_the_user_unchanged(tmp_path: Path, monkeypatch) -> None:
    module = types.ModuleType("sites.importers.mimic")

    def read_mimic(root, options, *, where):
        raise InvalidSiteConfig(f"{where}: `data.options.notes` is 3; expected a path")

    module.read_mimic = read_mimic  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sites.importers.mimic", module)
    site = load_site(_dataset_site(tmp_path, "mimic-iv", split={"seed": 1}, options={"notes": 3}))
    with pytest.raises(InvalidSiteConfig, match=r"site.yaml: `data.options.notes` is 3"):
        read_site_table(site)
