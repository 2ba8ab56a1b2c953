"""Encounter tables: round trips in every format, atomic writes, and each bad-input message."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sites.config import DataSource, SiteConfig, SyntheticSpec
from sites.dataset import read_site_table, write_site_table
from sites.encounter_table import InvalidSiteData, required_columns
from sites.synthetic import generate_site
from sites.tasks import TASK_NAMES

SUFFIX = {"parquet": ".parquet", "jsonl": ".jsonl", "csv": ".csv"}


def _site(path: Path, fmt: str = "parquet", tasks: tuple[str, ...] = TASK_NAMES) -> SiteConfig:
    return SiteConfig(name="t", role="train", data=DataSource(path=path, format=fmt), tasks=tasks)


def _table() -> pd.DataFrame:
    """Four encounters of three patients, every column the five tasks need."""
    return pd.DataFrame({
        "encounter_id": ["e1", "e2", "e3", "e4"],
        "patient_id": ["p1", "p1", "p2", "p3"],
        "split": ["train", "train", "validation", "test"],
        "admission_note": ["65 yo M with CAP.", "Admit for CHF.", "Syncope.", "Hip fx."],
        "discharge_note": ["Home.", "SNF.", "Home w/ VNA.", "Rehab."],
        "readmission": [0, 1, 0, 0],
        "mortality": [0, 0, 0, 1],
        "los": [0, 3, 1, 2],
        "comorbidity": [0, 4, 2, 1],
        "denial": [1, 0, 0, 0],
    })


@pytest.fixture(scope="module")
def generated() -> pd.DataFrame:
    return generate_site(SyntheticSpec("community", 60), site_name="t", seed=5)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_round_trip_every_format(tmp_path: Path, generated: pd.DataFrame, fmt: str) -> None:
    source = DataSource(path=tmp_path / f"t{SUFFIX[fmt]}", format=fmt)
    write_site_table(generated, source)
    back = read_site_table(_site(source.path, fmt))
    pd.testing.assert_frame_equal(back, generated, check_dtype=False, check_exact=False,
                                  rtol=1e-12)
    assert back["los"].dtype == np.int64
    assert pd.api.types.is_string_dtype(back["encounter_id"])


def test_numeric_ids_are_read_as_strings(tmp_path: Path) -> None:
    table = _table().assign(encounter_id=[11, 12, 13, 14], patient_id=[1, 1, 2, 3])
    for fmt in ("csv", "jsonl", "parquet"):
        path = tmp_path / f"t{SUFFIX[fmt]}"
        write_site_table(table, DataSource(path=path, format=fmt))
        back = read_site_table(_site(path, fmt))
        assert back["encounter_id"].tolist() == ["11", "12", "13", "14"]


def test_only_the_columns_of_the_sites_tasks_are_required(tmp_path: Path) -> None:
    table = _table().drop(columns=["discharge_note", "readmission", "los", "comorbidity"])
    path = tmp_path / "t.parquet"
    write_site_table(table, DataSource(path=path, format="parquet"))
    back = read_site_table(_site(path, tasks=("mortality", "denial")))
    assert len(back) == 4
    assert "discharge_note" not in required_columns(("mortality",))


def _set(column: str, row: int, value: object):
    def change(df: pd.DataFrame) -> pd.DataFrame:
        df = df.astype({column: object})
        df.loc[row, column] = value
        return df
    return change


BAD_TABLES = [
    (lambda df: df.drop(columns=["discharge_note"]),
     r"column `discharge_note` is missing; expected it for the discharge note read by task "
     r"'readmission'"),
    (lambda df: df.drop(columns=["los"]), r"column `los` is missing; expected it for the label of "
                                          r"task 'los'"),
    (lambda df: df.drop(columns=["split"]),
     r"column `split` is missing; expected it for the split"),
    (lambda df: df.iloc[:0], r"has no rows; expected one row per encounter"),
    (_set("admission_note", 2, "   "),
     r"row 3, column `admission_note` is empty; expected the note"),
    (_set("discharge_note", 0, None),
     r"row 1, column `discharge_note` is empty; expected the note"),
    (_set("los", 1, 4), r"row 2, column `los` is 4; expected an integer class: 0 \(0-2\), 1 \(3\), "
                        r"2 \(4-5\), 3 \(>5\)"),
    (_set("mortality", 3, 0.5), r"row 4, column `mortality` is 0.5; expected an integer class: "
                                r"0 \(no\), 1 \(yes\)"),
    (_set("denial", 0, -1), r"row 1, column `denial` is -1; expected an integer class"),
    (_set("comorbidity", 2, "yes"), r"row 3, column `comorbidity` is 'yes'; expected an integer"),
    (_set("readmission", 1, None), r"row 2, column `readmission` is missing; expected an integer"),
    (_set("encounter_id", 3, "e2"), r"row 4, column `encounter_id` is 'e2', already used at row 2; "
                                    r"expected unique encounter ids"),
    (_set("encounter_id", 0, ""),
     r"row 1, column `encounter_id` is empty; expected a non-empty id"),
    (_set("split", 2, "dev"), r"row 3, column `split` is 'dev'; expected one of train, validation, "
                              r"test"),
    (_set("split", 1, "test"),
     r"row 2, column `split`: patient 'p1' is in 'test' but in 'train' at row 1; expected all "
     r"encounters of a patient in one split"),
]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize(("change", "match"), BAD_TABLES)
def test_bad_table_names_file_row_column(tmp_path: Path, fmt: str, change, match: str) -> None:
    path = tmp_path / f"t{SUFFIX[fmt]}"
    table = change(_table())
    if fmt == "parquet":  # a parquet column has one type: store text mixed with numbers as text
        table = table.astype({c: str for c in table.columns
                              if table[c].map(lambda v: isinstance(v, str)).nunique() > 1})
    write_site_table(table, DataSource(path=path, format=fmt))
    with pytest.raises(InvalidSiteData, match=match) as error:
        read_site_table(_site(path, fmt))
    assert str(error.value).startswith(f"{path}: ")


def test_missing_table(tmp_path: Path) -> None:
    with pytest.raises(InvalidSiteData, match=r"t\.parquet: does not exist; expected the encounter "
                                              r"table of site 't'"):
        read_site_table(_site(tmp_path / "t.parquet"))


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_unreadable_table(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"t{SUFFIX[fmt]}"
    path.write_bytes(b"\x00\x01 not a table {")
    with pytest.raises(InvalidSiteData, match=rf"cannot be read as {fmt} \(.*\); expected a {fmt}"):
        read_site_table(_site(path, fmt))


def test_failed_write_leaves_the_old_table_and_no_temporary(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "t.parquet"
    source = DataSource(path=path, format="parquet")
    write_site_table(_table(), source)
    before = path.read_bytes()

    def half_written(self, target, **kwargs):
        Path(target).write_bytes(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_site_table(_table(), source)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["t.parquet"]


def test_write_creates_folders_with_readable_permissions(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "t.csv"
    write_site_table(_table(), DataSource(path=path, format="csv"))
    assert path.stat().st_mode & 0o044  # group/other may read, as for any other file
