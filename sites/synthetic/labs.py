"""Admission labs: values drawn from the latent acuity, frailty, diagnosis and conditions, and the
lab table each hospital writes them in.

Labs are objective but noisy readings of the latent factors (a septic patient's lactate is high
more often than not, never always), so they add signal without letting a reader recover the
oracle. Which tests are sent depends on the presentation, as in an emergency department. Each
value's flag (`low`, `normal`, `high`) is a stated fact (`creatinine=high`); the external system
writes SI units (creatinine in umol/L, haemoglobin in g/L) and UK test names.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from sites.synthetic.note_builder import Piece, Section
from sites.synthetic.styles import NoteStyle


@dataclass(frozen=True)
class Test:
    """One lab test: names (plain, short, UK), reference range in US units, decimals, and how a
    UK lab reports it (factor to SI units, its decimals)."""

    plain: str
    short: str
    uk: str
    low: float
    high: float
    decimals: int
    si_factor: float = 1.0
    si_decimals: int | None = None


TESTS: dict[str, Test] = {
    "wbc": Test("white count", "WBC", "WCC", 4.0, 11.0, 1),
    "hemoglobin": Test("hemoglobin", "Hgb", "Hb", 12.0, 17.0, 1, 10.0, 0),
    "platelets": Test("platelets", "Plt", "Plt", 150, 400, 0),
    "sodium": Test("sodium", "Na", "Na", 135, 145, 0),
    "potassium": Test("potassium", "K", "K", 3.5, 5.1, 1),
    "chloride": Test("chloride", "Cl", "Cl", 98, 107, 0),
    "bicarbonate": Test("bicarbonate", "HCO3", "HCO3", 22, 29, 0),
    "bun": Test("BUN", "BUN", "Ur", 7, 20, 0, 0.357, 1),
    "creatinine": Test("creatinine", "Cr", "Cr", 0.6, 1.3, 1, 88.4, 0),
    "glucose": Test("glucose", "Glu", "Gluc", 70, 180, 0, 1 / 18, 1),
    "calcium": Test("calcium", "Ca", "Adj Ca", 8.5, 10.5, 1, 0.25, 2),
    "magnesium": Test("magnesium", "Mg", "Mg", 1.7, 2.4, 1, 0.41, 2),
    "phosphate": Test("phosphate", "Phos", "PO4", 2.5, 4.5, 1, 0.323, 2),
    "ast": Test("AST", "AST", "AST", 0, 40, 0),
    "alt": Test("ALT", "ALT", "ALT", 0, 40, 0),
    "bilirubin": Test("total bilirubin", "Tbili", "Bili", 0.1, 1.2, 1, 17.1, 0),
    "lactate": Test("lactate", "Lactate", "Lac", 0.5, 2.0, 1),
    "troponin": Test("troponin", "Trop", "hs-TnT", 0.0, 0.04, 2, 1000.0, 0),
    "bnp": Test("BNP", "BNP", "NT-proBNP", 0, 100, 0, 4.0, 0),
    "albumin": Test("albumin", "Alb", "Alb", 3.5, 5.0, 1, 10.0, 0),
    "inr": Test("INR", "INR", "INR", 0.9, 1.2, 1),
    "crp": Test("CRP", "CRP", "CRP", 0, 10, 0),
}
_BMP = ("sodium", "potassium", "chloride", "bicarbonate", "bun", "creatinine", "glucose")
_CBC = ("wbc", "hemoglobin", "platelets")
UNRECORDED = frozenset({"chloride", "calcium", "magnesium", "phosphate"})
"""Tests whose flag bears on no label (written, not recorded as a fact)."""


@dataclass(frozen=True)
class Result:
    """One value in US units and its flag."""

    test: str
    value: float
    flag: str


def draw_labs(facts: Mapping[str, object], conditions: frozenset[str],
              rng: random.Random) -> tuple[Result, ...]:
    """The admission panel: CBC and chemistry always, other tests when the presentation calls
    for them; values from the latent factors plus noise."""
    dx, a = str(facts["diagnosis"]), max(float(facts["acuity"]), 0.0)
    frailty, female = float(facts["frailty"]), facts["sex"] == "F"
    has = conditions.__contains__
    g = rng.gauss
    renal, infection = has("renal"), dx in ("sepsis", "pneumonia", "cellulitis")
    values = {
        "wbc": (0.9 + abs(g(0, 0.5)) if dx == "oncology" else
                7.6 + 2.0 * a + 5.0 * infection + 1.5 * (dx == "hip_fracture") + g(0, 2.0)),
        "hemoglobin": ((12.4 if female else 13.8) - 4.0 * (dx == "gi_bleed") - 2.0 * renal
                       - 1.5 * (dx == "oncology") - 0.3 * frailty + g(0, 1.1)),
        "platelets": (245 - 140 * (dx == "oncology") - 110 * has("liver_severe") - 30 * a
                      + g(0, 55)),
        "sodium": 139 - 3 * (dx == "heart_failure") - 4 * has("liver_severe") - 1.2 * a + g(0, 2.5),
        "potassium": 4.1 + 0.7 * renal + g(0, 0.35),
        "chloride": 102 + g(0, 3),
        "bicarbonate": 25 - 1.6 * a - 3 * renal + g(0, 2),
        "bun": 15 + 32 * renal + 18 * (dx == "gi_bleed") + 5 * a + g(0, 5),
        "creatinine": ((0.9 + g(0, 0.15)) * (3.2 if renal else 1.0)
                       * (1 + 0.25 * a + 0.35 * (dx == "sepsis"))),
        "glucose": (104 + 55 * has("diabetes") + 95 * has("diabetes_complicated") + 12 * a
                    + g(0, 22)),
        "crp": 6 + 35 * a + 90 * infection + g(0, 15),
    }
    if rng.random() < 0.7:
        values.update(calcium=9.3 + g(0, 0.4) - 0.3 * renal, magnesium=2.0 + g(0, 0.2),
                      phosphate=3.5 + g(0, 0.5) + 1.2 * renal)
    liver = has("liver_mild") or has("liver_severe")
    if liver or dx in ("sepsis", "gi_bleed", "oncology") or rng.random() < 0.3:
        values.update(ast=math.exp(g(math.log(25), 0.35) + 0.8 * liver + 0.3 * a),
                      alt=math.exp(g(math.log(24), 0.35) + 0.7 * liver + 0.2 * a),
                      bilirubin=math.exp(g(math.log(0.6), 0.35) + 1.0 * has("liver_severe")
                                         + 0.2 * a))
    if dx in ("sepsis", "pneumonia", "gi_bleed", "oncology") or a > 0.8:
        values["lactate"] = 1.1 + 0.9 * a + 1.2 * (dx == "sepsis") + g(0, 0.5)
    if dx in ("chest_pain", "heart_failure", "syncope", "stroke", "sepsis"):
        values["troponin"] = math.exp(g(math.log(0.012), 0.7) + 0.6 * a + 0.9 * renal
                                      + 0.8 * (dx == "heart_failure"))
    if dx in ("heart_failure", "copd_exacerbation", "pneumonia") or has("chf"):
        values["bnp"] = math.exp(g(math.log(70), 0.7) + 2.4 * (dx == "heart_failure")
                                 + 1.1 * has("chf") + 0.7 * renal)
    if frailty > 0.4 or has("liver_severe") or has("cancer") or has("metastatic"):
        values["albumin"] = (3.9 - 0.25 * frailty - 0.5 * (has("cancer") or has("metastatic"))
                             - 0.9 * has("liver_severe") - 0.15 * a + g(0, 0.3))
    if dx in ("gi_bleed", "stroke") or has("liver_severe") or has("liver_mild"):
        values["inr"] = 1.05 + 0.8 * has("liver_severe") + abs(g(0, 0.08))
    return tuple(_result(test, value) for test, value in values.items())


def discharge_value(result: Result, *, worse: bool, rng: random.Random) -> Result:
    """The last value of an abnormal test: most of the way back to normal, or worse (a
    complicated stay)."""
    test = TESTS[result.test]
    middle = (test.low + test.high) / 2
    pull = -0.25 if worse else 0.65 + rng.random() * 0.3
    return _result(result.test, result.value + pull * (middle - result.value))


def write_results(section: Section, results: tuple[Result, ...], style: NoteStyle,
                  short: bool, *, suffix: str = "") -> None:
    """Write `results` into `section` in the style's lab format; each result's text states its
    flag (`<test><suffix>=<flag>`)."""
    shown = [r for r in results if style.units == "uk" or r.test != "crp"]
    if style.lab_format == "skeleton":
        _skeleton(section, shown, style, suffix)
        return
    if style.lab_format == "grid":
        section.add(f"{'Test':<14}{'Result':>8}  {'Ref range':<12}Flag\n")
    for i, result in enumerate(shown):
        text = _cell(result, style, short)
        if style.lab_format == "grid":
            test = TESTS[result.test]
            flag = {"low": "L", "high": "H"}.get(result.flag, "")
            reference = f"{_number(test.low, test.decimals)}-{_number(test.high, test.decimals)}"
            text = f"{_name(result.test, style, short):<14}{_value(result, style):>8}  " \
                   f"{reference:<12}{flag}"
        elif style.lab_format == "flags" and result.flag != "normal":
            text += " (L)" if result.flag == "low" else " (H)"
        gap = "\n" if style.lab_format == "grid" else ", "
        section.add(text, *_features(result, suffix))
        if i < len(shown) - 1:
            section.add(gap)
    if style.lab_format != "grid":
        section.add(".")


def result_pieces(results: tuple[Result, ...] | list[Result], style: NoteStyle, short: bool, *,
                  suffix: str = "") -> list[Piece]:
    """`results` as one comma-separated run (`Cr 1.9, WBC 14.2`), each stating its flag."""
    pieces: list[Piece] = []
    for i, result in enumerate(results):
        if i:
            pieces.append(Piece(", "))
        pieces.append(Piece(_cell(result, style, short), _features(result, suffix)))
    return pieces


def _skeleton(section: Section, results: list[Result], style: NoteStyle, suffix: str) -> None:
    """The surgeons' shorthand: CBC as WBC > Hgb < Plt, chemistry as Na / K / Cl / HCO3 / BUN /
    Cr < Glu, then any other test by name."""
    by_test = {r.test: r for r in results}
    for label, tests, separators in (("cbc", _CBC, (" > ", " < ")),
                                     ("\nbmp", _BMP, (" / ",) * 5 + (" < ",))):
        section.add(f"{label}: ")
        for i, test in enumerate(tests):
            result = by_test[test]
            section.add(_value(result, style), *_features(result, suffix))
            if i < len(separators):
                section.add(separators[i])
    others = [r for r in results if r.test not in _CBC and r.test not in _BMP]
    for i, result in enumerate(others):
        section.add("\n" if i == 0 else ", ")
        section.add(f"{_name(result.test, style, True)} {_value(result, style)}",
                    *_features(result, suffix))


def _features(result: Result, suffix: str) -> tuple[str, ...]:
    return () if result.test in UNRECORDED else (f"{result.test}{suffix}={result.flag}",)


def _cell(result: Result, style: NoteStyle, short: bool) -> str:
    return f"{_name(result.test, style, short)} {_value(result, style)}"


def _name(test: str, style: NoteStyle, short: bool) -> str:
    spec = TESTS[test]
    if style.units == "uk":
        return spec.uk
    return spec.short if short else spec.plain


def _value(result: Result, style: NoteStyle) -> str:
    test = TESTS[result.test]
    if style.units == "uk":
        decimals = test.decimals if test.si_decimals is None else test.si_decimals
        return _number(result.value * test.si_factor, decimals)
    return _number(result.value, test.decimals)


def _number(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}" if decimals else str(round(value))


def _result(test: str, value: float) -> Result:
    spec = TESTS[test]
    value = max(value, 0.1 ** spec.decimals if spec.decimals else 1.0)
    shown = round(value, spec.decimals)
    flag = "low" if shown < spec.low else "high" if shown > spec.high else "normal"
    return Result(test, value, flag)
