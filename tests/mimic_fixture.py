"""A MIMIC-IV-shaped folder built in code: a dozen admissions whose every label is checked by hand.

`mimic_tables()` returns the four tables as DataFrames (tests change them to break one thing);
`write_mimic()` writes them as `hosp/*.csv[.gz]` and `note/discharge.csv[.gz]`. `EXPECTED` holds
the labels under the default options, each derived in a comment next to its admission.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

T0 = pd.Timestamp("2150-01-01 08:00:00")
DAY = pd.Timedelta(days=1)
MINUTE = pd.Timedelta(minutes=1)
FORMAT = "%Y-%m-%d %H:%M:%S"


def _stay(subject: int, hadm: int, admit: pd.Timestamp, los_days: float, kind: str = "EW EMER.",
          died: int = 0) -> dict[str, object]:
    return {"subject_id": subject, "hadm_id": hadm, "admittime": admit,
            "dischtime": admit + los_days * DAY, "admission_type": kind,
            "hospital_expire_flag": died}


def _admissions() -> list[dict[str, object]]:
    rows = []

    def add(*args: object, **kwargs: object) -> pd.Timestamp:
        rows.append(_stay(*args, **kwargs))
        return rows[-1]["dischtime"]

    # Subject 1: a readmission chain; LOS 2, 3, 4, 5 days (bin edges).
    d101 = add(1, 101, T0, 2.0)                          # next 17 d later -> readmission 1
    d102 = add(1, 102, d101 + 17 * DAY, 3.0)             # next exactly 30 d later -> 1
    d103 = add(1, 103, d102 + 30 * DAY, 4.0)             # next 30 d + 1 min later -> 0
    add(1, 104, d103 + 30 * DAY + MINUTE, 5.0, "URGENT")  # none after -> 0
    # Subject 2: an elective readmission; LOS 6, 2.5 and 3.9 days (fractions floor).
    d201 = add(2, 201, T0, 6.0)       # elective at +10 d, emergency at +40 d -> 0 (1 if counted)
    d202 = add(2, 202, d201 + 10 * DAY, 2.5, "ELECTIVE")  # emergency 27.5 d later -> 1
    assert d202 + 27.5 * DAY == d201 + 40 * DAY
    add(2, 203, d201 + 40 * DAY, 3.9)                     # none after -> 0
    # Subject 3: an in-hospital death, then an organ-donation admission the next day.
    d301 = add(3, 301, T0, 7.0, died=1)                   # readmission 0 (index_deaths: negative)
    add(3, 302, d301 + 1 * DAY, 1.0, "DIRECT EMER.")      # none after -> 0
    # Subject 4: a stay followed by a zero-length one (dropped by default, still a readmission).
    d400 = add(4, 400, T0, 1.5)                           # LOS-0 stay 5 d later -> 1
    add(4, 401, d400 + 5 * DAY, 0.0)                      # dropped (LOS <= 0)
    # Subject 5: the readmission has no discharge note (no encounter, still a readmission).
    d500 = add(5, 500, T0, 5.5)                           # next 5 d later -> 1
    add(5, 501, d500 + 5 * DAY, 2.0)                      # no note -> not an encounter
    # Subject 6: a discharge note with no admission-time section -> dropped.
    add(6, 600, T0, 3.0)
    return rows


DIAGNOSES: dict[int, list[tuple[str, int]]] = {
    # ICD-9: CHF 4280 (1) + diabetes w/ complications 25040 (2, supersedes 25000) + metastatic 1977
    # (6, supersedes the solid tumour 1749) = 9 -> class ">7" (4)
    101: [("4280", 9), ("25040", 9), ("1977", 9), ("1749", 9), ("25000", 9)],
    # ICD-9: MI 41071 (1) + COPD 4928 (1) = 2 -> class "1-2" (1)
    102: [("41071", 9), ("4928", 9)],
    # ICD-9: 40403 is both CHF (1) and renal disease (2) = 3 -> class "3-4" (2)
    103: [("40403", 9)],
    # none -> 0 -> class "0" (0)
    104: [],
    # ICD-10: E1010 diabetes (1; MIMIC's charlson.sql misses it, `E10l`) + K7030 mild liver
    # (superseded) + I8500 severe liver (3) = 4 -> class "3-4" (2)
    201: [("E1010", 10), ("K7030", 10), ("I8500", 10)],
    # ICD-10: C349 malignancy (2) + J449 COPD (1) + F0390 dementia (1) + M0579 rheumatic (1)
    # = 5 -> class "5-7" (3)
    202: [("C349", 10), ("J449", 10), ("F0390", 10), ("M0579", 10)],
    # ICD-10: I5032 CHF (1) + E1122 diabetes w/ complications (2) + C787 metastatic (6)
    # = 9 -> class ">7" (4)
    203: [("I5032", 10), ("E1122", 10), ("C787", 10)],
    # ICD-9: hypertension 4019 and acute kidney injury 5849 are not Charlson -> 0 -> class 0
    301: [("4019", 9), ("5849", 9)],
    # ICD-10 written with a dot: I50.9 CHF (1) -> class "1-2" (1)
    302: [("I50.9", 10)],
    # ICD-10: AIDS B20 (6) + metastatic C801 (6) + peptic ulcer K259 (1) = 13 -> class 4
    400: [("B20", 10), ("C801", 10), ("K259", 10)],
    # ICD-9: renal V420 (2) + mild liver 5715 (superseded) + severe liver 4560 (3) = 5 -> class 3
    401: [("V420", 9), ("5715", 9), ("4560", 9)],
    # ICD-10: MI I214 (1) + hemiplegia G8190 (2) + renal N186 (2) = 5 -> class 3
    500: [("I214", 10), ("G8190", 10), ("N186", 10)],
    501: [("I10", 10)],
    600: [("I10", 10)],
}

EXPECTED: dict[str, tuple[int, int, int, int]] = {
    # encounter: (readmission, mortality, los class, comorbidity class), default options.
    "101": (1, 0, 0, 4),   # LOS 2.0 -> "0-2"
    "102": (1, 0, 1, 1),   # LOS 3.0 -> "3"
    "103": (0, 0, 2, 2),   # LOS 4.0 -> "4-5"
    "104": (0, 0, 2, 0),   # LOS 5.0 -> "4-5"
    "201": (0, 0, 3, 2),   # LOS 6.0 -> ">5"
    "202": (1, 0, 0, 3),   # LOS 2.5 -> floor 2 -> "0-2"
    "203": (0, 0, 1, 4),   # LOS 3.9 -> floor 3 -> "3"
    "301": (0, 1, 3, 0),   # LOS 7.0 -> ">5"; died
    "302": (0, 0, 0, 1),   # LOS 1.0
    "400": (1, 0, 0, 4),   # LOS 1.5
    "500": (1, 0, 2, 3),   # LOS 5.5 -> floor 5 -> "4-5"
}

OUTCOME_WORDS: tuple[str, ...] = (
    "expired", "deceased", "passed away", "comfort measures", "hospital day", "hospice",
    "home with services", "no pulse", "discharge-lab-mark", "imaging-mark",
)
"""Words that only discharge-time sections of the fixture notes contain."""


def discharge_note(hadm: int, *, died: bool = False) -> str:
    """A discharge summary in MIMIC-IV's layout; admission sections carry `*-MARK-<hadm>`."""
    ending = ("Patient expired on hospital day 9 after comfort measures; passed away peacefully."
              if died else "Improved by hospital day 4; discharged home with services.")
    disposition = "Expired" if died else "Home With Service"
    exam = ("DISCHARGE PHYSICAL EXAM:\nNo pulse, pupils fixed. Deceased." if died
            else "Discharge exam\nWell, no hospice needs.")
    return f"""
Name:  ___                     Unit No:   ___

Admission Date:  ___              Discharge Date:   ___

Date of Birth:  ___             Sex:   F

Service: MEDICINE

Allergies:
No Known Allergies / Adverse Drug Reactions

Attending: ___.

Chief Complaint:
CC-MARK-{hadm} shortness of breath

Major Surgical or Invasive Procedure:
Intubation, hospital day 2

History of Present Illness:
HPI-MARK-{hadm} Mr. ___ presented from ___ with worsening dyspnea.

Past Medical History:
PMH-MARK-{hadm} CHF, diabetes

Social History:
___
Family History:
Mother died of MI at 80.

Physical Exam:
ADMISSION PHYSICAL EXAM:
VS: 98.1 107/61 78 18 97RA
EXAM-MARK-{hadm} General: mild distress
{exam}

Pertinent Results:
ADMISSION LABS:
___ 10:25PM BLOOD WBC-5.0 RBC-4.40 LABS-MARK-{hadm}
DISCHARGE LABS:
___ 05:10AM BLOOD WBC-9.0 discharge-lab-mark
IMAGING:
CT chest: imaging-mark

Brief Hospital Course:
{ending}

Medications on Admission:
MEDS-MARK-{hadm} Furosemide 20 mg PO DAILY

Discharge Medications:
None (expired)

Discharge Disposition:
{disposition}

Discharge Diagnosis:
Hospice-level illness

Discharge Condition:
{"Deceased" if died else "Stable"}

Discharge Instructions:
Please follow up; hospital day count above.

Followup Instructions:
___
"""


