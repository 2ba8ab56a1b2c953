"""Note styles: how each hospital writes its admission (H&P) and discharge notes.

A style is the site's template family (sectioned, narrative, bullets, operative, clerking), its
section order and headers, a few sentence frames, casing, how often it abbreviates and mistypes,
its de-identification token and date format, its lab table and medication list formats, how much
it copies forward from earlier notes, and how often it mentions each fact at all. The section
order is where the signal sits: one hospital writes social and functional history after a long
review of systems, exam and labs, another puts the disposition on the first line of its discharge
summary. The training hospitals share one vocabulary (`sites.synthetic.vocabulary`, plain and
short phrasings); the external system's style uses its own frames, headers, British drug names,
SI lab units and, often, held-out phrasings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

ADMISSION_SECTIONS = ("header", "cc", "hpi", "pmh", "psh", "meds", "allergies", "social",
                      "function", "family", "ros", "exam", "labs", "imaging", "ap", "payer",
                      "attestation", "preop")
DISCHARGE_SECTIONS = ("dc_header", "dc_diagnoses", "dc_hpi", "dc_pmh", "dc_social", "dc_exam",
                      "course", "procedures", "consults", "results", "dc_meds", "condition",
                      "transitions", "disposition", "followup", "instructions", "dc_payer",
                      "dc_attestation")
FRAMES = ("header", "hpi_open", "ap_open", "dc_header", "course_open")
"""Frames a style writes, over placeholders: header {title} {name} {date} {pcp}; hpi_open
{age} {sex} {history} {complaint} {duration} (with its own lead-in, empty when the complaint says
how long); ap_open and course_open {age} {sex} {history} {dx};
dc_header {title} {name} {admitted} {discharged} {days}."""


@dataclass(frozen=True)
class NoteStyle:
    """How one site writes notes."""

    name: str
    template: Literal["sectioned", "narrative", "bullets", "operative", "clerking"]
    admission_order: tuple[str, ...]
    """Admission sections (ADMISSION_SECTIONS) in the order written."""
    discharge_order: tuple[str, ...]
    """Discharge sections (DISCHARGE_SECTIONS) in the order written."""
    headers: Mapping[str, str]
    """Section header per section; sections without one are written as bare text."""
    frames: Mapping[str, tuple[str, ...]]
    """Sentence frames (FRAMES); one is picked per note."""
    titles: Mapping[str, str]
    """Note titles: `floor` and `icu` (admission; a different ICU title states the ICU) and
    `discharge`."""
    casing: Literal["as_is", "lower", "upper"]
    sex_words: tuple[str, str]
    """How the site writes (female, male)."""
    abbreviation_rate: float
    """Probability a fact is written with a short phrasing (shared vocabulary)."""
    mention_rate: float
    """Probability each optional fact is written at all (and a condition is documented)."""
    deid: str
    """De-identification token replacing names."""
    date_format: str
    """`strftime` format of dates (inside de-id brackets where the site uses them)."""
    section_gap: str
    """What separates sections: a blank line, or one line break in bullet notes."""
    list_format: Literal["numbered", "dashes", "commas"]
    """How problem and medication lists are written."""
    lab_format: Literal["grid", "prose", "flags", "skeleton", "si"]
    """Lab table: aligned grid, dictated prose, values with (H)/(L), surgeons' skeleton, or SI."""
    units: Literal["us", "uk"]
    """US or British drug names, frequencies and lab units."""
    cc: Literal["complaint", "diagnosis"]
    """What the chief complaint line states: the patient's complaint or the working diagnosis."""
    ros: Literal["full", "brief"]
    """Review of systems: every system with its negatives, or one line and the pertinent ones."""
    hpi_history: int
    """How many documented conditions the HPI's first sentence names."""
    ed_course: bool
    """Whether the HPI ends with the emergency department course (vitals, labs, the unit)."""
    copy_forward_rate: float
    """Probability a history section is copied verbatim from the patient's last note."""
    typo_rate: float
    """Typos per word."""
    therapy_rate: float
    """Probability the hospital course gives the therapists' disposition recommendation."""
    boilerplate: tuple[str, ...]
    """Site boilerplate sentences (the attestation)."""
    filler: tuple[str, ...]
    """Label-free sentences added when a note is too short."""
    novel_vocabulary_rate: float = 0.0
    """Probability a fact uses the held-out (external) phrasing; 0 at the training hospitals."""
    none_history: str = "no significant past medical history"

    def __post_init__(self) -> None:
        for name, order, known in (("admission_order", self.admission_order, ADMISSION_SECTIONS),
                                   ("discharge_order", self.discharge_order, DISCHARGE_SECTIONS)):
            unknown = [key for key in order if key not in known]
            if unknown or len(set(order)) != len(order):
                raise ValueError(f"style {self.name!r}: `{name}` {order}; expected distinct "
                                 f"sections of {known}")
        missing = [key for key in FRAMES if key not in self.frames]
        if missing or set(self.titles) != {"floor", "icu", "discharge"}:
            raise ValueError(f"style {self.name!r}: frames {missing} missing or titles "
                             f"{sorted(self.titles)}; expected every frame of {FRAMES} and the "
                             "titles floor, icu, discharge")


