"""Flower's commands from this interpreter's environment, whatever PATH says.

`flwr run` starts `flower-superlink`, which starts `flower-superexec` and `flwr-simulation`; a
SuperNode starts `flwr-clientapp`: each by name, through PATH. A venv's `lang1-fl` called by its
path without activating the venv found `flwr` (beside the interpreter) and then failed on the next
one (`[Errno 2] ... flower-superlink`), so every Flower process we start gets the interpreter's
folder first on its PATH.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path


def environment_bin() -> Path:
    """The folder of this interpreter (a venv's `bin`), where pip put Flower's commands; not
    resolved, since a venv's python is a link to the base interpreter."""
    return Path(sys.executable).parent


def flower_executable(name: str) -> str:
    """The Flower command `name` beside this interpreter; else `name`, for PATH to find."""
    beside = environment_bin() / name
    return str(beside) if beside.exists() else name


def flower_environ(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with the interpreter's folder first on PATH, so the
    Flower processes that Flower itself starts come from the same environment."""
    env = dict(os.environ if env is None else env)
    rest = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != str(environment_bin())]
    env["PATH"] = os.pathsep.join([str(environment_bin()), *rest])
    return env