def _notes(admissions: pd.DataFrame) -> list[dict[str, object]]:
    rows = []
    for stay in admissions.itertuples():
        if stay.hadm_id == 501:
            continue
        text = (discharge_note(stay.hadm_id, died=bool(stay.hospital_expire_flag))
                if stay.hadm_id != 600
                else "Brief Hospital Course:\nUneventful stay.\nDischarge Disposition:\nHome\n")
        rows.append({"note_id": f"{stay.subject_id}-DS-{stay.hadm_id}",
                     "subject_id": stay.subject_id, "hadm_id": stay.hadm_id, "note_type": "DS",
                     "note_seq": 2, "charttime": stay.dischtime, "storetime": stay.dischtime,
                     "text": text})
    # An earlier note of admission 101: the latest one is the discharge note.
    rows.append({"note_id": "1-DS-1", "subject_id": 1, "hadm_id": 101, "note_type": "DS",
                 "note_seq": 1, "charttime": T0 + DAY, "storetime": T0 + DAY,
                 "text": "Chief Complaint:\nOLD-NOTE\n"})
    # A note outside any admission (hadm_id empty) is ignored.
    rows.append({"note_id": "6-DS-9", "subject_id": 6, "hadm_id": None, "note_type": "DS",
                 "note_seq": 9, "charttime": T0, "storetime": T0,
                 "text": "Chief Complaint:\nOUTSIDE-NOTE\n"})
    return rows


