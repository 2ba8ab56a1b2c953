"""MIMIC-IV importer: labels checked by hand on a fixture, the options, the admission-note cut, the
Charlson code lists, and the messages of malformed input."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from sites.encounter_table import InvalidSiteData
from sites.field_checks import InvalidSiteConfig
from sites.importers.charlson_codes import CONDITIONS, expand, score_codes
from sites.importers.mimic import COLUMNS, MimicOptions, read_mimic
from sites.importers.note_sections import DROPPED, KEPT, admission_sections
from tests.mimic_fixture import EXPECTED, OUTCOME_WORDS, discharge_note, mimic_tables, write_mimic


def _labels(table: pd.DataFrame) -> dict[str, tuple[int, int, int, int]]:
    return {row.encounter_id: (row.readmission, row.mortality, row.los, row.comorbidity)
            for row in table.itertuples()}


def _read(root: Path, **options: object) -> pd.DataFrame:
    return read_mimic(root, options, where="site.yaml")


@pytest.fixture
def mimic(tmp_path: Path) -> Path:
    return write_mimic(tmp_path)


# --- labels -----------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_labels_match_the_hand_checked_ones(tmp_path: Path, suffix: str) -> None:
    table = _read(write_mimic(tmp_path, suffix=suffix))
    assert _labels(table) == EXPECTED


def test_columns_ids_and_types(mimic: Path) -> None:
    table = _read(mimic)
    assert list(table.columns) == list(COLUMNS)
    assert "split" not in table and "denial" not in table  # denial is unavailable, not zero
    assert pd.api.types.is_datetime64_any_dtype(table["admittime"])
    for column in ("readmission", "mortality", "los", "comorbidity"):
        assert table[column].dtype == "int64"
    first = table.iloc[0]
    assert (first.encounter_id, first.patient_id) == ("101", "1")
    assert first.admittime == pd.Timestamp("2150-01-01 08:00:00")


def test_elective_readmissions_count_only_when_asked(mimic: Path) -> None:
    # 201: an elective admission 10 days later, an emergency one 40 days later.
    assert _labels(_read(mimic))["201"][0] == 0
    counted = _labels(_read(mimic, skip_elective=False))
    assert counted["201"][0] == 1
    assert {k: v for k, v in counted.items() if k != "201"} == {
        k: v for k, v in EXPECTED.items() if k != "201"}


def test_elective_types_are_configurable(mimic: Path) -> None:
    # Only URGENT counts as elective now: 202 (ELECTIVE) is a readmission of 201 again.
    labels = _labels(_read(mimic, elective_admission_types=["urgent"]))
    assert labels["201"][0] == 1
    assert labels["103"][0] == 0  # 104 is URGENT but more than 30 days away anyway


@pytest.mark.parametrize("choice, readmission", [("negative", 0), ("count", 1), ("drop", None)])
def test_index_deaths(mimic: Path, choice: str, readmission: int | None) -> None:
    # 301 ended in death; the organ-donation admission 302 follows one day later.
    labels = _labels(_read(mimic, index_deaths=choice))
    if readmission is None:
        assert "301" not in labels and len(labels) == len(EXPECTED) - 1
    else:
        assert labels["301"] == (readmission, 1, 3, 0)


def test_zero_length_stays_kept_when_asked(mimic: Path) -> None:
    labels = _labels(_read(mimic, drop_nonpositive_los=False))
    # 401: LOS 0 -> "0-2"; nothing after it (itself is not its readmission); Charlson 5 -> 3.
    assert labels["401"] == (0, 0, 0, 3)
    assert labels["400"] == EXPECTED["400"]


def test_dropped_stays_still_count_as_readmissions(mimic: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sites.importers.mimic"):
        labels = _labels(_read(mimic))
    assert "401" not in labels and labels["400"][0] == 1  # LOS-0 stay dropped, still counted
    assert "501" not in labels and labels["500"][0] == 1  # no note, still counted
    assert "600" not in labels
    assert "dropped 1 stays with length of stay <= 0" in caplog.text
    assert "dropped 1 admissions without a discharge note" in caplog.text
    assert "dropped 1 admissions whose discharge note has no admission-time section" in caplog.text


# --- notes ------------------------------------------------------------------------------------

def test_notes_are_the_latest_discharge_note_and_its_admission_part(mimic: Path) -> None:
    table = _read(mimic).set_index("encounter_id")
    assert "OLD-NOTE" not in table.loc["101", "discharge_note"]
    assert "Brief Hospital Course" in table.loc["101", "discharge_note"]
    for hadm, note in table["admission_note"].items():
        for mark in ("CC", "HPI", "PMH", "EXAM", "LABS", "MEDS"):
            assert f"{mark}-MARK-{hadm}" in note
        lowered = note.lower()
        assert not [word for word in OUTCOME_WORDS if word in lowered], hadm
    assert not table["admission_note"].str.contains("OUTSIDE-NOTE").any()


@pytest.mark.parametrize("died", [False, True])
def test_outcome_words_never_survive_the_cut(died: bool) -> None:
    note = admission_sections(discharge_note(7, died=died)).lower()
    assert note.startswith("service: medicine")
    assert not [word for word in OUTCOME_WORDS if word in note]
    assert "mother died of mi at 80." in note  # family history is admission-time text


@pytest.mark.parametrize("section, outcome", [
    ("Brief Hospital Course:", "Patient expired at 03:00."),
    ("Hospital Course:", "Passed away"),
    ("Discharge Disposition:", "Expired"),
    ("DISCHARGE DIAGNOSIS:", "cardiac arrest, expired"),
    ("Discharge Condition:", "deceased"),
    ("Discharge Medications:", "none, patient expired"),
    ("Discharge Instructions:", "family notified of death"),
    ("Followup Instructions:", "none, expired"),
    ("Transitional Issues:", "expired"),
    ("Death Note:", "pronounced dead"),
    ("Discharge physical exam", "no pulse, expired"),
    ("ON DISCHARGE:", "expired"),
    ("Expired", "on ___ at 03:00"),
    ("Time of death: 03:00", "pronounced dead"),
])
def test_a_discharge_section_after_a_kept_one_is_cut(section: str, outcome: str) -> None:
    note = (f"Chief Complaint:\nfever\nHistory of Present Illness:\nfever for days\n"
            f"{section}\n{outcome}\nSocial History:\nlives alone")
    kept = admission_sections(note)
    assert kept == ("Chief Complaint:\nfever\nHistory of Present Illness:\nfever for days\n"
                    "Social History:\nlives alone")


@pytest.mark.parametrize("line, kept", [
    ("HPI: fever", True),                        # same-line content belongs to the section
    ("  history  of  present  illness :x", True),  # blanks collapsed, case ignored
    ("PAST MEDICAL HISTORY:\nx", True),
    ("Medications on Admission:\nx", True),
    ("Name: ___ Unit No: ___", False),           # identification only
    ("Major Surgical or Invasive Procedure:\nx", False),
    ("Random heading:\nx", False),               # unknown header before any kept one
])
def test_header_matching(line: str, kept: bool) -> None:
    assert bool(admission_sections(line)) is kept


def test_results_keep_only_admission_blocks() -> None:
    note = ("Pertinent Results:\n___ 07:00AM BLOOD WBC-12 unheaded\nLABS ON ARRIVAL:\n"
            "___ BLOOD Na-140 arrival\nMICRO:\nblood culture positive\nIMAGING\nCT bleed\n"
            "Admission labs:\n___ BLOOD K-4.0 admit\nDISCHARGE LABS:\n___ BLOOD Na-150")
    assert admission_sections(note) == ("Pertinent Results:\nLABS ON ARRIVAL:\n"
                                        "___ BLOOD Na-140 arrival\nAdmission labs:\n"
                                        "___ BLOOD K-4.0 admit")


def test_kept_and_dropped_headers_are_disjoint() -> None:
    assert not KEPT & DROPPED
    assert admission_sections("") == ""
    assert admission_sections("Brief Hospital Course:\nfine") == ""


# --- Charlson ---------------------------------------------------------------------------------

@pytest.mark.parametrize("codes, score", [
    ([], 0),
    ([("4280", 9), ("25040", 9), ("1977", 9)], 1 + 2 + 6),   # CHF + diabetes w/ cc + metastatic
    ([("25000", 9), ("25040", 9)], 2),                        # diabetes counted once, severe form
    ([("1749", 9), ("1977", 9)], 6),                          # malignancy superseded
    ([("5715", 9), ("4560", 9)], 3),                          # mild liver superseded
    ([("40403", 9)], 1 + 2),                                  # one code, CHF and renal
    ([("4254", 9)], 1), ([("4253", 9)], 0),                   # range edge 425.4-425.9
    ([("4439", 9)], 1), ([("4430", 9)], 0),                   # 443.1-443.9
    ([("V4511", 9)], 2), ([("V56", 9)], 2), ([("V434", 9)], 1),
    ([("E1010", 10)], 1), ([("E1011", 10)], 1),               # E10.1: charlson.sql's `E10l`
    ([("E1122", 10), ("E119", 10)], 2),
    ([("I425", 10)], 1), ([("I424", 10)], 0),                 # I42.5-I42.9, not I42.4
    ([("C439", 10)], 2), ([("C449", 10)], 0),                 # skin cancer other than melanoma
    ([("C800", 10), ("C349", 10)], 6),
    ([("B20", 10), ("K259", 10), ("Z992", 10)], 6 + 1 + 2),
    ([("I50.9", 10)], 1),                                     # dots are ignored
    ([("4280", 10)], 0), ([("I509", 9)], 0),                  # the version picks the list
    ([("410", 9), ("I21", 10)], 1),                           # a condition counts once
])
def test_charlson_scores_by_hand(codes: list[tuple[str, int]], score: int) -> None:
    assert score_codes(codes) == score


def test_charlson_table_shape() -> None:
    assert len(CONDITIONS) == 17
    assert sum(c.weight for c in CONDITIONS) == 33
    assert expand("I425-I429") == ("I425", "I426", "I427", "I428", "I429")
    assert expand("042-044") == ("042", "043", "044")
    with pytest.raises(ValueError, match="same-length"):
        expand("C00-C1")


# --- malformed input --------------------------------------------------------------------------

def _write(tmp_path: Path, name: str, change) -> Path:
    tables = mimic_tables()
    tables[name] = change(tables[name].copy())
    return write_mimic(tmp_path, tables)


def test_missing_table_names_both_expected_paths(mimic: Path) -> None:
    (mimic / "hosp" / "diagnoses_icd.csv").unlink()
    with pytest.raises(InvalidSiteData, match=r"hosp/diagnoses_icd\.csv\.gz does not exist "
                                              r"\(nor diagnoses_icd\.csv\)"):
        _read(mimic)


def test_two_copies_of_a_table(mimic: Path) -> None:
    write_mimic(mimic, {"note/discharge": mimic_tables()["note/discharge"]}, suffix=".csv.gz")
    with pytest.raises(InvalidSiteData, match=r"discharge\.csv\.gz and .*discharge\.csv both "
                                              "exist; expected one copy"):
        _read(mimic)


@pytest.mark.parametrize("name, change, message", [
    ("hosp/admissions", lambda t: t.drop(columns="admission_type"),
     r"admissions\.csv: column `admission_type` is missing"),
    ("hosp/admissions", lambda t: t.assign(admittime=t["admittime"].astype(str).where(
        t.index != 2, "yesterday")),
     r"admissions\.csv: row 3, column `admittime` is 'yesterday'; expected a date-time"),
    ("hosp/admissions", lambda t: t.assign(hospital_expire_flag=t["hospital_expire_flag"]
                                           .astype(str).where(t.index != 0, "yes")),
     r"admissions\.csv: row 1, column `hospital_expire_flag` is 'yes'; expected 0 or 1"),
    ("hosp/admissions", lambda t: pd.concat([t, t.iloc[[1]]], ignore_index=True),
     r"admissions\.csv: row 15, column `hadm_id` is '102'; expected one row per admission"),
    ("hosp/patients", lambda t: t[t["subject_id"] != 5],
     r"admissions\.csv: row 12, column `subject_id` is '5'; expected a subject listed in "
     r".*patients\.csv"),
    ("hosp/diagnoses_icd", lambda t: t.assign(icd_version=t["icd_version"].where(
        t.index != 4, 11)),
     r"diagnoses_icd\.csv: row 5, column `icd_version` is '11'; expected 9 or 10"),
    ("hosp/diagnoses_icd", lambda t: t.assign(hadm_id=t["hadm_id"].astype(str).where(
        t.index != 0, "H1")),
     r"diagnoses_icd\.csv: row 1, column `hadm_id` is 'H1'; expected a whole-number id"),
    ("note/discharge", lambda t: t.assign(text=t["text"].where(t.index != 3, " ")),
     r"discharge\.csv: row 4, column `text` is ' '; expected the note text"),
])
def test_bad_rows_name_file_row_and_column(tmp_path: Path, name: str, change,
                                           message: str) -> None:
    with pytest.raises(InvalidSiteData, match=message):
        _read(_write(tmp_path, name, change))


def test_negative_stay_is_an_error_when_not_dropped(tmp_path: Path) -> None:
    def backwards(t: pd.DataFrame) -> pd.DataFrame:
        t.loc[t["hadm_id"] == 401, "dischtime"] -= pd.Timedelta(hours=1)
        return t
    root = _write(tmp_path, "hosp/admissions", backwards)
    assert "401" not in _labels(_read(root))
    with pytest.raises(InvalidSiteData, match=r"admissions\.csv: row 11, column `dischtime` is "
                                              r"'2150-01-07 19:00:00'; expected a time at or "
                                              r"after `admittime`"):
        _read(root, drop_nonpositive_los=False)


def test_no_encounter_left(tmp_path: Path) -> None:
    root = _write(tmp_path, "note/discharge", lambda t: t.iloc[:0])
    with pytest.raises(InvalidSiteData, match="no admission has a discharge note"):
        _read(root)


@pytest.mark.parametrize("options, message", [
    ({"skip_elective": "yes"},
     r"^site\.yaml: `data\.options\.skip_elective` is 'yes'; expected true or false$"),
    ({"skip_electives": True},
     r"`data\.options` has unknown key 'skip_electives' \(did you mean 'skip_elective'\?\)"),
    ({"index_deaths": "exclude"},
     r"`data\.options\.index_deaths` is 'exclude'; expected 'negative', 'drop' or 'count'"),
    ({"elective_admission_types": "ELECTIVE"},
     r"`data\.options\.elective_admission_types` is 'ELECTIVE'; expected a list"),
    ({"elective_admission_types": []},
     r"`data\.options\.elective_admission_types` is \[\]; expected a non-empty list"),
    ({"drop_nonpositive_los": 1},
     r"`data\.options\.drop_nonpositive_los` is 1; expected true or false"),
])
def test_bad_options_name_the_key(options: dict, message: str) -> None:
    with pytest.raises(InvalidSiteConfig, match=message):
        MimicOptions.from_mapping(options, where="site.yaml")


def test_options_are_checked_before_files_are_read(tmp_path: Path) -> None:
    with pytest.raises(InvalidSiteConfig, match="skip_elective"):
        read_mimic(tmp_path / "nowhere", {"skip_elective": "no"}, where="site.yaml")
    with pytest.raises(InvalidSiteConfig, match=r"`data\.options` is 'x'; expected a mapping"):
        MimicOptions.from_mapping("x", where="site.yaml")
    assert MimicOptions.from_mapping(None, where="site.yaml") == MimicOptions()
