"""The site keys and genuine ledgers the ledger tests in this folder share.

Each is built once per session (the ledgers' ε by opacus takes about a second each) and only
read by the tests, which copy a ledger's lines before they change any.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from client.privacy.signing import LedgerSigner, simulated_signer
from tests.ledger.ledger_files import one_run_plan, sigma_for, write_ledger


@pytest.fixture(scope="session")
def signer(tmp_path_factory: pytest.TempPathFactory) -> LedgerSigner:
    return simulated_signer(tmp_path_factory.mktemp("site-state"))


@pytest.fixture(scope="session")
def intruder(tmp_path_factory: pytest.TempPathFactory) -> LedgerSigner:
    return simulated_signer(tmp_path_factory.mktemp("intruder"))


@pytest.fixture(scope="session")
def genuine(tmp_path_factory: pytest.TempPathFactory, signer: LedgerSigner) -> Path:
    path = tmp_path_factory.mktemp("ledger") / "site-a.jsonl"
    write_ledger(path, one_run_plan(sigma_for(target=3.0)), signer=signer)
    return path


@pytest.fixture(scope="session")
def genuine_prv(tmp_path_factory: pytest.TempPathFactory, signer: LedgerSigner) -> Path:
    """ε = 3 over 300 steps at q = 0.05 by opacus's PRV accountant, within 0.5 % of the truth.
    (σ as `sigma_for(target=3.0, q=0.05, accountant="prv")` finds it, which takes seconds.)"""
    path = tmp_path_factory.mktemp("ledger") / "site-a-prv.jsonl"
    write_ledger(path, one_run_plan(1.46728515625, q=0.05), signer=signer, accountant="prv")
    return path