def mimic_tables() -> dict[str, pd.DataFrame]:
    """The fixture's tables, keyed by their path under the MIMIC-IV root (no suffix)."""
    admissions = pd.DataFrame(_admissions())
    diagnoses = pd.DataFrame(
        [{"subject_id": int(hadm) // 100, "hadm_id": hadm, "seq_num": i + 1, "icd_code": code,
          "icd_version": version}
         for hadm, codes in DIAGNOSES.items() for i, (code, version) in enumerate(codes)])
    patients = pd.DataFrame({"subject_id": sorted(admissions["subject_id"].unique()),
                             "gender": "F", "anchor_age": 70, "anchor_year": 2150,
                             "anchor_year_group": "2014 - 2016", "dod": ""})
    return {"hosp/admissions": admissions, "hosp/patients": patients,
            "hosp/diagnoses_icd": diagnoses,
            "note/discharge": pd.DataFrame(_notes(admissions)).astype({"hadm_id": "Int64"})}


def write_mimic(root: Path, tables: dict[str, pd.DataFrame] | None = None, *,
                suffix: str = ".csv") -> Path:
    """Write `tables` (default: `mimic_tables()`) under `root` with `suffix` (.csv or .csv.gz)."""
    for name, table in (tables or mimic_tables()).items():
        path = root / f"{name}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False, date_format=FORMAT)
    return root
