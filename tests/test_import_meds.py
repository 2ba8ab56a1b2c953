"""MEDS importer: encounters, notes, labels and splits checked by hand on a fixture, the options,
and the messages of malformed input."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pandas as pd
import pytest

from sites.encounter_table import InvalidSiteData
from sites.field_checks import InvalidSiteConfig
from sites.importers.meds import MedsOptions, read_meds
from tests.meds_fixture import EXPECTED, OPTIONS, meds_events, meds_labels, write_meds


def _options(**changes: object) -> dict[str, object]:
    options = copy.deepcopy(OPTIONS)
    options.update(changes)
    return options


def _read(root: Path, options: dict[str, object] | None = None) -> pd.DataFrame:
    return read_meds(root, OPTIONS if options is None else options, where="site.yaml")


def _rows(table: pd.DataFrame) -> dict[str, tuple]:
    return {row.encounter_id: (row.admission_note, row.discharge_note, row.readmission,
                               row.mortality, row.los, row.comorbidity, row.split)
            for row in table.itertuples()}


@pytest.fixture
def meds(tmp_path: Path) -> Path:
    return write_meds(tmp_path)


def test_encounters_match_the_hand_checked_ones(meds: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sites.importers.meds"):
        table = _read(meds)
    assert _rows(table) == EXPECTED
    assert list(table.columns) == ["encounter_id", "patient_id", "admission_note",
                                   "discharge_note", "readmission", "mortality", "los",
                                   "comorbidity", "split"]
    assert table["patient_id"].tolist() == ["1", "1", "2", "4"]
    for column in ("readmission", "mortality", "los", "comorbidity"):
        assert table[column].dtype == "int64"
    assert "denial" not in table
    assert "dropped 1 encounters without a discharge note" in caplog.text


def test_only_the_labelled_tasks_and_their_notes(meds: Path) -> None:
    options = _options(labels={"mortality": "labels/mortality.parquet"},
                       notes={"admission": "NOTE//ADMISSION"})
    table = _read(meds, options)
    assert list(table.columns) == ["encounter_id", "patient_id", "admission_note", "mortality",
                                   "split"]
    # Subject 3 needs no discharge note now: its admission note is the latest before 2022-01-06.
    row = table.set_index("encounter_id").loc["3@2022-01-06T00:00:00"]
    assert (row.admission_note, row.mortality, row.split) == ("ADM-3", 0, "test")
    assert len(table) == 5


def test_labels_already_as_classes(tmp_path: Path) -> None:
    labels = meds_labels()
    labels["los"]["float_value"] = pd.array([None] * 5, dtype="Float64")
    labels["los"]["integer_value"] = pd.array([2, 0, 1, 0, 3], dtype="Int64")
    labels["comorbidity"]["integer_value"] = pd.array([2, 4, 0, 1, 3], dtype="Int64")
    root = write_meds(tmp_path, labels=labels)
    table = _read(root, _options(los_labels="class", comorbidity_labels="class"))
    assert _rows(table) == EXPECTED


def test_max_note_age(meds: Path) -> None:
    # Subject 4's admission note is 7 days before its prediction time; subject 1's second
    # encounter reads an admission note 22 days old.
    table = _read(meds, _options(max_note_age_days=7.5))
    assert sorted(_rows(table)) == ["1@2020-01-05T12:00:00", "2@2021-03-04T00:00:00",
                                    "4@2022-02-08T00:00:00"]


def test_missing_note_can_be_an_error(meds: Path) -> None:
    with pytest.raises(InvalidSiteData, match=r"readmission/part-0\.parquet: row 4: subject_id 3 "
                                              r"has no discharge note \(code 'NOTE//DISCHARGE'\) "
                                              r"at or before prediction_time 2022-01-06"):
        _read(meds, _options(missing_notes="error"))


def test_label_rows_missing_from_another_task_are_dropped(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    labels = meds_labels()
    labels["mortality"] = labels["mortality"].iloc[1:]
    with caplog.at_level(logging.WARNING, logger="sites.importers.meds"):
        table = _read(write_meds(tmp_path, labels=labels))
    assert "1@2020-01-05T12:00:00" not in set(table["encounter_id"])
    assert "dropped 1 label rows" in caplog.text


# --- malformed input --------------------------------------------------------------------------

def _broken_labels(task: str, change) -> dict[str, pd.DataFrame]:
    labels = meds_labels()
    labels[task] = change(labels[task].copy())
    return labels


@pytest.mark.parametrize("task, change, message", [
    ("mortality", lambda t: t.assign(boolean_value=pd.array([None] * 5, dtype="boolean")),
     r"mortality\.parquet: row 1: every value column is empty; expected the label of task "
     r"'mortality'"),
    ("readmission", lambda t: t.assign(integer_value=pd.array([None, None, 2, None, None],
                                                              dtype="Int64")),
     r"part-0\.parquet: row 3, column `integer_value` is 2; expected true/false or 0/1 for task "
     r"'readmission'"),
    ("los", lambda t: t.assign(float_value=pd.array([4.5, -1.0, None, 1.0, 7.25],
                                                    dtype="Float64")),
     r"los/0\.parquet: row 2, column `float_value` is -1\.0; expected a number of days >= 0"),
    ("comorbidity", lambda t: t.assign(integer_value=pd.array([3, 8, 0, 1, None],
                                                              dtype="Int64"),
                                       float_value=pd.array([None] * 4 + [2.5],
                                                            dtype="Float64")),
     r"comorbidity\.parquet: row 5, column `float_value` is 2\.5; expected a whole Charlson "
     r"score"),
    ("comorbidity", lambda t: pd.concat([t, t.iloc[[2]]], ignore_index=True),
     r"comorbidity\.parquet: row 6: subject_id 2 at prediction_time 2021-03-04 00:00:00 is "
     r"labelled twice for task 'comorbidity'"),
])
def test_bad_labels_name_file_and_row(tmp_path: Path, task: str, change, message: str) -> None:
    root = write_meds(tmp_path, labels=_broken_labels(task, change))
    with pytest.raises(InvalidSiteData, match=message):
        _read(root)


def test_label_file_without_prediction_time(meds: Path) -> None:
    meds_labels()["mortality"].drop(columns="prediction_time").to_parquet(
        meds / "labels" / "mortality.parquet", index=False)
    with pytest.raises(InvalidSiteData, match=r"mortality\.parquet: column `prediction_time` is "
                                              r"missing; expected a MEDS label file"):
        _read(meds)


def test_subject_without_split(tmp_path: Path) -> None:
    splits = pd.DataFrame({"subject_id": [1, 2, 3], "split": ["train", "tuning", "held_out"]})
    root = write_meds(tmp_path, splits=splits)
    with pytest.raises(InvalidSiteData, match=r"part-0\.parquet: row 5: subject_id 4 is not in "
                                              r".*subject_splits\.parquet"):
        _read(root)


def test_unknown_split(tmp_path: Path) -> None:
    splits = pd.DataFrame({"subject_id": [1, 2, 3, 4],
                           "split": ["train", "validation", "held_out", "held_out"]})
    root = write_meds(tmp_path, splits=splits)
    with pytest.raises(InvalidSiteData, match=r"subject_splits\.parquet: row 2, column `split` is "
                                              r"'validation'; expected one of train, tuning, "
                                              r"held_out"):
        _read(root)


def test_note_without_text(tmp_path: Path) -> None:
    events = meds_events()
    events.loc[events["text_value"] == "DIS-2", "text_value"] = None
    root = write_meds(tmp_path, events=events)
    with pytest.raises(InvalidSiteData, match=r"data/tuning/0\.parquet: row 2, column `text_value` "
                                              r"is empty for note code 'NOTE//DISCHARGE'"):
        _read(root)


@pytest.mark.parametrize("remove, message", [
    ("metadata/subject_splits.parquet", r"subject_splits\.parquet does not exist"),
    ("metadata/dataset.json", r"dataset\.json does not exist"),
])
def test_missing_metadata(meds: Path, remove: str, message: str) -> None:
    (meds / remove).unlink()
    with pytest.raises(InvalidSiteData, match=message):
        _read(meds)


def test_missing_events_and_labels(meds: Path) -> None:
    with pytest.raises(InvalidSiteData, match=r"labels/nowhere: no label file "
                                              r"\(`data\.options\.labels\.mortality`\)"):
        _read(meds, _options(labels={"mortality": "labels/nowhere"}))
    for shard in (meds / "data").rglob("*.parquet"):
        shard.unlink()
    with pytest.raises(InvalidSiteData, match=r"data: no Parquet file; expected the MEDS events"):
        _read(meds)


def test_not_parquet(meds: Path) -> None:
    (meds / "labels" / "mortality.parquet").write_text("subject_id,prediction_time\n")
    with pytest.raises(InvalidSiteData, match=r"mortality\.parquet: cannot be read as Parquet"):
        _read(meds)


@pytest.mark.parametrize("changes, message", [
    ({"labels": {"readmision": "x"}},
     r"`data\.options\.labels` has unknown key 'readmision' \(did you mean 'readmission'\?\)"),
    ({"labels": {}}, r"`data\.options\.labels` is \{\}; expected a mapping of task"),
    ({"notes": {"admission": "NOTE//ADMISSION"}},
     r"`data\.options\.notes\.discharge` is None; expected the event code of discharge notes "
     r"\(task 'readmission' reads them\)"),
    ({"notes": {"admission": 3, "discharge": "D"}},
     r"`data\.options\.notes\.admission` is 3; expected an event code"),
    ({"los_labels": "hours"}, r"`data\.options\.los_labels` is 'hours'; expected 'days' or "
                              r"'class'"),
    ({"missing_notes": "skip"}, r"`data\.options\.missing_notes` is 'skip'"),
    ({"max_note_age_days": 0}, r"`data\.options\.max_note_age_days` is 0; expected a number"),
    ({"label": {}}, r"`data\.options` has unknown key 'label' \(did you mean 'labels'\?\)"),
])
def test_bad_options_name_the_key(changes: dict, message: str) -> None:
    with pytest.raises(InvalidSiteConfig, match=r"^site\.yaml: " + message):
        MedsOptions.from_mapping(_options(**changes), where="site.yaml")
