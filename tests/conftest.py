"""Session-wide tiny model folders (built once, in a temporary directory, in about a second)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.tiny_models import make_letter_llama, make_tiny_encoder, make_tiny_llama


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def letter_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with answer letters A-E as single tokens: a base letter scoring accepts."""
    return make_letter_llama(tmp_path_factory.mktemp("letter-llama"))


@pytest.fixture(scope="session")
def tiny_llama_without_pad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama-nopad"), with_pad=False)


@pytest.fixture(scope="session", params=["encoder", "llama"])
def tiny_base(request: pytest.FixtureRequest) -> Path:
    """Each tiny architecture in turn (BERT-style encoder, Llama-style decoder)."""
    return request.getfixturevalue(f"tiny_{request.param}")


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; two threads on a busy 2-core machine (a Flower
    simulation alongside) made the learning tests 25x slower from OpenMP oversubscription."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session", autouse=True)
def state_home(tmp_path_factory: pytest.TempPathFactory):
    """Sites whose YAML names no `state_dir` keep their state under a temporary state home, never
    under the user's real one (`sites.state_folder`); processes the tests start inherit it."""
    from sites.state_folder import STATE_HOME_ENV

    previous = os.environ.get(STATE_HOME_ENV)
    os.environ[STATE_HOME_ENV] = str(tmp_path_factory.mktemp("state-home"))
    yield
    if previous is None:
        os.environ.pop(STATE_HOME_ENV, None)
    else:
        os.environ[STATE_HOME_ENV] = previous
