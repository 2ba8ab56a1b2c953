"""The two ceilings a report shows, and the one "gap closed" is measured against.

On synthetic data each site reports two ceilings per task. The *oracle* is the AUROC of the
generator's true probabilities: they depend on latent factors no note states, so no model that
reads notes can reach it. The *note-level ceiling* is the Bayes AUROC given exactly the facts a note
states within the tokens the model reads (client/note_ceiling.py): the best a perfect reader of the
first `max-length` tokens could do. "Gap closed" — (final − round 0) ÷ (ceiling − round 0) — is
measured against the note-level ceiling, so training is judged on the distance it could cover. A
run without one (recorded before sites sent it, or a tokenizer without character offsets) falls
back to the oracle, and every label then says so. Real data has neither ceiling.
"""

from __future__ import annotations

from typing import Literal

ORACLE_LABEL = "oracle (latent)"
GapBasis = Literal["note ceiling", "oracle"]
"""Which ceiling a "gap closed" was measured against."""


def note_ceiling_label(max_length: int | None) -> str:
    """`note ceiling (first 256 tokens)`; without the number for a record that lacks it."""
    return "note ceiling" if max_length is None else f"note ceiling (first {max_length} tokens)"


def gap_ceiling(note_ceiling: float | None,
                oracle: float | None) -> tuple[float | None, GapBasis | None]:
    """The ceiling "gap closed" is measured against, and which one it is: the note-level ceiling,
    else the oracle; (None, None) when there is neither (real data)."""
    if note_ceiling is not None:
        return note_ceiling, "note ceiling"
    if oracle is not None:
        return oracle, "oracle"
    return None, None


def basis_note(basis: GapBasis | None) -> str:
    """What a gap-closed value adds to say it fell back to the oracle: ` (vs oracle)`, else ''."""
    return " (vs oracle)" if basis == "oracle" else ""
