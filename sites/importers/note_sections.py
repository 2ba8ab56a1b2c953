"""An admission note cut out of a MIMIC-IV discharge summary, so it cannot state the outcome.

MIMIC-IV has only discharge notes, but mortality, length of stay and comorbidity read the admission
(H&P) note. A discharge summary repeats the H&P's sections (chief complaint, history, exam on
admission, admission labs, home medications) and adds sections written at discharge (hospital
course, discharge diagnosis, disposition, instructions...) that state or imply the outcome:
"Expired", "hospital day 9", "discharged to hospice". We keep only the admission-time sections.

How headers are matched. A line is a *header line* when it starts (after blanks) with a name of at
most 40 characters and 6 words (a letter first; then letters, digits, blanks and ``/&,'()-.``)
followed by a colon; the text after the colon belongs to that section. The name is normalized
(lower case, blanks collapsed; plural forms are listed as names of their own) and looked up in the
exact lists below: `KEPT` (sections written at admission, with `RESULTS` the kept ones that mix
times) and `DROPPED` (everything else we know of). A header line whose name is in neither list is
ordinary text of the current section (e.g. "VS:" or "ADMISSION LABS:" inside an exam or results
section) - unless it names a later time (below).

Lines that end a kept section early. Any line whose first words (case-insensitive, leading
punctuation ignored) are one of `LATER_TIME_STARTS` - "discharge", "on discharge", "at discharge",
"upon discharge", "prior to discharge", "day of discharge", "at the time of discharge", "at time of
discharge", "death", "expired", "deceased", "time of death", "transitional issues", "hospital
course" - starts a dropped block that lasts until the next kept header, whatever its form
("DISCHARGE PHYSICAL EXAM:", "Discharge exam", "On discharge: afebrile"). So does any header line
whose name contains one of `LATER_TIME_WORDS` ("discharge", "death", "expired", "deceased",
"course", "disposition", "follow", "transitional", "outcome").

Results. "Pertinent Results" mixes admission labs with labs, imaging and microbiology from the
whole stay, so only its sub-blocks headed as admission results are kept. A sub-header is an
upper-case line without digits of at most 40 characters, or a header line whose name is upper case
or that has nothing after its colon; one whose text contains "admission", "admit", "on arrival" or
"presentation" opens a kept sub-block, any other closes it. Unheaded result lines are dropped.

Everything before the first kept header (name, unit number, dates) is dropped. The kept sections
keep their original header line and order; a note with no kept text gives "".
"""

from __future__ import annotations

import re
from typing import Literal

KEPT: frozenset[str] = frozenset({
    "chief complaint", "cc",
    "history of present illness", "history of the present illness", "hpi",
    "past medical history", "pmh", "past surgical history", "psh",
    "past medical/surgical history", "past medical and surgical history",
    "social history", "sh", "family history", "fh",
    "allergies", "allergy", "service", "sex",
    "review of systems", "ros",
    "physical exam", "physical examination", "admission exam", "admission physical exam",
    "admission physical examination", "physical exam on admission", "exam on admission",
    "medications on admission", "admission medications", "home medications",
    "preadmission medications", "outpatient medications", "medications prior to admission",
    "admission labs", "labs on admission",
    "pertinent results",
})
"""Sections written at admission: the H&P part of a discharge summary."""

RESULTS: frozenset[str] = frozenset({"pertinent results"})
"""Kept sections that mix admission-time and later results: only admission sub-blocks are kept."""

DROPPED: frozenset[str] = frozenset({
    "name", "unit no", "admission date", "discharge date", "date of birth", "attending",
    "major surgical or invasive procedure", "procedures", "procedure",
    "brief hospital course", "hospital course", "transitional issues",
    "discharge medications", "discharge disposition", "discharge diagnosis",
    "discharge diagnoses", "primary diagnosis", "primary diagnoses", "secondary diagnosis",
    "secondary diagnoses", "final diagnosis", "final diagnoses", "discharge condition",
    "condition at discharge", "discharge instructions", "followup instructions",
    "follow-up instructions", "follow up instructions", "follow up", "followup", "facility",
    "impression", "assessment", "plan", "assessment and plan", "a/p", "code status",
    "cause of death", "time of death", "outcome",
})
"""Sections written later (or identifying only): never kept, and each ends the section before."""

