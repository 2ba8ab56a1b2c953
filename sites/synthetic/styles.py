"""Note styles: how each hospital writes its admission (H&P) and discharge notes.

A style is the site's template family (sectioned, narrative, bullets, operative, clerking), its
section order and headers, sentence frames, casing, how often it abbreviates, its de-identification
token and date format, its boilerplate, and how often it mentions each fact at all. The training
hospitals share one vocabulary (`sites.synthetic.vocabulary`, plain and short phrasings); the
external system's style uses its own frames, headers and, often, held-out phrasings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

ADMISSION_SECTIONS = ("title", "presentation", "complaint", "history", "exam", "function",
                      "social", "insurance", "plan")
DISCHARGE_SECTIONS = ("title", "summary", "history", "function", "social", "disposition",
                      "followup", "meds")


@dataclass(frozen=True)
class NoteStyle:
    """How one site writes notes. Frames are `str.format` templates over the fact placeholders
    {name} {date} {age} {sex} {dx} {complaint} {conditions} {acuity} {vitals} {function} {social}
    {payer} {unit} {course} {days} {disposition} {followup} {prior} {meds}."""

    name: str
    template: Literal["sectioned", "narrative", "bullets", "operative", "clerking"]
    admission_order: tuple[str, ...]
    """Admission sections in the order written (label-relevant ones early)."""
    discharge_order: tuple[str, ...]
    headers: Mapping[str, str]
    """Section header per section; sections without one are written as bare sentences."""
    frames: Mapping[str, tuple[str, ...]]
    """Sentence frames per section; one is picked per note."""
    casing: Literal["as_is", "lower", "upper"]
    sex_words: tuple[str, str]
    """How the site writes (female, male)."""
    abbreviation_rate: float
    """Probability a fact is written with a short phrasing (shared vocabulary)."""
    mention_rate: float
    """Probability each optional fact is written at all."""
    deid: str
    """De-identification token replacing names."""
    date_format: str
    """`strftime` format of the admission date (inside de-id brackets where the site uses them)."""
    boilerplate: tuple[str, ...]
    """Site boilerplate sentences (dropped first when a note is too long)."""
    filler: tuple[str, ...]
    """Label-free sentences added when a note is too short."""
    novel_vocabulary_rate: float = 0.0
    """Probability a fact uses the held-out (external) phrasing; 0 at the training hospitals."""
    none_history: str = "no significant past medical history"


_SHARED_FILLER = (
    "Review of systems otherwise negative.", "Labs and imaging reviewed.",
    "Medications reconciled.", "Allergies reviewed.", "Code status discussed.",
    "Plan discussed with the patient.", "Will continue to monitor.", "No recent travel.",
    "Pain controlled.", "Diet as tolerated.", "Questions answered.", "Telemetry reviewed.",
    "Nursing notes reviewed.", "Home medications verified with pharmacy.",
)

STYLES: dict[str, NoteStyle] = {
    style.name: style
    for style in (
        NoteStyle(
            name="academic",
            template="sectioned",
            admission_order=("presentation", "insurance", "complaint", "history", "exam", "plan",
                             "function", "social", "title"),
            discharge_order=("summary", "history", "disposition", "function", "social",
                             "followup", "meds", "title"),
            headers={"presentation": "HPI", "history": "PMH", "exam": "EXAM", "plan": "A/P",
                     "function": "FUNCTION", "social": "SOCIAL HX", "insurance": "INSURANCE",
                     "summary": "BRIEF HOSPITAL COURSE", "disposition": "DISPOSITION",
                     "followup": "FOLLOW-UP", "meds": "MEDS"},
            frames={
                "title": ("Admission H&P. Patient: {name}. Date: {date}.",),
                "presentation": ("{age} yo {sex} presenting with {dx}.",
                                 "{age}{sex} with {dx}."),
                "complaint": ("Reports {complaint}.", "Presents with {complaint}."),
                "history": ("{conditions}.",),
                "exam": ("{acuity}. {vitals}.", "{vitals}. Gen: {acuity}."),
                "plan": ("{dx}. {unit}.", "{unit}, team aware."),
                "function": ("{function}.",),
                "social": ("{social}.",),
                "insurance": ("{payer}.",),
                "discharge_title": ("Discharge summary. Patient: {name}. Admitted: {date}.",),
                "summary": ("{age} yo {sex} admitted with {dx}, {course}; {days} days inpatient.",),
                "disposition": ("{disposition}.",),
                "followup": ("{followup}.",),
                "meds": ("{meds} medications at discharge. {prior}.",),
            },
            casing="as_is", sex_words=("F", "M"), abbreviation_rate=0.6, mention_rate=0.85,
            deid="[**Name**]", date_format="[**%Y-%m-%d**]",
            boilerplate=("Seen and examined with attending Dr. [**Name**], agree with plan.",
                         "Resident note, attending attestation to follow."),
            filler=_SHARED_FILLER,
        ),
        NoteStyle(
            name="community",
            template="narrative",
            admission_order=("presentation", "complaint", "exam", "history", "insurance",
                             "social", "function", "plan", "title"),
            discharge_order=("summary", "disposition", "history", "social", "function", "followup",
                             "meds", "title"),
            headers={},
            frames={
                "title": ("Dictated by ___ on {date}.",),
                "presentation": ("The patient is a {age}-year-old {sex} who comes in with {dx}.",
                                 "This {age}-year-old {sex} presents to the emergency department "
                                 "with {dx}."),
                "complaint": ("The patient describes {complaint}.", "History of {complaint}."),
                "history": ("Past medical history is significant for {conditions}.",),
                "exam": ("On examination the patient is {acuity}. {vitals}.",),
                "plan": ("We will {unit}.",),
                "function": ("Functional status: {function}.", "At baseline: {function}."),
                "social": ("Socially, {social}.",),
                "insurance": ("Coverage is {payer}.",),
                "discharge_title": ("Dictated by ___ on {date}.",),
                "summary": ("This {age}-year-old {sex} was admitted with {dx}; {course}. The "
                            "patient spent {days} days in the hospital.",),
                "disposition": ("The patient was discharged to {disposition}.",),
                "followup": ("Plan is to {followup}.",),
                "meds": ("Discharged on {meds} medications. {prior}.",),
            },
            casing="as_is", sex_words=("woman", "man"), abbreviation_rate=0.15, mention_rate=0.8,
            deid="___", date_format="%m/%d/%Y",
            boilerplate=("The patient was seen and evaluated by ___ in the emergency department.",
                         "Thank you for allowing us to participate in the care of this patient."),
            filler=_SHARED_FILLER,
        ),
        NoteStyle(
            name="safety_net",
            template="bullets",
            admission_order=("presentation", "complaint", "history", "social", "exam",
                             "insurance", "plan", "function", "title"),
            discharge_order=("summary", "social", "history", "disposition", "followup", "meds",
                             "function", "title"),
            headers={"presentation": "CC", "history": "PMH", "social": "SH", "exam": "PE",
                     "insurance": "INS", "plan": "PLAN", "function": "BASELINE",
                     "summary": "COURSE", "disposition": "DISPO", "followup": "F/U",
                     "meds": "MEDS"},
            frames={
                "title": ("<NAME> seen {date}.",),
                "presentation": ("{age} Y/O {sex}, {dx}.", "{age}{sex} {dx}."),
                "complaint": ("{complaint}.",),
                "history": ("{conditions}.",),
                "social": ("{social}.",),
                "exam": ("{acuity}, {vitals}.",),
                "insurance": ("{payer}.",),
                "plan": ("{unit}.",),
                "function": ("{function}.",),
                "discharge_title": ("<NAME> d/c {date}.",),
                "summary": ("{age} Y/O {sex}, {dx}, {course}, {days} days.",),
                "disposition": ("{disposition}.",),
                "followup": ("{followup}.",),
                "meds": ("{meds} meds. {prior}.",),
            },
            casing="upper", sex_words=("F", "M"), abbreviation_rate=0.75, mention_rate=0.75,
            deid="<NAME>", date_format="%m/%d/%y",
            boilerplate=("SW consulted. Interpreter offered.", "Case discussed with <NAME>, MD."),
            filler=_SHARED_FILLER,
        ),
        NoteStyle(
            name="surgical",
            template="operative",
            admission_order=("presentation", "complaint", "plan", "history", "exam",
                             "function", "insurance", "social", "title"),
            discharge_order=("summary", "disposition", "function", "history", "followup", "social",
                             "meds", "title"),
            headers={"presentation": "Indication", "plan": "Plan", "history": "Past history",
                     "exam": "Exam", "function": "Mobility", "insurance": "Payer",
                     "social": "Social", "summary": "Post-op course", "disposition": "Discharge to",
                     "followup": "Follow-up", "meds": "Meds"},
            frames={
                "title": ("Surgeon: XXXX. Date of admission {date}.",),
                "presentation": ("{age} year old {sex} with {dx}.",),
                "complaint": ("{complaint}.", "History: {complaint}."),
                "plan": ("{unit}.", "{unit}; consent signed."),
                "history": ("{conditions}.",),
                "exam": ("{acuity}; {vitals}.",),
                "function": ("{function}.",),
                "insurance": ("{payer}.",),
                "social": ("{social}.",),
                "discharge_title": ("Surgeon: XXXX. Admitted {date}.",),
                "summary": ("{age} year old {sex}, {dx}, {course}, {days} days.",),
                "disposition": ("{disposition}.",),
                "followup": ("{followup}.",),
                "meds": ("{meds} meds. {prior}.",),
            },
            casing="lower", sex_words=("female", "male"), abbreviation_rate=0.5, mention_rate=0.8,
            deid="XXXX", date_format="%Y/%m/%d",
            boilerplate=("DVT prophylaxis per protocol.", "Risks and benefits reviewed with XXXX."),
            filler=_SHARED_FILLER,
        ),
        NoteStyle(
            name="external_system",
            template="clerking",
            admission_order=("title", "presentation", "complaint", "history", "function",
                             "social", "exam", "plan", "insurance"),
            discharge_order=("title", "summary", "function", "social", "history", "meds",
                             "disposition", "followup"),
            headers={"presentation": "PC", "history": "PMHx", "function": "Functional hx",
                     "social": "SHx", "exam": "O/E", "plan": "Imp/Plan", "insurance": "Funding",
                     "summary": "Summary of stay", "meds": "TTO",
                     "disposition": "Destination", "followup": "Actions for GP"},
            frames={
                "title": ("Medical clerking, [REDACTED], {date}.",),
                "presentation": ("{age}{sex}, {dx}.", "{age} y/o {sex} referred by GP with {dx}."),
                "complaint": ("HPC: {complaint}.",),
                "history": ("{conditions}.",),
                "function": ("{function}.",),
                "social": ("{social}.",),
                "exam": ("{acuity}; {vitals}.",),
                "plan": ("{unit}, senior review.",),
                "insurance": ("{payer}.",),
                "discharge_title": ("Discharge letter, [REDACTED], adm {date}.",),
                "summary": ("{age}{sex}, {dx}; {course}; inpatient for {days} nights.",),
                "meds": ("{meds} items on TTO. {prior}.",),
                "disposition": ("{disposition}.",),
                "followup": ("{followup}.",),
            },
            casing="as_is", sex_words=("F", "M"), abbreviation_rate=0.5, mention_rate=0.8,
            deid="[REDACTED]", date_format="%d/%m/%Y",
            boilerplate=("Clerked by FY1 [REDACTED], reviewed on post-take ward round.",
                         "VTE assessment completed."),
            filler=("Systemic enquiry unremarkable.", "Bloods and CXR reviewed.",
                    "Drug chart rewritten.", "NKDA.", "TEP discussed.", "Plan explained to pt.",
                    "For obs 4-hourly.", "Eating and drinking.", "Analgesia prescribed.",
                    "Next of kin aware.", "Observations charted.", "Fluid balance chart started.",
                    "Pharmacy medicines reconciliation done.", "Ward round plan documented."),
            novel_vocabulary_rate=0.7,
            none_history="nil of note",
        ),
    )
}
