"""A MEDS-shaped dataset built in code: four subjects, five labelled encounters, labels by hand.

`meds_events()` and `meds_labels()` return DataFrames (tests change them to break one thing);
`write_meds()` writes `data/**/*.parquet`, `metadata/subject_splits.parquet`,
`metadata/dataset.json` and the label files named by `OPTIONS`. `EXPECTED` holds each encounter's
notes, labels and split under `OPTIONS`, derived in comments.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

OPTIONS: dict[str, object] = {
    "notes": {"admission": "NOTE//ADMISSION", "discharge": "NOTE//DISCHARGE"},
    "labels": {"readmission": "labels/readmission", "mortality": "labels/mortality.parquet",
               "los": "labels/los", "comorbidity": "labels/comorbidity.parquet"},
}

EVENT_SCHEMA = pa.schema([("subject_id", pa.int64()), ("time", pa.timestamp("us")),
                          ("code", pa.string()), ("numeric_value", pa.float32()),
                          ("text_value", pa.string())])
LABEL_SCHEMA = pa.schema([("subject_id", pa.int64()), ("prediction_time", pa.timestamp("us")),
                          ("boolean_value", pa.bool_()), ("integer_value", pa.int64()),
                          ("float_value", pa.float64()), ("categorical_value", pa.string())])
SPLITS: dict[int, str] = {1: "train", 2: "tuning", 3: "held_out", 4: "held_out"}
SHARDS: dict[str, str] = {"train": "data/train/0.parquet", "tuning": "data/tuning/0.parquet",
                          "held_out": "data/held_out/shard/0.parquet"}


def _t(text: str | None) -> pd.Timestamp | None:
    return pd.Timestamp(text) if text else None


def meds_events() -> pd.DataFrame:
    """Events of all subjects; notes carry recognisable texts."""
    rows = [
        (1, None, "GENDER//F", None, None),                         # static: no time
        (1, "2019-06-01 10:00", "NOTE//DISCHARGE", None, "DIS-OLD"),  # older than DIS-1a
        (1, "2020-01-01 09:00", "NOTE//ADMISSION", None, "ADM-1a"),
        (1, "2020-01-01 10:00", "LAB//WBC", 5.0, None),
        (1, "2020-01-05 12:00", "NOTE//DISCHARGE", None, "DIS-1a"),   # exactly at prediction
        (1, "2020-01-10 09:00", "NOTE//ADMISSION", None, "ADM-1b"),
        (1, "2020-01-31 08:00", "NOTE//DISCHARGE//ADDENDUM", None, "DIS-1b"),  # extends the code
        (1, "2020-01-31 09:00", "NOTE//DISCHARGEX", None, "NOT-A-NOTE"),  # another code
        (1, "2020-02-02 09:00", "NOTE//DISCHARGE", None, "DIS-AFTER"),  # after every prediction
        (2, "2021-03-01 08:00", "NOTE//ADMISSION", None, "ADM-2"),
        (2, "2021-03-04 00:00", "NOTE//DISCHARGE", None, "DIS-2"),
        (3, "2022-01-01 08:00", "NOTE//ADMISSION", None, "ADM-3"),  # no discharge note
        (4, "2022-02-01 08:00", "NOTE//ADMISSION", None, "ADM-4"),
        (4, "2022-02-07 20:00", "NOTE//DISCHARGE", None, "DIS-4"),
    ]
    frame = pd.DataFrame(rows, columns=["subject_id", "time", "code", "numeric_value",
                                        "text_value"])
    frame["time"] = pd.to_datetime(frame["time"])
    return frame


def meds_labels() -> dict[str, pd.DataFrame]:
    """Label rows per task: (subject_id, prediction_time, boolean, integer, float)."""
    times = ["2020-01-05 12:00", "2020-02-01 00:00", "2021-03-04 00:00", "2022-01-06 00:00",
             "2022-02-08 00:00"]
    subjects = [1, 1, 2, 3, 4]

    def table(boolean: list, integer: list, floating: list) -> pd.DataFrame:
        return pd.DataFrame({"subject_id": subjects, "prediction_time": pd.to_datetime(times),
                             "boolean_value": pd.array(boolean, dtype="boolean"),
                             "integer_value": pd.array(integer, dtype="Int64"),
                             "float_value": pd.array(floating, dtype="Float64"),
                             "categorical_value": pd.array([None] * 5, dtype="object")})

    none = [None] * 5
    return {
        # readmission: subject 2 written as integer 0, the rest booleans
        "readmission": table([True, False, None, True, True], [None, None, 0, None, None], none),
        "mortality": table([False, True, False, False, False], none, none),
        # days: 4.5 -> "4-5" (2), 2.99 -> floor 2 -> "0-2" (0), 3 (integer) -> "3" (1),
        # 1.0 -> 0, 7.25 -> ">5" (3)
        "los": table(none, [None, None, 3, None, None], [4.5, 2.99, None, 1.0, 7.25]),
        # Charlson scores: 3 -> "3-4" (2), 8 -> ">7" (4), 0 -> 0, 1 -> "1-2" (1), 5 -> "5-7" (3)
        "comorbidity": table(none, [3, 8, 0, 1, 5], none),
    }


EXPECTED: dict[str, tuple[str, str, int, int, int, int, str]] = {
    # encounter: (admission note, discharge note, readmission, mortality, los, comorbidity, split)
    "1@2020-01-05T12:00:00": ("ADM-1a", "DIS-1a", 1, 0, 2, 2, "train"),
    "1@2020-02-01T00:00:00": ("ADM-1b", "DIS-1b", 0, 1, 0, 4, "train"),
    "2@2021-03-04T00:00:00": ("ADM-2", "DIS-2", 0, 0, 1, 0, "validation"),
    # subject 3 has no discharge note: dropped
    "4@2022-02-08T00:00:00": ("ADM-4", "DIS-4", 1, 0, 3, 3, "test"),
}


def write_events(root: Path, events: pd.DataFrame) -> None:
    """One shard per MEDS split, as an ETL writes them."""
    for split, shard in SHARDS.items():
        subjects = [s for s, name in SPLITS.items() if name == split]
        part = events[events["subject_id"].isin(subjects)]
        path = root / shard
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(part, schema=EVENT_SCHEMA, preserve_index=False), path)


def write_labels(root: Path, labels: dict[str, pd.DataFrame]) -> None:
    """Readmission in a folder, mortality and comorbidity as files, LOS split over two files."""
    def write(frame: pd.DataFrame, relative: str) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(frame, schema=LABEL_SCHEMA, preserve_index=False),
                       path)

    write(labels["readmission"], "labels/readmission/part-0.parquet")
    write(labels["mortality"], "labels/mortality.parquet")
    write(labels["los"].iloc[:2], "labels/los/0.parquet")
    write(labels["los"].iloc[2:], "labels/los/1.parquet")
    write(labels["comorbidity"], "labels/comorbidity.parquet")


def write_meds(root: Path, *, events: pd.DataFrame | None = None,
               labels: dict[str, pd.DataFrame] | None = None,
               splits: pd.DataFrame | None = None) -> Path:
    """The whole dataset under `root` (defaults: the fixture's events, labels and splits)."""
    write_events(root, meds_events() if events is None else events)
    write_labels(root, meds_labels() if labels is None else labels)
    metadata = root / "metadata"
    metadata.mkdir(parents=True, exist_ok=True)
    if splits is None:
        splits = pd.DataFrame({"subject_id": list(SPLITS), "split": list(SPLITS.values())})
    splits.to_parquet(metadata / "subject_splits.parquet", index=False)
    (metadata / "dataset.json").write_text(json.dumps(
        {"dataset_name": "fixture", "dataset_version": "1", "etl_name": "tests",
         "etl_version": "0", "meds_version": "0.3.3"}), encoding="utf-8")
    return root
