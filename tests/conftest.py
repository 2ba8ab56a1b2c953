"""Session-wide tiny model folders (built once, in a temporary directory, in about a second)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.tiny_models import make_tiny_encoder, make_tiny_llama


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


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
