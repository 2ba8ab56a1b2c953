"""The small consortium the late-site tests in this folder run against, fresh for each test."""

from __future__ import annotations

import pytest

from sites.config import load_consortium
from tests.consortium_fixtures import write_small_consortium
from tests.flower_fakes import set_task_identity


@pytest.fixture()
def consortium(tmp_path):
    set_task_identity()
    return load_consortium(write_small_consortium(tmp_path), data_root=tmp_path)
