"""MIMIC-IV (hosp + note modules) -> the canonical encounter table, one row per admission.

Why here: MIMIC-IV is the public stand-in for an external health system (the paper's external site
was MIMIC-III), and a hospital with a MIMIC-shaped warehouse can use the same path. The labels
follow the project's task reference:

- readmission: another admission of the same subject starts at or after this one's `dischtime` and
  at most 30 days after it (exactly 30 days counts). Admissions that overlap the stay are not
  readmissions. With `skip_elective` (default on) admissions of an elective type do not count (a
  planned admission is not a readmission); an elective admission still counts as an index stay.
  Every admission in `admissions` can be the later one, even one without a note or with LOS <= 0.
- mortality: `hospital_expire_flag` = 1.
- los: (`dischtime` - `admittime`) in days, binned by `sites.tasks.los_class`. Stays with LOS <= 0
  are dropped (option `drop_nonpositive_los`, default on); with it off a zero-length stay is kept
  and a negative one is an error.
- comorbidity: Charlson index of the admission's `diagnoses_icd` (Quan 2005 code lists,
  `sites.importers.charlson_codes`), binned by `sites.tasks.cci_class`.
- denial: unavailable (MIMIC has no claims outcome), so the table has no `denial` column.

Stays that end in death (`hospital_expire_flag` = 1) cannot be followed by a readmission, yet
MIMIC-IV has admissions after a death (organ donation). Option `index_deaths` says what they are
for readmission: `negative` (default: label 0 whatever follows; the row stays, mortality needs it),
`drop` (the whole row goes: use it only for a readmission-only site, mortality loses its positives),
or `count` (like any other stay).

Notes: the discharge note is `note/discharge` `text` (the latest by `charttime` when an admission
has several); the admission note is its admission-time sections (`sites.importers.note_sections`).
Admissions without a discharge note, or whose cut leaves no admission text, are dropped and
counted in the log. `admittime` is returned for a temporal split; MIMIC-IV shifts each patient's
dates by its own offset, so it orders one patient's stays, not calendar time across patients.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

import sites.importers.mimic_tables as tables
from sites.field_checks import FieldError
from sites.importers.charlson_codes import charlson_index, normalize_code
from sites.importers.checks import build, check_mapping, data_error, is_bool, is_text, typed
from sites.importers.note_sections import admission_sections
from sites.tasks import cci_class, los_class

logger = logging.getLogger(__name__)

IndexDeaths = Literal["negative", "drop", "count"]
READMISSION_WINDOW = pd.Timedelta(days=30)
"""The task's window: a later admission starting at most this long after discharge counts."""

ADMISSIONS = "hosp/admissions"
PATIENTS = "hosp/patients"
DIAGNOSES = "hosp/diagnoses_icd"
DISCHARGE = "note/discharge"

COLUMNS: tuple[str, ...] = (
    "encounter_id", "patient_id", "admittime", "admission_note", "discharge_note",
    "readmission", "mortality", "los", "comorbidity",
)
"""Columns of the table `read_mimic` returns, in order."""


@dataclass(frozen=True)
class MimicOptions:
    """The MIMIC-IV definition choices a site YAML may set under `data.options`."""

    skip_elective: bool = True
    """Elective admissions do not count as readmissions."""
    elective_admission_types: tuple[str, ...] = ("ELECTIVE", "SURGICAL SAME DAY ADMISSION")
    """`admission_type` values that are elective (compared upper-cased, blanks trimmed): MIMIC-IV's
    two planned kinds."""
    index_deaths: IndexDeaths = "negative"
    """Readmission label of stays ending in death: `negative`, `drop` (row) or `count`."""
    drop_nonpositive_los: bool = True
    """Drop stays whose discharge is not after their admission (LOS <= 0)."""

    def __post_init__(self) -> None:
        if not self.elective_admission_types:
            raise FieldError("elective_admission_types", [], "a non-empty list of "
                              "admission_type values")
        if self.index_deaths not in get_args(IndexDeaths):
            raise FieldError("index_deaths", self.index_deaths, "'negative', 'drop' or 'count'")

    @classmethod
    def from_mapping(cls, raw: object, *, where: str) -> MimicOptions:
        """Options from the raw YAML mapping; errors name `where` and `data.options.KEY`."""
        names = tuple(field.name for field in fields(cls))
        given = check_mapping(raw, where=where, key="", allowed=names)
        for key in ("skip_elective", "drop_nonpositive_los"):
            if key in given:
                typed(given[key], where=where, key=key, ok=is_bool, expected="true or false")
        if "elective_admission_types" in given:
            value = given["elective_admission_types"]
            typed(value, where=where, key="elective_admission_types",
                  ok=lambda v: isinstance(v, (list, tuple)) and all(is_text(x) for x in v),
                  expected="a list of admission_type values")
            given["elective_admission_types"] = tuple(str(x).strip().upper() for x in value)
        return build(cls, given, where=where)


