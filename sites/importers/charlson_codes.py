"""The Charlson Comorbidity Index of an admission's ICD codes, Quan et al. (2005) lists as data.

Why a table of our own: the maintained Python package, comorbidipy, has no release usable here (the
newest that installs on Python 3.11, 0.5.0, imports `SettingWithCopyWarning` from
`pandas.core.common`, gone since pandas 2, and its default Charlson weighting is Quan 2011, not the
original weights). The code lists below are the "enhanced ICD-9-CM" and ICD-10 coding algorithms of
Quan H, Sundararajan V, Halfon P et al., Med Care 2005;43(11):1130-9, Table 1; the weights are
Charlson's original ones (1987). The MIT-LCP MIMIC code repository's `charlson.sql` lists the same
codes but spells `E101` (type 1 diabetes with ketoacidosis) as `E10l`, a lower-case L, so it never
matches; here it is `E101`.

How a code is matched: dots and surrounding blanks are removed and letters upper-cased (MIMIC-IV
stores codes without dots), then the code belongs to a condition when one of its prefixes is listed
for its ICD version. `"4254-4259"` is a range: every prefix of that length from one end to the
other. Prefix matching covers ICD-10-CM's longer codes (E10.10 and E10.11 are both E10.1).

How the score is added up: each condition counts once per admission; where a hierarchy has a milder
and a more severe form (diabetes / diabetes with chronic complications, mild / moderate-severe liver
disease, any malignancy / metastatic solid tumour) only the more severe one counts. No age points:
the comorbidity task scores the coded conditions only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class CharlsonCondition:
    """One Charlson condition: its weight and its ICD-9-CM and ICD-10 code prefixes."""

    name: str
    weight: int
    """Charlson (1987) weight: 1, 2, 3 or 6."""
    icd9: tuple[str, ...]
    """ICD-9-CM prefixes without dots; `"A-B"` is a range of same-length prefixes."""
    icd10: tuple[str, ...]
    """ICD-10 prefixes without dots; `"A-B"` is a range of same-length prefixes."""
    supersedes: str | None = None
    """The milder condition of the same hierarchy, not counted when this one is present."""

    def __post_init__(self) -> None:
        if self.weight not in (1, 2, 3, 6):
            raise ValueError(f"Charlson condition {self.name!r}: weight {self.weight}; "
                             "expected 1, 2, 3 or 6")


def _diabetes(fourth_digits: str) -> tuple[str, ...]:
    """ICD-10 diabetes codes E10-E14 with one of the given fourth characters."""
    return tuple(f"E1{kind}{digit}" for kind in "01234" for digit in fourth_digits)


CONDITIONS: tuple[CharlsonCondition, ...] = (
    CharlsonCondition(
        "myocardial_infarction", 1,
        icd9=("410", "412"),
        icd10=("I21", "I22", "I252")),
    CharlsonCondition(
        "congestive_heart_failure", 1,
        icd9=("39891", "40201", "40211", "40291", "40401", "40403", "40411", "40413", "40491",
              "40493", "4254-4259", "428"),
        icd10=("I099", "I110", "I130", "I132", "I255", "I420", "I425-I429", "I43", "I50",
               "P290")),
    CharlsonCondition(
        "peripheral_vascular_disease", 1,
        icd9=("0930", "4373", "440", "441", "4431-4439", "4471", "5571", "5579", "V434"),
        icd10=("I70", "I71", "I731", "I738", "I739", "I771", "I790", "I792", "K551", "K558",
               "K559", "Z958", "Z959")),
    CharlsonCondition(
        "cerebrovascular_disease", 1,
        icd9=("36234", "430-438"),
        icd10=("G45", "G46", "H340", "I60-I69")),
    CharlsonCondition(
        "dementia", 1,
        icd9=("290", "2941", "3312"),
        icd10=("F00-F03", "F051", "G30", "G311")),
    CharlsonCondition(
        "chronic_pulmonary_disease", 1,
        icd9=("4168", "4169", "490-505", "5064", "5081", "5088"),
        icd10=("I278", "I279", "J40-J47", "J60-J67", "J684", "J701", "J703")),
    CharlsonCondition(
        "rheumatic_disease", 1,
        icd9=("4465", "7100-7104", "7140-7142", "7148", "725"),
        icd10=("M05", "M06", "M315", "M32-M34", "M351", "M353", "M360")),
    CharlsonCondition(
        "peptic_ulcer_disease", 1,
        icd9=("531-534",),
        icd10=("K25-K28",)),
    CharlsonCondition(
        "mild_liver_disease", 1,
        icd9=("07022", "07023", "07032", "07033", "07044", "07054", "0706", "0709", "570",
              "571", "5733", "5734", "5738", "5739", "V427"),
        icd10=("B18", "K700-K703", "K709", "K713-K715", "K717", "K73", "K74", "K760",
               "K762-K764", "K768", "K769", "Z944")),
    CharlsonCondition(
        "diabetes", 1,
        icd9=("2500-2503", "2508", "2509"),
        icd10=_diabetes("01689")),
    CharlsonCondition(
        "diabetes_with_complications", 2,
        icd9=("2504-2507",),
        icd10=_diabetes("23457"),
        supersedes="diabetes"),
    CharlsonCondition(
        "hemiplegia_or_paraplegia", 2,
        icd9=("3341", "342", "343", "3440-3446", "3449"),
        icd10=("G041", "G114", "G801", "G802", "G81", "G82", "G830-G834", "G839")),
    CharlsonCondition(
        "renal_disease", 2,
        icd9=("40301", "40311", "40391", "40402", "40403", "40412", "40413", "40492", "40493",
              "582", "5830-5837", "585", "586", "5880", "V420", "V451", "V56"),
        icd10=("I120", "I131", "N032-N037", "N052-N057", "N18", "N19", "N250", "Z490-Z492",
               "Z940", "Z992")),
    CharlsonCondition(
        "malignancy", 2,
        icd9=("140-172", "1740-1958", "200-208", "2386"),
        icd10=("C00-C26", "C30-C34", "C37-C41", "C43", "C45-C58", "C60-C76", "C81-C85", "C88",
               "C90-C97")),
    CharlsonCondition(
        "severe_liver_disease", 3,
        icd9=("4560-4562", "5722-5728"),
        icd10=("I850", "I859", "I864", "I982", "K704", "K711", "K721", "K729", "K765", "K766",
               "K767"),
        supersedes="mild_liver_disease"),
    CharlsonCondition(
        "metastatic_solid_tumour", 6,
        icd9=("196-199",),
        icd10=("C77-C80",),
        supersedes="malignancy"),
    CharlsonCondition(
        "aids", 6,
        icd9=("042-044",),
        icd10=("B20-B22", "B24")),
)
CONDITION_NAMES: tuple[str, ...] = tuple(c.name for c in CONDITIONS)
WEIGHTS: dict[str, int] = {c.name: c.weight for c in CONDITIONS}


def expand(spec: str) -> tuple[str, ...]:
    """Prefixes of one code-list entry: itself, or every prefix of a range `"A-B"` (same length,
    same leading letter if any, numeric rest), e.g. `"I425-I429"` -> I425, I426, ..., I429."""
    if "-" not in spec:
        return (spec,)
    low, high = spec.split("-")
    lead = low[0] if low[0].isalpha() else ""
    if len(low) != len(high) or not high.startswith(lead) or not (
            low[len(lead):].isdigit() and high[len(lead):].isdigit()) or low > high:
        raise ValueError(f"code range {spec!r}: expected two same-length codes, low-high")
    width = len(low) - len(lead)
    start, stop = int(low[len(lead):]), int(high[len(lead):])
    return tuple(f"{lead}{number:0{width}d}" for number in range(start, stop + 1))


def _prefix_table() -> pd.DataFrame:
    """One row per (icd_version, prefix, condition)."""
    rows = [(version, prefix, condition.name)
            for condition in CONDITIONS
            for version, specs in ((9, condition.icd9), (10, condition.icd10))
            for spec in specs for prefix in expand(spec)]
    return pd.DataFrame(rows, columns=["icd_version", "prefix", "condition"])


PREFIXES: pd.DataFrame = _prefix_table()
"""Every listed prefix with its ICD version and condition (a code can match two conditions:
ICD-9 404.03 is both heart failure and renal disease)."""


def normalize_code(codes: pd.Series) -> pd.Series:
    """Codes as the tables list them: no dots or blanks, upper case."""
    return codes.astype(str).str.replace(".", "", regex=False).str.strip().str.upper()


def conditions_of(diagnoses: pd.DataFrame) -> pd.DataFrame:
    """Distinct (hadm_id, condition) pairs of a diagnoses table with columns `hadm_id`,
    `icd_code` (normalized) and `icd_version` (9 or 10)."""
    found = []
    for length in sorted(PREFIXES["prefix"].str.len().unique()):
        table = PREFIXES[PREFIXES["prefix"].str.len() == length]
        keyed = diagnoses.assign(prefix=diagnoses["icd_code"].str.slice(0, int(length)))
        found.append(keyed.merge(table, on=["icd_version", "prefix"])[["hadm_id", "condition"]])
    return pd.concat(found, ignore_index=True).drop_duplicates(ignore_index=True)


def charlson_index(diagnoses: pd.DataFrame, hadm_ids: Iterable[object]) -> pd.Series:
    """Charlson score per admission (indexed by `hadm_ids`; 0 for one without a listed code)."""
    index = pd.Index(list(hadm_ids), name="hadm_id")
    present = conditions_of(diagnoses).assign(flag=1).pivot_table(
        index="hadm_id", columns="condition", values="flag", aggfunc="max", fill_value=0)
    present = present.reindex(index=index, columns=list(CONDITION_NAMES), fill_value=0)
    for condition in CONDITIONS:
        if condition.supersedes:  # the severe form present: the milder one does not count
            milder = condition.supersedes
            present[milder] = present[milder].where(present[condition.name] == 0, 0)
    weights = pd.Series(WEIGHTS)[list(CONDITION_NAMES)]
    return (present * weights).sum(axis=1).astype("int64").rename("charlson")


def score_codes(codes: Iterable[tuple[str, int]]) -> int:
    """Charlson score of one admission's `(icd_code, icd_version)` pairs (for checks by hand)."""
    pairs = list(codes)
    frame = pd.DataFrame({
        "hadm_id": pd.Series([0] * len(pairs), dtype="int64"),
        "icd_code": normalize_code(pd.Series([code for code, _ in pairs], dtype=str)),
        "icd_version": pd.Series([version for _, version in pairs], dtype="int64"),
    })
    return int(charlson_index(frame, [0]).iloc[0])
