"""The privacy ledger, format 2: signed entries over a site's lifetime, and the one-sided verifier.

Ledgers are built as a site builds them: `append_entry` with ε computed by opacus
(`client.privacy.accounting.cumulative_epsilon`), over the whole ledger and over each run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from client.privacy.accounting import cumulative_epsilon, noise_multiplier_for
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
from client.privacy.signing import LedgerSigner, signature_valid, simulated_signer
from client.privacy.verify import verify_ledger

STEPS, Q, DELTA = 100, 0.01, 1e-5
FINDING_RATIO = 2.951 / 3.001  # the review's understatement: 1.65 % too low


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> LedgerSigner:
    return simulated_signer(tmp_path_factory.mktemp("site-state"))


@pytest.fixture(scope="module")
def intruder(tmp_path_factory: pytest.TempPathFactory) -> LedgerSigner:
    return simulated_signer(tmp_path_factory.mktemp("intruder"))


def _sigma(*, target: float, q: float = Q, steps: int = 3 * STEPS, accountant: str = "rdp"):
    return noise_multiplier_for(target_epsilon=target, steps=steps, sample_rate=q, delta=DELTA,
                                accountant=accountant)


def _write(path: Path, plan: list[tuple[str, int, float, float, int]], *, signer: LedgerSigner,
           accountant: str = "rdp", budget: float = 100.0,
           cap: float | None = None) -> list[dict]:
    """A ledger as a site writes it: one entry per (run, round, σ, q, steps), ε by opacus over
    the whole ledger and over the entry's run."""
    history: list[tuple[float, float, int]] = []
    per_run: dict[str, list[tuple[float, float, int]]] = {}
    entries = []
    for day, (run, round_, sigma, q, steps) in enumerate(plan, start=1):
        history.append((sigma, q, steps))
        per_run.setdefault(run, []).append((sigma, q, steps))
        entries.append(append_entry(path, dict(
            run=run, round=round_, site="site-a", dataset="sha256:" + "d" * 16,
            privacy_unit="encounter", sample_rate=q, noise_multiplier=sigma, max_grad_norm=1.0,
            steps=steps, examples=3200, noise_source="csprng", delta=DELTA,
            accountant=accountant,
            epsilon=cumulative_epsilon(history=history, delta=DELTA, accountant=accountant),
            run_epsilon=cumulative_epsilon(history=per_run[run], delta=DELTA,
                                           accountant=accountant),
            epsilon_budget=budget, run_epsilon_cap=cap, site_config_sha256="ab" * 32,
            time=f"2026-01-{day:02d}T00:00:00+00:00",
        ), signer=signer))
    return entries


def _one_run(sigma: float, *, q: float = Q, rounds: int = 3, steps: int = STEPS, run="run-1"):
    return [(run, r, sigma, q, steps) for r in range(1, rounds + 1)]


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory, signer: LedgerSigner) -> Path:
    path = tmp_path_factory.mktemp("ledger") / "site-a.jsonl"
    _write(path, _one_run(_sigma(target=3.0)), signer=signer)
    return path


@pytest.fixture(scope="module")
def genuine_prv(tmp_path_factory: pytest.TempPathFactory, signer: LedgerSigner) -> Path:
    """ε = 3 over 300 steps at q = 0.05 by opacus's PRV accountant, within 0.5 % of the truth.
    (σ as `_sigma(target=3.0, q=0.05, accountant="prv")` finds it, which takes seconds.)"""
    path = tmp_path_factory.mktemp("ledger") / "site-a-prv.jsonl"
    _write(path, _one_run(1.46728515625, q=0.05), signer=signer, accountant="prv")
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


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


def _reseal(entry: dict, signer: LedgerSigner | None = None) -> str:
    """The entry's line after an edit: sealed again, and signed again when `signer` is given."""
    if signer is not None:
        entry["signer"] = signer.fingerprint
    entry["entry_sha256"] = seal_sha256(entry)
    if signer is not None:
        entry["signature"] = signer.sign(entry["entry_sha256"])
    return canonical_line(entry)