def read_mimic(root: Path, options: Mapping[str, object], *, where: str) -> pd.DataFrame:
    """The canonical encounter table of a MIMIC-IV folder (see the module docstring)."""
    settings = MimicOptions.from_mapping(options, where=where)
    root = Path(root)
    paths = {name: tables.find_table(root, name)
             for name in (ADMISSIONS, PATIENTS, DIAGNOSES, DISCHARGE)}
    stays = _admissions(paths[ADMISSIONS])
    _known_subjects(stays, paths[PATIENTS], admissions=paths[ADMISSIONS])
    stays["readmission"] = readmitted(stays, settings)
    stays = _with_los(stays, settings, path=paths[ADMISSIONS])
    stays["charlson"] = charlson_index(_diagnoses(paths[DIAGNOSES]), stays["hadm_id"]).to_numpy()
    stays = _with_notes(stays, _discharge_notes(paths[DISCHARGE]))
    stays = _apply_index_deaths(stays, settings)
    if stays.empty:
        raise data_error(f"{root}: no admission has a discharge note with admission-time "
                         "sections; expected at least one encounter")
    return _canonical(stays)


def readmitted(stays: pd.DataFrame, options: MimicOptions) -> pd.Series:
    """1 where another admission of the subject (not elective, with `skip_elective`) starts in
    [dischtime, dischtime + 30 days], else 0; indexed like `stays`.

    Counts candidates in that window with one sorted search per stay: each admission gets the key
    (subject rank, seconds since the earliest time) so that a window is one contiguous key range.
    """
    t0 = min(stays["admittime"].min(), stays["dischtime"].min())
    admit = ((stays["admittime"] - t0) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
    disch = ((stays["dischtime"] - t0) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
    window = int(READMISSION_WINDOW // pd.Timedelta(seconds=1))
    span = int(max(admit.max(), disch.max())) + window + 1
    subject = pd.factorize(stays["subject_id"])[0].astype(np.int64) * span
    candidate = np.ones(len(stays), dtype=bool)
    if options.skip_elective:
        kind = stays["admission_type"].str.strip().str.upper()
        candidate = ~kind.isin(options.elective_admission_types).to_numpy()
    keys = np.sort((subject + admit)[candidate])
    low, high = subject + disch, subject + disch + window
    found = np.searchsorted(keys, high, side="right") - np.searchsorted(keys, low, side="left")
    itself = candidate & (admit >= disch) & (admit <= disch + window)  # only when LOS <= 0
    return pd.Series((found - itself > 0).astype(np.int64), index=stays.index)


def _admissions(path: Path) -> pd.DataFrame:
    table = tables.read_table(path, ("subject_id", "hadm_id", "admittime", "dischtime",
                                     "admission_type", "hospital_expire_flag"))
    stays = pd.DataFrame({
        "subject_id": tables.ids(table, "subject_id", path),
        "hadm_id": tables.ids(table, "hadm_id", path),
        "admittime": tables.times(table, "admittime", path),
        "dischtime": tables.times(table, "dischtime", path),
        "admission_type": table["admission_type"].astype(str),
        "mortality": tables.flags(table, "hospital_expire_flag", path),
    })
    duplicated = stays["hadm_id"].duplicated().to_numpy()
    tables.bad_row(path, table["hadm_id"], duplicated, "hadm_id", "one row per admission")
    return stays


def _known_subjects(stays: pd.DataFrame, patients: Path, *, admissions: Path) -> None:
    known = tables.ids(tables.read_table(patients, ("subject_id",)), "subject_id", patients)
    unknown = ~stays["subject_id"].isin(known).to_numpy()
    tables.bad_row(admissions, stays["subject_id"].astype(str), unknown, "subject_id",
                   f"a subject listed in {patients}")


def _with_los(stays: pd.DataFrame, options: MimicOptions, *, path: Path) -> pd.DataFrame:
    days = (stays["dischtime"] - stays["admittime"]) / pd.Timedelta(days=1)
    if options.drop_nonpositive_los:
        keep = (days > 0).to_numpy()
        if not keep.all():
            logger.info("%s: dropped %d stays with length of stay <= 0", path, int((~keep).sum()))
        stays, days = stays[keep], days[keep]
    else:
        shown = stays["dischtime"].astype(str)
        tables.bad_row(path, shown, (days < 0).to_numpy(), "dischtime",
                       "a time at or after `admittime` (or `drop_nonpositive_los: true`)")
    return stays.assign(los=[los_class(float(d)) for d in days]).reset_index(drop=True)


def _diagnoses(path: Path) -> pd.DataFrame:
    table = tables.read_table(path, ("hadm_id", "icd_code", "icd_version"))
    code = normalize_code(table["icd_code"])
    tables.bad_row(path, table["icd_code"], (code == "").to_numpy(), "icd_code", "an ICD code")
    version = table["icd_version"].str.strip()
    tables.bad_row(path, table["icd_version"], ~version.isin(["9", "10"]).to_numpy(),
                   "icd_version", "9 or 10")
    return pd.DataFrame({"hadm_id": tables.ids(table, "hadm_id", path), "icd_code": code,
                         "icd_version": version.astype("int64")})


def _discharge_notes(path: Path) -> pd.DataFrame:
    """One discharge note per admission (the latest by `charttime`): `hadm_id`, `text`."""
    table = tables.read_table(path, ("hadm_id", "charttime", "text"))
    table = table[table["hadm_id"].str.strip() != ""]  # notes outside an admission: not ours
    notes = pd.DataFrame({"hadm_id": tables.ids(table, "hadm_id", path),
                          "charttime": tables.times(table, "charttime", path),
                          "text": table["text"].astype(str)})
    blank = (notes["text"].str.strip() == "").to_numpy()
    tables.bad_row(path, notes["text"], blank, "text", "the note text")
    return notes.sort_values(["hadm_id", "charttime"], kind="stable").drop_duplicates(
        "hadm_id", keep="last")[["hadm_id", "text"]]


def _with_notes(stays: pd.DataFrame, notes: pd.DataFrame) -> pd.DataFrame:
    merged = stays.merge(notes, on="hadm_id", how="inner")
    if len(merged) < len(stays):
        logger.info("MIMIC-IV: dropped %d admissions without a discharge note",
                    len(stays) - len(merged))
    merged["admission_note"] = [admission_sections(text) for text in merged["text"]]
    empty = merged["admission_note"] == ""
    if empty.any():
        logger.warning("MIMIC-IV: dropped %d admissions whose discharge note has no "
                       "admission-time section", int(empty.sum()))
    return merged[~empty].rename(columns={"text": "discharge_note"}).reset_index(drop=True)


def _apply_index_deaths(stays: pd.DataFrame, options: MimicOptions) -> pd.DataFrame:
    died = stays["mortality"] == 1
    if options.index_deaths == "negative":
        return stays.assign(readmission=stays["readmission"].where(~died, 0))
    if options.index_deaths == "drop":
        logger.info("MIMIC-IV: dropped %d stays ending in death (index_deaths: drop)",
                    int(died.sum()))
        return stays[~died].reset_index(drop=True)
    return stays


def _canonical(stays: pd.DataFrame) -> pd.DataFrame:
    table = pd.DataFrame({
        "encounter_id": stays["hadm_id"].astype(str),
        "patient_id": stays["subject_id"].astype(str),
        "admittime": stays["admittime"],
        "admission_note": stays["admission_note"].astype(str),
        "discharge_note": stays["discharge_note"].astype(str),
        "readmission": stays["readmission"].astype("int64"),
        "mortality": stays["mortality"].astype("int64"),
        "los": stays["los"].astype("int64"),
        "comorbidity": [cci_class(int(score)) for score in stays["charlson"]],
    })
    table["comorbidity"] = table["comorbidity"].astype("int64")
    return table[list(COLUMNS)].sort_values("encounter_id", key=lambda s: s.astype("int64"),
                                            ignore_index=True)
