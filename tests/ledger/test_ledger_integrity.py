"""The privacy ledger, format 2: the verifier finds any change to a signed ledger, by its line.

A genuine ledger (written as a site writes it, ε by opacus) verifies, by RDP and by PRV against
the pessimistic PLD; a field changed in any entry, an entry removed, reordered or cut off (given
the anchor), or resealed without the site's key, fails at the line where it was changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.privacy.ledger import FIELDS, canonical_line, entry_sha256, read_ledger
from client.privacy.signing import LedgerSigner, simulated_signer
from client.privacy.verify import verify_ledger
from tests.ledger.ledger_files import ledger_lines, resealed_line, write_ledger_lines


def _changed(value):
    """A different value of the same kind, as a naive editor would make it."""
    if value is None:
        return 1.0
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.9
    if isinstance(value, dict):
        return {**value, "opacus": "0.0.1"}
    if len(value) == 64 and set(value) <= set("0123456789abcdef"):
        return ("1" if value[0] != "1" else "2") + value[1:]
    return value + "x"


def test_genuine_ledger_verifies(genuine: Path, signer: LedgerSigner):
    entries = read_ledger(genuine)
    report = verify_ledger(genuine, public_key=signer.public_key,
                           head_sha256=entry_sha256(entries[-1]))
    assert report.ok, str(report)
    assert report.entries == 3 and report.first_bad_line is None
    assert report.signer == signer.fingerprint
    assert report.lower_bound <= report.epsilon == entries[-1]["epsilon"]
    assert report.independent == pytest.approx(report.epsilon, rel=0.01)  # RDP vs RDP
    assert set(report.runs) == {"run-1"} and report.runs["run-1"].rounds == (1, 2, 3)
    assert str(report).startswith(f"{genuine}: OK, 3 entries in 1 run(s), each signed by "
                                  f"{signer.fingerprint}, chain intact, head matches the anchor")


def test_genuine_prv_ledger_verifies_against_the_pessimistic_pld(genuine_prv, signer):
    report = verify_ledger(genuine_prv, public_key=signer.public_key)
    assert report.ok, str(report)
    assert "pessimistic PLD" in report.verifier
    # PRV is within a few hundredths of the truth; the lower bound just below it
    assert report.lower_bound < report.independent <= report.epsilon < report.lower_bound * 1.02


def test_the_public_key_can_be_a_pub_file(genuine, tmp_path):
    key = simulated_signer(tmp_path)  # a fresh folder: a new key pair, files written
    assert key.fingerprint != read_ledger(genuine)[0]["signer"]
    report = verify_ledger(genuine, public_key=tmp_path / "signing-key.pub")
    assert not report.ok and report.first_bad_line == 1
    assert report.reason.startswith("`signer` is SHA256:")


@pytest.mark.parametrize("line", [1, 2, 3])
@pytest.mark.parametrize("field", FIELDS)
def test_changing_any_field_of_any_entry_fails_at_that_line(genuine, signer, tmp_path, field,
                                                            line):
    lines = ledger_lines(genuine)
    entry = json.loads(lines[line - 1])
    entry[field] = _changed(entry[field])
    lines[line - 1] = canonical_line(entry)
    path = write_ledger_lines(tmp_path / "l.jsonl", lines)
    report = verify_ledger(path, public_key=signer.public_key)
    assert not report.ok
    assert report.first_bad_line == line, str(report)
    assert str(report).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize("removed, bad_line", [(1, 1), (2, 2)])
def test_removing_an_entry_fails(genuine, signer, tmp_path, removed, bad_line):
    lines = ledger_lines(genuine)
    del lines[removed - 1]
    report = verify_ledger(write_ledger_lines(tmp_path / "l.jsonl", lines), public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == bad_line
    assert "hash chain broken" in report.reason


def test_cutting_off_the_last_entry_needs_the_anchor(genuine, signer, tmp_path):
    head = entry_sha256(read_ledger(genuine)[-1])
    path = write_ledger_lines(tmp_path / "l.jsonl", ledger_lines(genuine)[:2])
    assert verify_ledger(path, public_key=signer.public_key).ok  # only an outside anchor knows
    report = verify_ledger(path, public_key=signer.public_key, head_sha256=head)
    assert not report.ok and report.first_bad_line == 3
    assert "entries were cut off" in report.reason


@pytest.mark.parametrize("order, bad_line", [((2, 1, 3), 1), ((1, 3, 2), 2), ((3, 2, 1), 1)])
def test_reordering_entries_fails(genuine, signer, tmp_path, order, bad_line):
    lines = ledger_lines(genuine)
    report = verify_ledger(write_ledger_lines(tmp_path / "l.jsonl", [lines[i - 1] for i in order]),
                           public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == bad_line


def test_a_resealed_middle_entry_fails_its_signature_and_with_the_key_breaks_the_chain(
        genuine, signer, tmp_path):
    lines = ledger_lines(genuine)
    entry = json.loads(lines[0])
    entry["examples"] = 999_999
    resealed = write_ledger_lines(tmp_path / "a.jsonl", [resealed_line(dict(entry)), *lines[1:]])
    report = verify_ledger(resealed, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 1
    assert report.reason.startswith("`signature` does not verify with the site key")
    resigned = write_ledger_lines(tmp_path / "b.jsonl", [resealed_line(dict(entry), signer), *lines[1:]])
    report = verify_ledger(resigned, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 2
    assert report.reason.startswith("hash chain broken")


def test_missing_ledger_is_not_ok(tmp_path, signer):
    report = verify_ledger(tmp_path / "absent.jsonl", public_key=signer.public_key)
    assert not report.ok and report.reason == "no ledger file here"
