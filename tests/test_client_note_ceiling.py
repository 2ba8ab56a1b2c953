"""client/note_ceiling.py: the facts a model reads are those in the tokens it is fed, exactly, and
`encode_site` carries the note-level ceiling fitted on them (synthetic data only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from client.data import encode_site, encode_split
from client.letter_scoring import suffix_ids
from client.model import load_tokenizer
from client.note_ceiling import ReadWindow, facts_read, note_ceilings, read_windows, token_limit
from sites.synthetic.stated_facts import StatedFact
from tests.model_settings import model_settings
from tests.tiny_models import STATED_WORDS, clinical_text, keyword_table, with_stated_facts

FILLER = [w for w in " ".join(clinical_text(20, seed=3)).split() if w not in STATED_WORDS]


def _tokenizer(base: Path, scoring: str):
    return load_tokenizer(model_settings(base=str(base), max_length=64, tasks=("mortality",),
                                         scoring=scoring))


@pytest.fixture(scope="module", params=["head", "letters"])
def reader(request, tiny_encoder: Path, letter_llama: Path):
    """(scoring, tokenizer): a head on the MiniLM tokenizer, letters on a byte-level BPE."""
    base = tiny_encoder if request.param == "head" else letter_llama
    return request.param, _tokenizer(base, request.param)


def question(tokenizer, scoring: str) -> int:
    """Tokens of mortality's prompt that follow the note (none for a head)."""
    return len(suffix_ids(tokenizer, "mortality")) if scoring == "letters" else 0


def fed_content(df, tokenizer, scoring: str, max_length: int) -> list[list[int]]:
    """The note's own token ids each row's model input holds (no specials, pads or question)."""
    split = encode_split(df, tokenizer, ("mortality",), max_length=max_length, scoring=scoring)
    encoded = split.prompts["mortality"] if scoring == "letters" else split.notes["admission"]
    tail = question(tokenizer, scoring)
    special = set(tokenizer.all_special_ids)
    rows = []
    for ids, mask in zip(encoded.input_ids.tolist(), encoded.attention_mask.tolist()):
        real = ids[: sum(mask) - tail]
        rows.append([i for i in real if i not in special])
    return rows


def test_the_window_ends_where_the_fed_tokens_end(reader) -> None:
    scoring, tokenizer = reader
    words = " ".join(clinical_text(1, seed=1, words=600)).split()
    notes = [" ".join(words[5 * i: 5 * i + 10 + 4 * i]) for i in range(12)]  # 10..54 words
    df = keyword_table(12).assign(admission_note=notes)
    kinds = set()
    for max_length in (question(tokenizer, scoring) + n for n in (40, 48, 64)):
        limit = token_limit(tokenizer, "mortality", max_length=max_length, scoring=scoring)
        windows = read_windows(notes, tokenizer, limit)
        fed = fed_content(df, tokenizer, scoring, max_length)
        for note, window, content in zip(notes, windows, fed):
            whole = tokenizer(note, add_special_tokens=False, return_offsets_mapping=True)
            assert content == whole["input_ids"][: len(content)]  # the fed ids: a prefix
            if window.end is None:
                assert len(content) == len(whole["input_ids"])
            else:  # cut: the window ends with the last fed token
                assert len(content) < len(whole["input_ids"])
                assert window.end == whole["offset_mapping"][len(content) - 1][1]
        kinds |= {w.end is None for w in windows}
    assert kinds == {True, False}  # notes read whole and notes cut


def test_a_fact_is_read_exactly_when_its_tokens_are_fed(reader) -> None:
    """Sweep the cut across a note ending in `fever`: the fact counts as read at exactly the
    lengths at which the model's input spells the whole word."""
    scoring, tokenizer = reader
    note = "sepsis " + " ".join(FILLER[:30]) + " fever " + " ".join(FILLER[30:40])
    df = with_stated_facts(keyword_table(1).assign(admission_note=[note]))
    seen = set()
    for max_length in range(question(tokenizer, scoring) + 20, question(tokenizer, scoring) + 80):
        features = facts_read(df, tokenizer, "admission", limit=token_limit(
            tokenizer, "mortality", max_length=max_length, scoring=scoring))[0]
        spelled = tokenizer.decode(fed_content(df, tokenizer, scoring, max_length)[0])
        assert "word=sepsis" in features
        assert ("word=fever" in features) == ("fever" in spelled), max_length
        seen.add("word=fever" in features)
    assert seen == {True, False}  # the sweep crossed the cut