_SHARED_FILLER = (
    "Review of systems otherwise negative.", "Labs and imaging reviewed.",
    "Medications reconciled.", "Allergies reviewed.", "Code status discussed.",
    "Plan discussed with the patient.", "Will continue to monitor.", "No recent travel.",
    "Pain controlled.", "Diet as tolerated.", "Questions answered.", "Telemetry reviewed.",
    "Nursing notes reviewed.", "Home medications verified with pharmacy.",
)
_US_HEADERS = {
    "cc": "CHIEF COMPLAINT", "hpi": "HISTORY OF PRESENT ILLNESS", "pmh": "PAST MEDICAL HISTORY",
    "psh": "PAST SURGICAL HISTORY", "meds": "HOME MEDICATIONS", "allergies": "ALLERGIES",
    "social": "SOCIAL HISTORY", "function": "FUNCTIONAL STATUS", "family": "FAMILY HISTORY",
    "ros": "REVIEW OF SYSTEMS", "exam": "PHYSICAL EXAM", "labs": "LABORATORY DATA",
    "imaging": "IMAGING", "ap": "ASSESSMENT AND PLAN", "payer": "INSURANCE",
    "dc_diagnoses": "DISCHARGE DIAGNOSES", "dc_hpi": "HISTORY OF PRESENT ILLNESS",
    "dc_pmh": "PAST MEDICAL HISTORY", "dc_social": "SOCIAL HISTORY",
    "course": "BRIEF HOSPITAL COURSE", "procedures": "PROCEDURES", "consults": "CONSULTS",
    "results": "PERTINENT RESULTS", "dc_meds": "DISCHARGE MEDICATIONS",
    "condition": "CONDITION AT DISCHARGE", "disposition": "DISCHARGE DISPOSITION",
    "followup": "FOLLOW-UP", "instructions": "DISCHARGE INSTRUCTIONS", "dc_payer": "INSURANCE",
    "transitions": "TRANSITIONAL ISSUES", "dc_exam": "PHYSICAL EXAM ON ADMISSION",
}

