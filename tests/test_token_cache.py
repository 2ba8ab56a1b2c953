"""client/token_cache.py: a site's tokenized notes kept in its state folder, so a fresh ClientApp
process (one per message on the Deployment Engine) skips the tokenizer.

The cache must never change what training sees: its result equals `encode_site`'s, a change of
anything that decides the encoding (table, tokenizer, max length, tasks, scoring) gives a new
entry, a damaged entry is rebuilt, and nothing is written outside the cache folder.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import client.token_cache
from client.data import EncodedSplit, encode_site
from client.model import load_tokenizer
from client.token_cache import cached_encode_site
from tests.model_settings import model_settings
from tests.tiny_models import keyword_table, make_tiny_encoder, with_stated_facts

TASKS = ("mortality", "los")


def table() -> pd.DataFrame:
    """A keyword table with a validation split, the generator's oracle columns (float64) and the
    facts its notes state (so the note-level ceiling is cached too)."""
    df = with_stated_facts(keyword_table(40))
    df.loc[df.index[:6], "split"] = "validation"
    rng = np.random.default_rng(0)
    df["p_mortality"] = rng.random(len(df))
    for k in range(4):
        df[f"p_los_{k}"] = rng.random(len(df))
    return df


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder: Path):
    return load_tokenizer(model_settings(base=str(tiny_encoder), max_length=16, tasks=TASKS,
                                         scoring="head"))


def encode(df, tokenizer, cache_dir: Path, *, tasks=TASKS, max_length=16, scoring="head"):
    return cached_encode_site(df, tokenizer, tasks, max_length=max_length, scoring=scoring,
                              cache_dir=cache_dir)


def assert_same(a: dict[str, EncodedSplit], b: dict[str, EncodedSplit]) -> None:
    assert set(a) == set(b)
    for name in a:
        x, y = a[name], b[name]
        assert x.size == y.size
        for kind in ("notes", "prompts"):
            left, right = getattr(x, kind), getattr(y, kind)
            assert set(left) == set(right), (name, kind)
            for key in left:
                assert torch.equal(left[key].input_ids, right[key].input_ids)
                assert torch.equal(left[key].attention_mask, right[key].attention_mask)
                assert left[key].input_ids.dtype == right[key].input_ids.dtype
        assert set(x.labels) == set(y.labels)
        assert all(torch.equal(x.labels[t], y.labels[t]) for t in x.labels)
        assert set(x.oracle) == set(y.oracle)
        assert all(np.array_equal(x.oracle[t], y.oracle[t]) and x.oracle[t].dtype == y.oracle[t].dtype
                   for t in x.oracle)
        assert set(x.note_ceiling) == set(y.note_ceiling)
        assert all(np.array_equal(x.note_ceiling[t], y.note_ceiling[t])
                   and x.note_ceiling[t].dtype == y.note_ceiling[t].dtype for t in x.note_ceiling)
        assert torch.equal(x.patients, y.patients)


@pytest.fixture
def count_encodes(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = client.token_cache.encode_site

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(client.token_cache, "encode_site", counted)
    return calls


def test_cached_result_equals_encode_site_and_is_read_back(tokenizer, tmp_path, count_encodes):
    df = table()
    expected = encode_site(df, tokenizer, TASKS, max_length=16)
    first = encode(df, tokenizer, tmp_path / "cache")
    second = encode(df, tokenizer, tmp_path / "cache")
    assert len(count_encodes) == 1  # the second call read the file
    assert_same(first, expected)
    assert_same(second, expected)
    assert second["validation"].size == 6 and second["train"].oracle["los"].shape[1] == 4
    assert second["test"].note_ceiling["los"].shape == (second["test"].size, 4)


def test_letter_prompts_round_trip(letter_llama, tmp_path, count_encodes):
    settings = model_settings(base=str(letter_llama), max_length=128, tasks=TASKS,
                              scoring="letters")
    tokenizer = load_tokenizer(settings)
    df = table()
    expected = encode_site(df, tokenizer, TASKS, max_length=128, scoring="letters")
    encode(df, tokenizer, tmp_path, max_length=128, scoring="letters")
    assert_same(encode(df, tokenizer, tmp_path, max_length=128, scoring="letters"), expected)
    assert len(count_encodes) == 1


def _edited_note(df):
    df.loc[df.index[0], "admission_note"] += " sepsis"
    return df


def _edited_label(df):
    df.loc[df.index[3], "los"] = (df.loc[df.index[3], "los"] + 1) % 4
    return df


def _edited_facts(df):
    df.loc[df.index[1], "admission_facts"] = "[]"  # row 1 says sepsis: a fact dropped
    return df


def _edited_split(df):
    df.loc[df.index[-1], "split"] = "validation"
    return df


@pytest.mark.parametrize("change", [
    pytest.param({"df": _edited_note}, id="a note edited"),
    pytest.param({"df": _edited_label}, id="a label edited"),
    pytest.param({"df": _edited_split}, id="a row moved to another split"),
    pytest.param({"df": _edited_facts}, id="a note's stated facts edited"),
    pytest.param({"max_length": 12}, id="max length"),
    pytest.param({"tasks": ("mortality",)}, id="tasks"),
    pytest.param({"tokenizer": "pad"}, id="tokenizer pad token"),
    pytest.param({"tokenizer": "other base"}, id="another base's tokenizer"),
])
def test_anything_that_changes_the_encoding_gives_a_new_entry(change, tokenizer, letter_llama,
                                                              tmp_path, count_encodes):
    encode(table(), tokenizer, tmp_path)
    df = change.get("df", lambda d: d)(table())
    used = tokenizer
    if change.get("tokenizer") == "pad":
        used = load_tokenizer(model_settings(base=str(make_tiny_encoder(tmp_path / "b")),
                                             max_length=16, tasks=TASKS, scoring="head"))
        used.pad_token = used.unk_token
    elif change.get("tokenizer") == "other base":
        used = load_tokenizer(model_settings(base=str(letter_llama), max_length=16, tasks=TASKS,
                                             scoring="head"))
    tasks, max_length = change.get("tasks", TASKS), change.get("max_length", 16)
    got = encode(df, used, tmp_path, tasks=tasks, max_length=max_length)
    assert len(count_encodes) == 2, "a changed input was answered from the old entry"
    assert_same(got, encode_site(df, used, tasks, max_length=max_length))
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _garbage(path: Path) -> None:
    path.write_bytes(b"not a safetensors file at all")


def _wrong_key(path: Path) -> None:
    from safetensors.torch import load, save

    path.write_bytes(save(load(path.read_bytes()), metadata={"key": "0" * 64, "sizes": "{}"}))


def _short_labels(path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(path), framework="pt") as file:
        metadata = file.metadata()
        tensors = {k: file.get_tensor(k) for k in file.keys()}
    tensors["train/labels/mortality"] = tensors["train/labels/mortality"][:-1].clone()
    path.write_bytes(save(tensors, metadata=metadata))


@pytest.mark.parametrize("damage", [_truncated, _garbage, _wrong_key, _short_labels],
                         ids=["truncated", "garbage", "another key", "a split of another length"])
def test_a_damaged_entry_is_rebuilt_with_a_warning(damage, tokenizer, tmp_path, count_encodes,
                                                    caplog):
    df = table()
    encode(df, tokenizer, tmp_path)
    (entry,) = tmp_path.glob("*.safetensors")
    damage(entry)
    with caplog.at_level(logging.WARNING, logger="client.token_cache"):
        got = encode(df, tokenizer, tmp_path)
    assert_same(got, encode_site(df, tokenizer, TASKS, max_length=16))
    assert len(count_encodes) == 2
    assert f"token cache {entry} cannot be used" in caplog.text
    encode(df, tokenizer, tmp_path)  # the rebuilt entry is whole again
    assert len(count_encodes) == 2


def test_only_the_most_recent_entries_are_kept(tokenizer, tmp_path):
    for max_length in range(8, 8 + client.token_cache.KEEP + 2):
        encode(table(), tokenizer, tmp_path, max_length=max_length)
    assert len(list(tmp_path.glob("*.safetensors"))) == client.token_cache.KEEP


def test_site_runtime_writes_only_into_the_sites_state_folder(tiny_encoder, tmp_path,
                                                              monkeypatch, count_encodes):
    """Through the ClientApp's own path (client/site.py): the cache lands in the site's state
    folder, keyed by its dataset, and a fresh process (an empty per-process cache) reads it."""
    import client.site
    from sites.config import load_consortium
    from tests.consortium_fixtures import write_small_consortium

    (tmp_path / "consortium").mkdir()
    consortium = write_small_consortium(tmp_path / "consortium", encounters=60)
    site = load_consortium(consortium, data_root=tmp_path / "consortium" / "data").sites[0]
    client.site.ensure_site_data(site, seed=1)
    before = {p for p in tmp_path.rglob("*")}
    settings = model_settings(base=str(tiny_encoder), max_length=16, tasks=TASKS,
                              scoring="head")
    monkeypatch.setattr(client.site, "_SPLITS", {})
    monkeypatch.setattr(client.site, "_MODELS", {})
    first = client.site.site_runtime(site, settings)
    monkeypatch.setattr(client.site, "_SPLITS", {})  # as a new process starts
    second = client.site.site_runtime(site, settings)
    assert len(count_encodes) == 1
    assert_same(first.splits, second.splits)
    written = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    assert written and all(p.is_relative_to(site.state_dir) for p in written), written
    (entry,) = [p for p in written if p.suffix == ".safetensors"]
    assert entry.parent.name == "token-cache"
    assert entry.parent.parent.name == first.fingerprint.partition(":")[2][:16]


def test_clientapp_imports_neither_opacus_nor_scipy_stats():
    """A fresh process per message: what only DP training (opacus) or evaluation (scipy,
    scikit-learn) needs is imported in its handler, not by every message."""
    code = ("import sys, client.app; print(sorted(m for m in ('opacus', 'scipy.stats', "
            "'sklearn') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], check=True)
    assert done.stdout.strip() == "[]"