def _rewrite(path: Path, out: Path, edit, *, at: int, signer: LedgerSigner | None) -> Path:
    """Apply `edit` to line `at` (1-based), reseal it, and recompute the chain (and, with
    `signer`, every signature) from there on: what someone who rewrites the file can do."""
    entries = [json.loads(line) for line in _lines(path)]
    edit(entries[at - 1])
    lines = [canonical_line(e) for e in entries[: at - 1]]
    for entry in entries[at - 1:]:
        entry["prev_sha256"] = entry_sha256(json.loads(lines[-1])) if lines else GENESIS_SHA256
        lines.append(_reseal(entry, signer))
    return _write_lines(out, lines)


# --- writing and reading ------------------------------------------------------------------------

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
    assert _lines(genuine) == [canonical_line(e) for e in entries]  # file lines are canonical


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
    path = _write_lines(tmp_path / "l.jsonl", _lines(genuine))
    with pytest.raises(ValueError, match=message):
        append_entry(path, {**_fields_of(read_ledger(path)[-1]), **change}, signer=signer)
    assert _lines(path) == _lines(genuine)  # nothing written


def test_append_refuses_a_missing_field_another_signer_and_a_torn_line(genuine, tmp_path, signer,
                                                                       intruder):
    path = _write_lines(tmp_path / "l.jsonl", _lines(genuine))
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
    path = _write_lines(tmp_path / "l.jsonl", _lines(genuine))
    fields = {**_fields_of(read_ledger(path)[-1]), "run": "run-2", "round": 1}
    assert append_entry(path, fields, signer=signer)["round"] == 1