LATER_TIME_WORDS: tuple[str, ...] = (
    "discharge", "death", "expired", "deceased", "course", "disposition", "follow",
    "transitional", "outcome",
)
LATER_TIME_STARTS: tuple[str, ...] = (
    "discharge", "on discharge", "at discharge", "upon discharge", "prior to discharge",
    "day of discharge", "at the time of discharge", "at time of discharge", "death", "expired",
    "deceased", "time of death", "transitional issues", "hospital course",
)
ADMISSION_WORDS: tuple[str, ...] = ("admission", "admit", "on arrival", "presentation")

_HEADER = re.compile(r"^\s*(?P<name>[A-Za-z][A-Za-z0-9 /&,'().-]{0,39}?)\s*:(?P<rest>.*)$")
_LATER_START = re.compile(
    r"^(?:" + "|".join(re.escape(s) for s in LATER_TIME_STARTS) + r")\b")
_UPPER_LINE = re.compile(r"^[^a-z0-9]*[A-Z][^a-z0-9]*$")

State = Literal["dropped", "kept", "results_hidden", "results_shown"]


def _normalize(name: str) -> str:
    return " ".join(name.lower().split())


def _header(line: str) -> tuple[str, str] | None:
    """(normalized name, rest of line) of a header line, else None."""
    match = _HEADER.match(line)
    if match is None or len(match["name"].split()) > 6:
        return None
    return _normalize(match["name"]), match["rest"]


def _names_later_time(line: str, header: tuple[str, str] | None) -> bool:
    """True for a line that opens a discharge-time (or death) block."""
    if header is not None and any(word in header[0] for word in LATER_TIME_WORDS):
        return True
    lead = _normalize(re.sub(r"^[^A-Za-z]+", "", line))
    return _LATER_START.match(lead) is not None


def _is_subheader(line: str, header: tuple[str, str] | None) -> bool:
    """What opens or closes a sub-block of results: an upper-case line without digits of at most
    40 characters, or a header line whose name is upper case or that has nothing after its colon."""
    stripped = line.strip()
    if header is not None:
        name = stripped.split(":", 1)[0]
        return name == name.upper() or not header[1].strip()
    return 0 < len(stripped) <= 40 and bool(_UPPER_LINE.match(stripped))


def admission_sections(discharge_note: str) -> str:
    """The admission-time sections of a discharge summary (see the module docstring), or ""."""
    blocks: list[list[str]] = []  # each: header line, then its lines
    state: State = "dropped"
    for line in discharge_note.splitlines():
        header = _header(line)
        name = header[0] if header else None
        if name in KEPT and not _names_later_time(line, header):
            state = "results_hidden" if name in RESULTS else "kept"
            blocks.append([line.rstrip()])
        elif name in DROPPED or _names_later_time(line, header):
            state = "dropped"
        elif state.startswith("results") and _is_subheader(line, header):
            lowered = line.lower()
            shown = any(word in lowered for word in ADMISSION_WORDS)
            state = "results_shown" if shown else "results_hidden"
            if shown:
                blocks[-1].append(line.rstrip())
        elif state in ("kept", "results_shown") and line.strip():
            blocks[-1].append(line.rstrip())
    return "\n".join("\n".join(block) for block in blocks if _has_text(block)).strip()


def _has_text(block: list[str]) -> bool:
    """A kept section says something: text after its header's colon or lines under it."""
    return len(block) > 1 or bool(block[0].split(":", 1)[1].strip())
