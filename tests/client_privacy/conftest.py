"""The tiny encoder and the DP federation the ClientApp privacy tests in this folder share.

The tiny encoder is built once per session (seeded, and only read); each test gets a fresh small
consortium, with its own data and state folders.
"""

from __future__ import annotations

import pytest

from tests.client_privacy.dp_sites import make_federation
from tests.tiny_models import make_tiny_encoder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return make_tiny_encoder(tmp_path_factory.mktemp("client_privacy") / "tiny-bert")


@pytest.fixture
def federation(tmp_path, tiny_bert):
    return make_federation(tmp_path, tiny_bert)