STYLES: dict[str, NoteStyle] = {
    style.name: style
    for style in (
        NoteStyle(
            name="academic", template="sectioned",
            admission_order=("header", "cc", "hpi", "pmh", "psh", "meds", "allergies", "social",
                             "function", "family", "ros", "exam", "labs", "imaging", "ap",
                             "payer", "attestation"),
            discharge_order=("dc_header", "dc_hpi", "dc_pmh", "dc_social", "results", "course",
                             "procedures", "consults", "transitions", "dc_meds", "dc_diagnoses",
                             "condition", "disposition", "instructions", "followup",
                             "dc_attestation"),
            headers={**_US_HEADERS, "cc": "Chief Complaint", "hpi": "HPI", "pmh": "PMH",
                     "psh": "PSH", "meds": "Outpatient Medications", "ap": "A/P"},
            frames={
                "header": ("{title}\nPatient: {name}   Date: {date}\nPCP: {pcp}",),
                "hpi_open": ("{age} yo {sex} with {history} who presents with "
                             "{complaint}{duration}.", "{age}{sex} w/ PMH {history} p/w {complaint}"
                             "{duration}."),
                "ap_open": ("{age} yo {sex} with {history} admitted with {dx}.",),
                "dc_header": ("{title}\nPatient: {name}\nAdmission Date: {admitted}   "
                              "Discharge Date: {discharged}\nService: MEDICINE",),
                "course_open": ("{age} yo {sex} with {history} admitted with {dx}.",),
            },
            titles={"floor": "Medicine Admission H&P", "icu": "MICU Admission Note",
                    "discharge": "Discharge Summary"},
            casing="as_is", sex_words=("F", "M"), abbreviation_rate=0.6, mention_rate=0.85,
            deid="[**Name**]", date_format="[**%Y-%m-%d**]", section_gap="\n\n",
            list_format="numbered", lab_format="grid", units="us", cc="complaint", ros="full",
            hpi_history=3,
            ed_course=True, copy_forward_rate=0.6, typo_rate=0.004, therapy_rate=0.3,
            boilerplate=("Seen and examined with attending Dr. [**Name**], agree with plan.",
                         "Resident note, attending attestation to follow."),
            filler=_SHARED_FILLER,
        ),
        NoteStyle(
            name="community", template="narrative",
            admission_order=("header", "hpi", "pmh", "psh", "meds", "allergies", "social",
                             "family", "ros", "exam", "labs", "imaging", "function", "ap",
                             "payer"),
            discharge_order=("dc_header", "disposition", "dc_diagnoses", "dc_hpi", "dc_exam",
                             "course", "procedures", "consults", "condition", "dc_meds",
                             "transitions", "followup", "instructions", "dc_social", "dc_payer"),
            headers={**_US_HEADERS, "ap": "IMPRESSION AND PLAN", "payer": "FINANCIAL CLASS",
                     "course": "HOSPITAL COURSE", "dc_payer": "FINANCIAL CLASS"},
            frames={
                "header": ("{title}. Dictated by {name} on {date}.",),
                "hpi_open": ("The patient is a {age}-year-old {sex} with a history of {history} "
                             "who comes in with {complaint}{duration}.",
                             "This {age}-year-old {sex}, with a past history of {history}, "
                             "presents to the emergency department with {complaint}"
                             "{duration}."),
                "ap_open": ("This is a {age}-year-old {sex} with {history}, admitted with {dx}.",),
                "dc_header": ("{title}. Dictated by {name}. Date of admission {admitted}. Date "
                              "of discharge {discharged}.",),
                "course_open": ("This {age}-year-old {sex} with {history} was admitted with "
                                "{dx}.",),
            },
            titles={"floor": "HISTORY AND PHYSICAL", "icu": "HISTORY AND PHYSICAL",
                    "discharge": "DISCHARGE SUMMARY"},
            casing="as_is", sex_words=("woman", "man"), abbreviation_rate=0.15, mention_rate=0.8,
            deid="___", date_format="%m/%d/%Y", section_gap="\n\n", list_format="commas",
            lab_format="prose", units="us", cc="complaint", ros="brief", hpi_history=2,
            ed_course=False,
            copy_forward_rate=0.3, typo_rate=0.008, therapy_rate=0.5,
            boilerplate=("The patient was seen and evaluated by ___ in the emergency department.",
                         "Thank you for allowing us to participate in the care of this patient."),
            filler=_SHARED_FILLER,
        ),
        NoteStyle(
            name="safety_net", template="bullets",
            admission_order=("header", "payer", "cc", "hpi", "social", "function", "pmh", "meds",
                             "allergies", "ros", "exam", "labs", "imaging", "ap", "psh", "family",
                             "attestation"),
            discharge_order=("dc_header", "dc_diagnoses", "course", "dc_social", "disposition",
                             "followup", "dc_meds", "transitions", "condition", "results",
                             "procedures", "dc_hpi", "instructions", "dc_payer",
                             "dc_attestation"),
            headers={"cc": "CC", "hpi": "HPI", "pmh": "PMH", "psh": "PSH", "meds": "MEDS",
                     "allergies": "ALL", "social": "SH", "function": "BASELINE", "family": "FH",
                     "ros": "ROS", "exam": "PE", "labs": "LABS", "imaging": "IMG", "ap": "A/P",
                     "payer": "INS", "dc_diagnoses": "DX", "dc_social": "SW/SH",
                     "course": "COURSE", "procedures": "PROCS", "results": "LABS",
                     "dc_meds": "D/C MEDS", "condition": "D/C CONDITION", "disposition": "DISPO",
                     "followup": "F/U", "instructions": "PT INSTRUCTIONS", "dc_payer": "INS",
                     "transitions": "TO DO", "dc_hpi": "HPI"},
            frames={
                "header": ("{title} {name} seen {date}. PCP: {pcp}",),
                "hpi_open": ("{age} Y/O {sex} PMH {history} P/W {complaint}{duration}.",
                             "{age}{sex} w/ {history}, here w/ {complaint}{duration}."),
                "ap_open": ("{age}{sex} w/ {history} admitted for {dx}.",),
                "dc_header": ("{title} {name} adm {admitted} d/c {discharged}",),
                "course_open": ("{age} Y/O {sex} w/ {history} admitted for {dx}.",),
            },
            titles={"floor": "ADMIT NOTE", "icu": "ADMIT NOTE", "discharge": "D/C SUMMARY"},
            casing="upper", sex_words=("F", "M"), abbreviation_rate=0.75, mention_rate=0.75,
            deid="<NAME>", date_format="%m/%d/%y", section_gap="\n", list_format="dashes",
            lab_format="flags", units="us", cc="diagnosis", ros="full", hpi_history=2,
            ed_course=False,
            copy_forward_rate=0.8, typo_rate=0.01, therapy_rate=0.2,
            boilerplate=("SW consulted. Interpreter offered.", "Case discussed with <NAME>, MD."),
            filler=_SHARED_FILLER,
        ),
        NoteStyle(
            name="surgical", template="operative",
            admission_order=("header", "cc", "hpi", "ap", "pmh", "psh", "meds", "allergies",
                             "exam", "labs", "imaging", "preop", "ros", "family", "function",
                             "social", "payer"),
            discharge_order=("dc_header", "procedures", "course", "dc_diagnoses", "condition",
                             "dc_meds", "instructions", "results", "consults", "dc_hpi",
                             "dc_pmh", "followup", "dc_social", "disposition", "dc_payer"),
            headers={"cc": "Indication", "hpi": "History", "pmh": "Past history",
                     "psh": "Prior surgery", "meds": "Meds", "allergies": "Allergies",
                     "social": "Social", "function": "Mobility", "family": "Family history",
                     "ros": "ROS", "exam": "Exam", "labs": "Labs", "imaging": "Imaging",
                     "ap": "Plan", "payer": "Payer", "dc_diagnoses": "Diagnoses",
                     "preop": "Pre-anesthesia", "consults": "Consults", "dc_pmh": "Past history",
                     "dc_social": "Social", "course": "Post-op course", "procedures": "Operation",
                     "results": "Labs", "dc_meds": "Discharge meds",
                     "condition": "Condition at discharge", "dc_hpi": "History",
                     "disposition": "Discharge to", "followup": "Follow-up",
                     "instructions": "Instructions", "dc_payer": "Payer"},
            frames={
                "header": ("{title}. Surgeon: {name}. Date of admission {date}.",),
                "hpi_open": ("{age} year old {sex} with {history}, {complaint}{duration}.",),
                "ap_open": ("{age} year old {sex}, {dx}.",),
                "dc_header": ("{title}. Surgeon: {name}. Admitted {admitted}, discharged "
                              "{discharged} ({days} days).",),
                "course_open": ("{age} year old {sex} with {history}, {dx}.",),
            },
            titles={"floor": "Admission note", "icu": "Admission note",
                    "discharge": "Discharge summary"},
            casing="lower", sex_words=("female", "male"), abbreviation_rate=0.5,
            mention_rate=0.8, deid="XXXX", date_format="%Y/%m/%d", section_gap="\n\n",
            list_format="commas", lab_format="skeleton", units="us", cc="diagnosis", ros="brief",
            hpi_history=1, ed_course=False, copy_forward_rate=0.5, typo_rate=0.006, therapy_rate=0.7,
            boilerplate=("DVT prophylaxis per protocol.", "Risks and benefits reviewed with XXXX."),
            filler=_SHARED_FILLER,
        ),
        NoteStyle(
            name="external_system", template="clerking",
            admission_order=("header", "cc", "hpi", "pmh", "meds", "allergies", "social",
                             "function", "family", "ros", "exam", "labs", "imaging", "ap",
                             "payer", "attestation"),
            discharge_order=("dc_header", "dc_diagnoses", "dc_hpi", "course", "procedures",
                             "dc_meds", "condition", "disposition", "followup", "transitions", "dc_pmh",
                             "dc_social", "results", "instructions", "dc_payer",
                             "dc_attestation"),
            headers={"cc": "PC", "hpi": "HPC", "pmh": "PMHx", "psh": "PSHx", "meds": "DHx",
                     "allergies": "Allergies", "social": "SHx", "function": "Functional hx",
                     "family": "FHx", "ros": "Systems review", "exam": "O/E", "labs": "Bloods",
                     "imaging": "Imaging", "ap": "Imp/Plan", "payer": "Funding",
                     "dc_diagnoses": "Diagnoses", "dc_pmh": "PMHx", "dc_social": "SHx",
                     "course": "Summary of stay", "procedures": "Procedures",
                     "results": "Results", "dc_meds": "TTO", "condition": "Condition on discharge",
                     "disposition": "Destination", "followup": "Actions for GP",
                     "dc_payer": "Funding", "transitions": "Outstanding issues",
                     "dc_hpi": "Presentation", "instructions": "Advice given"},
            frames={
                "header": ("{title}, {name}, {date}. GP: {pcp}",),
                "hpi_open": ("{age}{sex}, background of {history}, referred with {complaint}"
                             "{duration}.", "{age} y/o {sex} with {history}, presenting with "
                             "{complaint}{duration}."),
                "ap_open": ("{age}{sex} with {history}. Impression: {dx}.",),
                "dc_header": ("{title}, {name}, adm {admitted}, disch {discharged}",),
                "course_open": ("{age}{sex} with {history}, admitted with {dx}.",),
            },
            titles={"floor": "Medical clerking", "icu": "Medical clerking",
                    "discharge": "Discharge letter"},
            casing="as_is", sex_words=("F", "M"), abbreviation_rate=0.5, mention_rate=0.8,
            deid="[REDACTED]", date_format="%d/%m/%Y", section_gap="\n\n", list_format="dashes",
            lab_format="si", units="uk", cc="complaint", ros="full", hpi_history=2,
            ed_course=True,
            copy_forward_rate=0.5, typo_rate=0.005, therapy_rate=0.4,
            boilerplate=("Clerked by FY1 [REDACTED], reviewed on post-take ward round.",
                         "VTE assessment completed."),
            filler=("Systemic enquiry unremarkable.", "Bloods and CXR reviewed.",
                    "Drug chart rewritten.", "TEP discussed.", "Plan explained to pt.",
                    "For obs 4-hourly.", "Eating and drinking.", "Analgesia prescribed.",
                    "Next of kin aware.", "Observations charted.", "Fluid balance chart started.",
                    "Pharmacy medicines reconciliation done.", "Ward round plan documented."),
            novel_vocabulary_rate=0.7,
            none_history="nil of note",
        ),
    )
}
