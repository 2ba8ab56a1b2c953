"""An encounter's admission (H&P) and discharge notes, from its facts, its patient's chart and its
site's style, with the record of what each note states where.

`encounter_view` draws what the clinicians see (shared by both notes), `admission_note` and
`discharge_note` write the sections in the style's order, and the patient's record carries the
chart and the sections last written to the next encounter. No label is ever written: an admission
note states no stay length, outcome or disposition, and a discharge note never says how a stay
ended for a patient who died (`sites.synthetic.wording.NEVER_WRITTEN` is checked on every note).
Each note has MIN_WORDS..MAX_WORDS words.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from sites.synthetic.admission_note import HISTORY_SECTIONS, render_admission
from sites.synthetic.chart import PatientRecord
from sites.synthetic.discharge_note import render_discharge
from sites.synthetic.encounter_view import perceive
from sites.synthetic.note_builder import Note
from sites.synthetic.note_parts import MAX_WORDS, MIN_WORDS
from sites.synthetic.styles import NoteStyle
from sites.synthetic.wording import Words

__all__ = ["MAX_WORDS", "MIN_WORDS", "render_notes"]


def render_notes(facts: Mapping[str, object], record: PatientRecord, style: NoteStyle,
                 rng: random.Random) -> tuple[Note, Note]:
    """The encounter's admission and discharge notes; `record` remembers the sections written
    and the stay, for the patient's next encounter."""
    encounter = perceive(facts, record, rng)
    words = Words(style, rng)
    admission, sections = render_admission(encounter, record, words)
    discharge = render_discharge(encounter, record, words, sections)
    record.sections.update({k: s for k, s in sections.items() if k in HISTORY_SECTIONS})
    record.stays.append((encounter.admitted, encounter.diagnosis))
    return admission, discharge
