"""The privacy ledger: append, read, and independent verification (dp-accounting) of every entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.ledger import (
    FIELDS,
    GENESIS_SHA256,
    LedgerFormatError,
    append_entry,
    canonical_line,
    entry_sha256,
    read_ledger,
    seal_sha256,
)
from client.ledger_verify import verify_ledger
from client.privacy_math import cumulative_epsilon, noise_multiplier_for

ROUNDS, STEPS, Q, DELTA = 3, 100, 0.01, 1e-5


def _write_genuine(path: Path, *, accountant: str = "rdp", rounds: int = ROUNDS,
                   steps: int = STEPS, sample_rate: float = Q,
                   sigma: float | None = None) -> list[dict]:
    """A ledger as a site would write it: σ planned for the whole run, ε cumulative per round."""
    if sigma is None:
        sigma = noise_multiplier_for(target_epsilon=3.0, steps=rounds * steps,
                                     sample_rate=sample_rate, delta=DELTA, accountant=accountant)
    entries = []
    for r in range(1, rounds + 1):
        epsilon = cumulative_epsilon(history=[(sigma, sample_rate, steps)] * r, delta=DELTA,
                                     accountant=accountant)
        entries.append(append_entry(path, dict(
            round=r, site="site-a", sample_rate=sample_rate, noise_multiplier=sigma,
            max_grad_norm=1.0, steps=steps, delta=DELTA, accountant=accountant, epsilon=epsilon,
            examples=3200, site_config_sha256="ab" * 32, time=f"2026-01-0{r}T00:00:00+00:00",
        )))
    return entries


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ledger") / "site-a.jsonl"
    _write_genuine(path)
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _changed(value):
    """A different value of the same kind, as a naive editor would make it."""
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


# --- writing and reading ------------------------------------------------------------------------

def test_entries_carry_every_field_and_chain(genuine: Path):
    entries = read_ledger(genuine)
    assert [e["round"] for e in entries] == [1, 2, 3]
    assert all(set(e) == set(FIELDS) for e in entries)
    assert entries[0]["prev_sha256"] == GENESIS_SHA256
    assert entries[1]["prev_sha256"] == entry_sha256(entries[0])
    assert entries[2]["prev_sha256"] == entry_sha256(entries[1])
    assert all(e["entry_sha256"] == seal_sha256(e) for e in entries)
    assert entries[0]["mechanism"] == "DP-SGD, Poisson-subsampled Gaussian"
    assert entries[0]["privacy_unit"] == "encounter"
    assert set(entries[0]["library_versions"]) == {"opacus", "torch", "peft", "flwr"}
    assert entries[0]["epsilon"] < entries[1]["epsilon"] < entries[2]["epsilon"] <= 3.0
    assert _lines(genuine) == [canonical_line(e) for e in entries]  # file lines are canonical


def test_canonical_line_is_sorted_and_compact():
    assert canonical_line({"b": 1, "a": [1.5, "x"]}) == '{"a":[1.5,"x"],"b":1}'


def test_append_refuses_a_round_that_does_not_increase(genuine: Path, tmp_path: Path):
    path = _write_lines(tmp_path / "l.jsonl", _lines(genuine))
    last = read_ledger(path)[-1]
    fields = {k: v for k, v in last.items() if k not in ("prev_sha256", "entry_sha256")}
    with pytest.raises(ValueError, match="`round` is 3 .* already ends at round 3"):
        append_entry(path, fields)
    with pytest.raises(ValueError, match="`prev_sha256` is computed by the ledger"):
        append_entry(path, {**fields, "round": 4, "prev_sha256": GENESIS_SHA256})
    del fields["epsilon"]
    with pytest.raises(ValueError, match="field `epsilon` missing"):
        append_entry(path, {**fields, "round": 4})


@pytest.mark.parametrize(
    "bad_line, message",
    [("not json", r":2: not valid JSON"), ("[1, 2]", r":2: expected a JSON object, got list"),
     ('{"round": 2}', r":2: field `site` missing")],
)
def test_read_ledger_names_file_and_line(genuine: Path, tmp_path: Path, bad_line, message):
    lines = _lines(genuine)
    path = _write_lines(tmp_path / "l.jsonl", [lines[0], bad_line, lines[2]])
    with pytest.raises(LedgerFormatError, match=str(path).replace(".", r"\.") + message):
        read_ledger(path)
    report = verify_ledger(path)
    assert not report.ok and report.first_bad_line == 2


# --- verification -------------------------------------------------------------------------------

def test_genuine_ledger_verifies(genuine: Path):
    report = verify_ledger(genuine, head_sha256=entry_sha256(read_ledger(genuine)[-1]))
    assert report.ok, str(report)
    assert report.entries == 3 and report.first_bad_line is None
    assert report.max_relative_gap < 0.01  # opacus RDP vs dp-accounting RDP
    assert str(report).startswith(f"{genuine}: OK, 3 entries")


def test_genuine_prv_ledger_verifies_with_pld(tmp_path: Path):
    path = tmp_path / "prv.jsonl"
    _write_genuine(path, accountant="prv", rounds=2, steps=50, sample_rate=0.05, sigma=1.35)
    report = verify_ledger(path)
    assert report.ok, str(report)


@pytest.mark.parametrize("line", [1, 2, 3])
@pytest.mark.parametrize("field", FIELDS)
def test_changing_any_field_of_any_entry_fails_at_that_line(genuine, tmp_path, field, line):
    lines = _lines(genuine)
    entry = json.loads(lines[line - 1])
    entry[field] = _changed(entry[field])
    lines[line - 1] = canonical_line(entry)
    path = _write_lines(tmp_path / "l.jsonl", lines)
    report = verify_ledger(path)
    assert not report.ok
    assert report.first_bad_line == line, str(report)
    assert str(report).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize("removed, bad_line", [(1, 1), (2, 2)])
def test_removing_an_entry_fails(genuine, tmp_path, removed, bad_line):
    lines = _lines(genuine)
    del lines[removed - 1]
    report = verify_ledger(_write_lines(tmp_path / "l.jsonl", lines))
    assert not report.ok and report.first_bad_line == bad_line
    assert "hash chain broken" in report.reason


def test_cutting_off_the_last_entry_needs_the_anchor(genuine, tmp_path):
    head = entry_sha256(read_ledger(genuine)[-1])
    path = _write_lines(tmp_path / "l.jsonl", _lines(genuine)[:2])
    assert verify_ledger(path).ok  # a cut chain is still a chain: only an outside anchor knows
    report = verify_ledger(path, head_sha256=head)
    assert not report.ok and report.first_bad_line == 3
    assert "entries were cut off" in report.reason


@pytest.mark.parametrize("order, bad_line", [((2, 1, 3), 1), ((1, 3, 2), 2), ((3, 2, 1), 1)])
def test_reordering_entries_fails(genuine, tmp_path, order, bad_line):
    lines = _lines(genuine)
    report = verify_ledger(_write_lines(tmp_path / "l.jsonl", [lines[i - 1] for i in order]))
    assert not report.ok and report.first_bad_line == bad_line


def _reseal(entry: dict) -> str:
    entry["entry_sha256"] = seal_sha256(entry)
    return canonical_line(entry)


def test_resealed_epsilon_is_caught_by_re_derivation(genuine, tmp_path):
    lines = _lines(genuine)
    entry = json.loads(lines[2])
    true_epsilon = entry["epsilon"]
    entry["epsilon"] = round(true_epsilon * 0.8, 6)  # under-report, and forge the seal
    lines[2] = _reseal(entry)
    report = verify_ledger(_write_lines(tmp_path / "l.jsonl", lines))
    assert not report.ok and report.first_bad_line == 3
    assert report.reason.startswith(f"epsilon {true_epsilon * 0.8:.3f} recorded, "
                                    f"{true_epsilon:.3f} re-derived")


def test_resealed_middle_entry_breaks_the_chain(genuine, tmp_path):
    lines = _lines(genuine)
    entry = json.loads(lines[0])
    entry["examples"] = 999_999
    lines[0] = _reseal(entry)
    report = verify_ledger(_write_lines(tmp_path / "l.jsonl", lines))
    assert not report.ok and report.first_bad_line == 2
    assert report.reason.startswith("hash chain broken")


def test_round_not_increasing_is_named(tmp_path):
    path = tmp_path / "l.jsonl"
    entries = _write_genuine(path, rounds=2)
    forged = {**entries[1], "round": 1, "prev_sha256": entry_sha256(entries[0])}
    lines = [canonical_line(entries[0]), _reseal(forged)]
    report = verify_ledger(_write_lines(path, lines))
    assert not report.ok and report.first_bad_line == 2
    assert report.reason == "round not increasing (1 after 1)"


def test_missing_ledger_is_not_ok(tmp_path):
    report = verify_ledger(tmp_path / "absent.jsonl")
    assert not report.ok and report.reason == "no ledger file here"


def test_privacy_verify_command_exits_nonzero_and_names_the_line(genuine: Path, tmp_path: Path,
                                                                   capsys):
    from server.cli import main as lang1_fl

    assert lang1_fl(["privacy", "verify", str(genuine)]) == 0
    assert "OK" in capsys.readouterr().out
    lines = _lines(genuine)
    entry = json.loads(lines[1])
    entry["epsilon"] = entry["epsilon"] / 2
    lines[1] = canonical_line(entry)
    tampered = _write_lines(tmp_path / "tampered.jsonl", lines)
    assert lang1_fl(["privacy", "verify", str(tampered)]) == 1
    assert ":2:" in capsys.readouterr().out