@pytest.mark.parametrize(
    "bad_line, message",
    [("not json", r":2: not valid JSON"), ("[1, 2]", r":2: expected a JSON object, got list"),
     ('{"round": 2}', r":2: field `run` missing")],
)
def test_read_ledger_names_file_and_line(genuine, signer, tmp_path, bad_line, message):
    lines = _lines(genuine)
    path = _write_lines(tmp_path / "l.jsonl", [lines[0], bad_line, lines[2]])
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
    path = _write_lines(tmp_path / "v1.jsonl", [canonical_line(entry)])
    with pytest.raises(LedgerFormatError, match=r"v1\.jsonl:1: field `signature` missing: an "
                                                r"unsigned entry, as a format-1 ledger"):
        read_ledger(path)
    report = verify_ledger(path, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 1
    assert report.reason.startswith("field `signature` missing")


# --- integrity ----------------------------------------------------------------------------------

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
    lines = _lines(genuine)
    entry = json.loads(lines[line - 1])
    entry[field] = _changed(entry[field])
    lines[line - 1] = canonical_line(entry)
    path = _write_lines(tmp_path / "l.jsonl", lines)
    report = verify_ledger(path, public_key=signer.public_key)
    assert not report.ok
    assert report.first_bad_line == line, str(report)
    assert str(report).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize("removed, bad_line", [(1, 1), (2, 2)])
def test_removing_an_entry_fails(genuine, signer, tmp_path, removed, bad_line):
    lines = _lines(genuine)
    del lines[removed - 1]
    report = verify_ledger(_write_lines(tmp_path / "l.jsonl", lines), public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == bad_line
    assert "hash chain broken" in report.reason


def test_cutting_off_the_last_entry_needs_the_anchor(genuine, signer, tmp_path):
    head = entry_sha256(read_ledger(genuine)[-1])
    path = _write_lines(tmp_path / "l.jsonl", _lines(genuine)[:2])
    assert verify_ledger(path, public_key=signer.public_key).ok  # only an outside anchor knows
    report = verify_ledger(path, public_key=signer.public_key, head_sha256=head)
    assert not report.ok and report.first_bad_line == 3
    assert "entries were cut off" in report.reason


@pytest.mark.parametrize("order, bad_line", [((2, 1, 3), 1), ((1, 3, 2), 2), ((3, 2, 1), 1)])
def test_reordering_entries_fails(genuine, signer, tmp_path, order, bad_line):
    lines = _lines(genuine)
    report = verify_ledger(_write_lines(tmp_path / "l.jsonl", [lines[i - 1] for i in order]),
                           public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == bad_line


def test_a_resealed_middle_entry_fails_its_signature_and_with_the_key_breaks_the_chain(
        genuine, signer, tmp_path):
    lines = _lines(genuine)
    entry = json.loads(lines[0])
    entry["examples"] = 999_999
    resealed = _write_lines(tmp_path / "a.jsonl", [_reseal(dict(entry)), *lines[1:]])
    report = verify_ledger(resealed, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 1
    assert report.reason.startswith("`signature` does not verify with the site key")
    resigned = _write_lines(tmp_path / "b.jsonl", [_reseal(dict(entry), signer), *lines[1:]])
    report = verify_ledger(resigned, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 2
    assert report.reason.startswith("hash chain broken")


def test_missing_ledger_is_not_ok(tmp_path, signer):
    report = verify_ledger(tmp_path / "absent.jsonl", public_key=signer.public_key)
    assert not report.ok and report.reason == "no ledger file here"


# --- the review's findings ----------------------------------------------------------------------

def test_finding_1_an_epsilon_lowered_and_resealed_without_the_key_is_rejected(
        genuine, signer, tmp_path):
    """1.65 % too low on the final entry, seal and chain recomputed, anchored by its own head:
    format 1 accepted this; the signature now rejects it, naming the line."""
    forged = _rewrite(genuine, tmp_path / "l.jsonl",
                      lambda e: e.update(epsilon=e["epsilon"] * FINDING_RATIO), at=3, signer=None)
    report = verify_ledger(forged, public_key=signer.public_key,
                           head_sha256=entry_sha256(read_ledger(forged)[-1]))
    assert not report.ok and report.first_bad_line == 3
    assert str(report) == (f"{forged}:3: `signature` does not verify with the site key "
                           f"{signer.fingerprint}: the entry was resealed or re-signed without "
                           "the site's private key")


def test_finding_1_the_same_understatement_by_the_key_holder_is_rejected_by_arithmetic(
        genuine_prv, signer, tmp_path):
    """With the key, the forgery signs; but 1.65 % below a PRV ε is below what the mechanism
    provably spends (format 1's two-sided 1 % + 0.02 let it pass)."""
    final = read_ledger(genuine_prv)[-1]["epsilon"]
    lowered = final * FINDING_RATIO
    assert final - lowered <= 0.01 * final + 0.02  # inside the old tolerance
    forged = _rewrite(genuine_prv, tmp_path / "l.jsonl",
                      lambda e: e.update(epsilon=lowered, run_epsilon=lowered), at=3,
                      signer=signer)
    report = verify_ledger(forged, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 3
    assert report.reason.startswith(f"`epsilon` understated: recorded {lowered:.4f}, the "
                                    "mechanism provably spends at least ")
    assert "over the 300 steps of the ledger" in report.reason


def test_a_key_holder_lowering_an_rdp_epsilon_toward_the_truth_is_not_a_finding(
        genuine, signer, tmp_path):
    """One-sided: opacus's RDP is ≥ 20 % above the true ε here; a value 1.65 % lower still bounds
    the spend from above, and the verifier cannot call it false."""
    forged = _rewrite(genuine, tmp_path / "l.jsonl",
                      lambda e: e.update(epsilon=e["epsilon"] * FINDING_RATIO,
                                         run_epsilon=e["run_epsilon"] * FINDING_RATIO),
                      at=3, signer=signer)
    report = verify_ledger(forged, public_key=signer.public_key)
    assert report.ok, str(report)
    assert report.shortfall is not None and report.shortfall.line == 3  # shown, as information
    assert "not a finding" in str(report)


@pytest.mark.parametrize("below, ok", [(0.0, True), (1e-4, False)])
def test_at_the_lower_bound_passes_and_just_below_fails(genuine_prv, signer, tmp_path, below, ok):
    """The line is the lower bound itself, less a round-off slack of about 1e-6; the grid comes
    from the recorded (σ, q, steps) alone, so the claim does not move the line."""
    bound = verify_ledger(genuine_prv, public_key=signer.public_key).lower_bound
    claim = bound - below
    forged = _rewrite(genuine_prv, tmp_path / "l.jsonl",
                      lambda e: e.update(epsilon=claim, run_epsilon=claim), at=3, signer=signer)
    report = verify_ledger(forged, public_key=signer.public_key)
    assert report.ok is ok, str(report)
    assert report.ok or report.reason.startswith(f"`epsilon` understated: recorded {claim:.4f}")


def test_finding_1_an_honest_ledger_at_epsilon_24_verifies(tmp_path, signer):
    """opacus's RDP records less than dp-accounting's RDP here, by more than format 1's two-sided
    tolerance allowed; both are upper bounds, and the ledger verifies."""
    path = tmp_path / "high.jsonl"
    _write(path, _one_run(0.57, q=0.05), signer=signer)  # ε = 23.98 after 300 steps
    report = verify_ledger(path, public_key=signer.public_key)
    assert report.ok, str(report)
    assert report.epsilon == pytest.approx(24.0, rel=0.01)
    assert abs(report.epsilon - report.independent) > 0.01 * report.independent + 0.02
    assert report.shortfall.field in ("epsilon", "run_epsilon")
    assert report.shortfall.recorded < report.shortfall.independent
    assert report.lower_bound < report.epsilon


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory, signer) -> tuple[Path, list[dict]]:
    """Three runs at different sampling rates, interleaved, each starting at round 1."""
    sigmas = {"a": _sigma(target=2.0, q=0.02), "b": _sigma(target=2.0, q=0.05, steps=150)}
    rates = {"a": 0.02, "b": 0.05}
    plan = [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("b", 3), ("a", 3), ("c", 1)]
    path = tmp_path_factory.mktemp("multi") / "lifetime.jsonl"
    entries = _write(path, [(run, r, sigmas.get(run, sigmas["a"]), rates.get(run, 0.02),
                             STEPS if run != "b" else 50) for run, r in plan], signer=signer)
    return path, entries


def test_a_multi_run_ledger_verifies_and_each_run_is_re_derived(multi_run, signer):
    path, entries = multi_run
    report = verify_ledger(path, public_key=signer.public_key)
    assert report.ok, str(report)
    assert {run: s.rounds for run, s in report.runs.items()} == {
        "a": (1, 2, 3), "b": (1, 2, 3), "c": (1,)}
    for run, summary in report.runs.items():
        last = [e for e in entries if e["run"] == run][-1]
        assert summary.run_epsilon == last["run_epsilon"]
        assert summary.lower_bound <= summary.run_epsilon
        assert summary.independent == pytest.approx(summary.run_epsilon, rel=0.01)
        assert summary.run_epsilon < report.epsilon  # a run's spend is part of the lifetime's
    assert report.epsilon == entries[-1]["epsilon"]
    assert "run 'a': rounds 1–3, ε = " in str(report) and "run 'c': rounds 1, ε = " in str(report)


def test_a_run_epsilon_understated_by_the_key_holder_is_named(multi_run, signer, tmp_path):
    """Line 4 is run b's round 2: its run ε replaced by its round-1 value (half its spend)."""
    path, entries = multi_run
    forged = _rewrite(path, tmp_path / "l.jsonl",
                      lambda e: e.update(run_epsilon=entries[1]["run_epsilon"]), at=4,
                      signer=signer)
    report = verify_ledger(forged, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 4
    assert report.reason.startswith("`run_epsilon` understated: recorded ")
    assert "over the 100 steps of run 'b'" in report.reason


def test_a_round_repeated_within_a_run_is_named(multi_run, signer, tmp_path):
    path, _ = multi_run
    forged = _rewrite(path, tmp_path / "l.jsonl", lambda e: e.update(round=1), at=3,
                      signer=signer)
    report = verify_ledger(forged, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 3
    assert report.reason == ("`round` is 1 but run 'a' already reached round 1; rounds must "
                             "strictly increase within a run")


@pytest.mark.parametrize("field, value", [("site", "site-b"), ("dataset", "sha256:other"),
                                          ("accountant", "prv"), ("privacy_unit", "patient")])
def test_a_constant_field_changed_by_the_key_holder_is_named(multi_run, signer, tmp_path, field,
                                                             value):
    path, _ = multi_run
    forged = _rewrite(path, tmp_path / "l.jsonl", lambda e: e.update({field: value}), at=2,
                      signer=signer)
    report = verify_ledger(forged, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 2
    assert report.reason.startswith(f"`{field}` is {value!r} but the ledger's first entry has ")


@pytest.mark.parametrize("budget, cap, line, message", [
    (1.8, None, 2, r"`epsilon` 1\.848 is over the entry's `epsilon_budget` 1\.8: the site spent "
                   r"past its lifetime budget"),
    (100.0, 1.9, 3, r"`run_epsilon` 1\.999 is over the entry's `run_epsilon_cap` 1\.9: run "
                    r"'run-1' spent past its cap"),
])
def test_an_entry_over_its_budget_or_cap_is_flagged(tmp_path, signer, budget, cap, line, message):
    path = tmp_path / "over.jsonl"
    _write(path, _one_run(_sigma(target=2.0)), signer=signer, budget=budget, cap=cap)
    report = verify_ledger(path, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == line, str(report)
    assert str(report).startswith(f"{path}:{line}: ")
    assert re.fullmatch(message, report.reason), report.reason


def test_another_keys_signature_fails_naming_the_line(genuine, signer, intruder, tmp_path):
    report = verify_ledger(genuine, public_key=intruder.public_key)
    assert not report.ok and report.first_bad_line == 1
    assert report.reason == (f"`signer` is {signer.fingerprint}, not the site key given "
                             f"({intruder.fingerprint}): signed by another key")
    # Someone with another key rewrites from line 2 on, chain and signatures recomputed.
    forged = _rewrite(genuine, tmp_path / "a.jsonl", lambda e: e.update(epsilon=0.1), at=2,
                      signer=intruder)
    report = verify_ledger(forged, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 2
    assert report.reason.startswith(f"`signer` is {intruder.fingerprint}, not the site key")
    # ... or claims the site's fingerprint and signs with their own key.
    entries = [json.loads(line) for line in _lines(genuine)]
    entries[1]["epsilon"] = 0.1
    entries[1]["entry_sha256"] = seal_sha256(entries[1])
    entries[1]["signature"] = intruder.sign(entries[1]["entry_sha256"])
    claimed = _write_lines(tmp_path / "b.jsonl", [canonical_line(e) for e in entries])
    report = verify_ledger(claimed, public_key=signer.public_key)
    assert not report.ok and report.first_bad_line == 2
    assert report.reason.startswith("`signature` does not verify with the site key")


# --- the command --------------------------------------------------------------------------------

def test_privacy_verify_command_exit_codes_and_lines(genuine, signer, tmp_path, capsys):
    from server.cli import main as lang1_fl

    key = tmp_path / "site.pub"
    key.write_bytes(signer.public_key.public_bytes(serialization.Encoding.OpenSSH,
                                                   serialization.PublicFormat.OpenSSH))
    assert lang1_fl(["privacy", "verify", str(genuine), "--public-key", str(key)]) == 0
    out = capsys.readouterr().out
    assert "OK, 3 entries" in out and "lower bound" in out and "run 'run-1'" in out
    lines = _lines(genuine)
    entry = json.loads(lines[1])
    entry["epsilon"] = entry["epsilon"] / 2
    lines[1] = canonical_line(entry)
    tampered = _write_lines(tmp_path / "tampered.jsonl", lines)
    assert lang1_fl(["privacy", "verify", str(tampered), "--public-key", str(key)]) == 1
    assert f"{tampered}:2:" in capsys.readouterr().out
    assert lang1_fl(["privacy", "verify", str(genuine)]) == 2
    err = capsys.readouterr().err
    assert "pass --public-key KEY.pub" in err and "signing-key.pub" in err
    assert "registered SuperNode public key" in err
    assert lang1_fl(["privacy", "verify", str(genuine), "--public-key", str(genuine)]) == 2
    assert "not an OpenSSH public key" in capsys.readouterr().err
