"""The privacy ledger, format 2: writing signed entries and reading them back.

Ledgers are built as a site builds them: `append_entry` with ε computed by opacus
(`client.privacy.accounting.cumulative_epsilon`), over the whole ledger and over each run. Every
entry carries every field, the hash chain and the site's signature; `append_entry` refuses what
the verifier would refuse, and `read_ledger` names the file and line of what it cannot read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from client.privacy.ledger import (
    FIELDS,
    GENESIS_SHA256,
    LedgerFormatError,
    append_entry,
    canonical_line,
    entry_sha256,
    read_ledger,
    seal_sha256,
)
from client.privacy.signing import LedgerSigner, signature_valid
from client.privacy.verify import verify_ledger
from tests.ledger.ledger_files import ledger_lines, write_ledger_lines


def test_entries_carry_every_field_chain_and_signature(genuine: Path, signer: LedgerSigner):
    entries = read_ledger(genuine)
    assert [e["round"] for e in entries] == [1, 2, 3]
    assert all(set(e) == set(FIELDS) for e in entries)
    assert entries[0]["prev_sha256"] == GENESIS_SHA256
    assert entries[1]["prev_sha256"] == entry_sha256(entries[0])
    assert entries[2]["prev_sha256"] == entry_sha256(entries[1])
    assert all(e["entry_sha256"] == seal_sha256(e) for e in entries)
    assert all(e["signer"] == signer.fingerprint for e in entries)
    assert all(signature_valid(signer.public_key, seal_hex=e["entry_sha256"],
                               signature=e["signature"]) for e in entries)
    assert entries[0]["mechanism"] == "DP-SGD, Poisson-subsampled Gaussian"
    assert set(entries[0]["library_versions"]) == {"opacus", "torch", "peft", "flwr"}
    assert entries[0]["epsilon"] < entries[1]["epsilon"] < entries[2]["epsilon"] <= 3.0
    assert all(e["run_epsilon"] == e["epsilon"] for e in entries)  # one run: the same spend
    assert ledger_lines(genuine) == [canonical_line(e) for e in entries]  # file lines are canonical


def test_canonical_line_is_sorted_and_compact():
    assert canonical_line({"b": 1, "a": [1.5, "x"]}) == '{"a":[1.5,"x"],"b":1}'


def _fields_of(entry: dict) -> dict:
    return {k: v for k, v in entry.items()
            if k not in ("signer", "prev_sha256", "entry_sha256", "signature")}


@pytest.mark.parametrize("change, message", [
    ({"round": 3}, r"`round` is 3 but run 'run-1' already reached round 3; rounds must strictly "
                   r"increase within a run"),
    ({"round": 2}, r"`round` is 2 but run 'run-1' already reached round 3"),
    ({"round": 4, "dataset": "sha256:other"},
     r"`dataset` is 'sha256:other' but the ledger's first entry has 'sha256:d+'"),
    ({"round": 4, "delta": 1e-6}, r"`delta` is 1e-06 but the ledger's first entry has 1e-05"),
    ({"round": 4, "privacy_unit": "family"},
     r"field `privacy_unit` is 'family'; expected one of \['encounter', 'patient'\]"),
    ({"round": 4, "run_epsilon_cap": 0}, r"field `run_epsilon_cap` is 0; expected null or a "
                                         r"number > 0"),
    ({"round": 4, "run": ""}, r"field `run` is ''; expected a non-empty string"),
    ({"round": 4, "signature": "x"}, r"`signature` is computed by the ledger"),
    ({"round": 4, "prev_sha256": GENESIS_SHA256}, r"`prev_sha256` is computed by the ledger"),
])
def test_append_refuses_an_entry_the_verifier_would_refuse(genuine, tmp_path, signer, change,
                                                           message):
    path = write_ledger_lines(tmp_path / "l.jsonl", ledger_lines(genuine))
    with pytest.raises(ValueError, match=message):
        append_entry(path, {**_fields_of(read_ledger(path)[-1]), **change}, signer=signer)
    assert ledger_lines(path) == ledger_lines(genuine)  # nothing written


def test_append_refuses_a_missing_field_another_signer_and_a_torn_line(genuine, tmp_path, signer,
                                                                       intruder):
    path = write_ledger_lines(tmp_path / "l.jsonl", ledger_lines(genuine))
    fields = {**_fields_of(read_ledger(path)[-1]), "round": 4}
    with pytest.raises(ValueError, match="ledger entry field `run_epsilon` missing"):
        append_entry(path, {k: v for k, v in fields.items() if k != "run_epsilon"}, signer=signer)
    with pytest.raises(ValueError, match=r"`signer` is SHA256:\S+ but the ledger is signed by "
                                         + signer.fingerprint.replace("+", r"\+")):
        append_entry(path, fields, signer=intruder)
    with open(path, "a") as handle:
        handle.write('{"round": 4')  # a crash mid-write
    with pytest.raises(LedgerFormatError, match=r"l\.jsonl: the last line is incomplete"):
        append_entry(path, fields, signer=signer)


def test_another_run_starts_again_at_round_one(genuine, tmp_path, signer):
    path = write_ledger_lines(tmp_path / "l.jsonl", ledger_lines(genuine))
    fields = {**_fields_of(read_ledger(path)[-1]), "run": "run-2", "round": 1}
    assert append_entry(path, fields, signer=signer)["round"] == 1


@pytest.mark.parametrize(
    "bad_line, message",
    [("not json", r":2: not valid JSON"), ("[1, 2]", r":2: expected a JSON object, got list"),
     ('{"round": 2}', r":2: field `run` missing")],
)
def test_read_ledger_names_file_and_line(genuine, signer, tmp_path, bad_line, message):
    lines = ledger_lines(genuine)
    path = write_ledger_lines(tmp_path / "l.jsonl", [lines[0], bad_line, lines[2]])
    with pytest.raises(LedgerFormatError, match=str(path).replace(".", r"\.") + message):
        read_ledger(path)
    report = verify_ledger(path, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 2


def test_a_format_1_ledger_is_refused_naming_the_signature(genuine, signer, tmp_path):
    """Format 1: no run, dataset, run ε, budget, noise source, signer or signature."""
    v2_only = ("run", "dataset", "run_epsilon", "epsilon_budget", "run_epsilon_cap",
               "noise_source", "signer", "signature")
    entry = {k: v for k, v in read_ledger(genuine)[0].items() if k not in v2_only}
    entry["entry_sha256"] = seal_sha256(entry)
    path = write_ledger_lines(tmp_path / "v1.jsonl", [canonical_line(entry)])
    with pytest.raises(LedgerFormatError, match=r"v1\.jsonl:1: field `signature` missing: an "
                                                r"unsigned entry, as a format-1 ledger"):
        read_ledger(path)
    report = verify_ledger(path, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 1
    assert report.reason.startswith("field `signature` missing")