def test_a_left_truncating_tokenizer_reads_the_note_s_end(tiny_encoder: Path) -> None:
    tokenizer = _tokenizer(tiny_encoder, "head")
    tokenizer.truncation_side = "left"
    note = "sepsis " + " ".join(FILLER[:30]) + " fever"
    window = read_windows([note], tokenizer, 12)[0]
    assert window.start > 0 and window.end is None
    facts = [StatedFact("word=sepsis", 0, 6), StatedFact("word=fever", len(note) - 5, len(note))]
    assert window.features(facts) == {"word=fever"}
    assert ReadWindow(0, 0).features(facts) == frozenset()


def _site(n: int = 160):
    """A keyword table whose mortality oracle is high exactly when the admission note says
    `sepsis`, with the facts the notes state."""
    df = keyword_table(n, seed=2)
    septic = df["admission_note"].str.contains("sepsis")
    return with_stated_facts(df.assign(p_mortality=np.where(septic, 0.9, 0.1)))


def test_encode_site_fits_the_ceiling_on_what_the_model_reads(tiny_encoder: Path) -> None:
    tokenizer = _tokenizer(tiny_encoder, "head")
    df = _site()
    aurocs = {}
    for max_length in (32, 7):  # whole notes (8-21 words) vs the first few words
        splits = encode_site(df, tokenizer, ("mortality", "los"), max_length=max_length)
        test = splits["test"]
        assert set(test.note_ceiling) == {"mortality"}  # los has no oracle columns here
        assert test.note_ceiling["mortality"].shape == (test.size, 2)
        assert splits["train"].note_ceiling["mortality"].shape == (splits["train"].size, 2)
        y = test.labels["mortality"].numpy()
        aurocs[max_length] = roc_auc_score(y, test.note_ceiling["mortality"][:, 1])
        subset = test.subset([0, 2])
        np.testing.assert_array_equal(subset.note_ceiling["mortality"],
                                      test.note_ceiling["mortality"][[0, 2]])
    assert aurocs[32] == 1.0  # the label is the keyword, and every keyword is read
    assert aurocs[7] < 0.9  # keywords past the cut are not


def test_an_external_site_is_cross_fitted(tiny_encoder: Path) -> None:
    tokenizer = _tokenizer(tiny_encoder, "head")
    df = _site().assign(split="test")
    test = encode_site(df, tokenizer, ("mortality",), max_length=32)["test"]
    y = test.labels["mortality"].numpy()
    # five fits on four fifths each: the other words' small coefficients blur the ranking a little
    assert roc_auc_score(y, test.note_ceiling["mortality"][:, 1]) > 0.95


@pytest.mark.parametrize("drop", ["facts", "oracle"])
def test_no_facts_or_no_oracle_no_ceiling(tiny_encoder: Path, drop: str) -> None:
    tokenizer = _tokenizer(tiny_encoder, "head")
    df = _site()
    df = df.drop(columns=["admission_facts", "discharge_facts"] if drop == "facts"
                 else ["p_mortality"])
    splits = encode_site(df, tokenizer, ("mortality",), max_length=32)
    assert all(split.note_ceiling == {} for split in splits.values())


def test_a_broken_facts_cell_names_its_column_and_encounter(tiny_encoder: Path) -> None:
    tokenizer = _tokenizer(tiny_encoder, "head")
    df = _site()
    df.loc[3, "admission_facts"] = "[[\"word=sepsis\", 4]]"
    with pytest.raises(ValueError, match=r"column `admission_facts` of encounter `e3`: item 0"):
        note_ceilings(df, tokenizer, ("mortality",), {"mortality": np.full((len(df), 2), 0.5)},
                      max_length=32, scoring="head")
