"""Driving `flwr run`: one local SuperLink per run, and everything it started stopped afterwards."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

import server.launch.flower_run as flower_run
from server.launch.flower_run import flwr_run, stop_local_superlink, toml_value


def _fake_flwr(monkeypatch, record) -> None:
    """`flwr run` replaced by `record(command, env)` and an exit status of 0."""

    real_popen = subprocess.Popen

    def popen(command, env, start_new_session, **piped):
        record(command, env)
        return real_popen([sys.executable, "-c", ""], start_new_session=True, **piped)

    monkeypatch.setattr(flower_run.subprocess, "Popen", popen)


def test_each_run_gets_ports_of_its_own(monkeypatch, tmp_path):
    """`flwr run` would reuse another run's local SuperLink on the default ports — and die when
    that run stops it — so every run is given free ports for its own."""
    seen = []

    def fake_run(command, env):
        seen.append((env["FLWR_LOCAL_SUPERLINK_HTTP_API_PORT"], env["FLWR_LOCAL_CONTROL_API_PORT"],
                     env["FLWR_HOME"]))

    _fake_flwr(monkeypatch, fake_run)
    for name in ("a", "b"):
        assert flwr_run(run_config={}, num_supernodes=2, flwr_home=tmp_path / name,
                        cpus_per_site=1, verbose=True) == 0
    (http_a, control_a, home_a), (http_b, control_b, home_b) = seen
    assert len({http_a, control_a, http_b, control_b}) == 4 and home_a != home_b
    assert "39091" not in (http_a, http_b)


def test_a_port_is_handed_out_once_even_when_the_kernel_offers_it_again(monkeypatch):
    offers = iter([41015, 41015, 41015, 41016])

    class Probe:
        def __init__(self, *args):
            self.port = next(offers)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def bind(self, address):
            pass

        def getsockname(self):
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(flower_run, "_HANDED_OUT", set())
    monkeypatch.setattr(flower_run.socket, "socket", Probe)
    assert [flower_run.free_port(), flower_run.free_port()] == [41015, 41016]


def test_stopping_a_superlink_stops_the_whole_tree_below_it(tmp_path):
    """A stand-in 'SuperLink' (its command line carries the FLWR_HOME marker) with a child and a
    grandchild, as the SuperExec and the simulation are: all three must go."""
    marker = tmp_path / "local-superlink"
    tree = ("import subprocess, sys, time\n"
            "child = 'import subprocess,sys,time; subprocess.Popen([sys.executable, \"-c\", "
            "\"import time; time.sleep(300)\"]); time.sleep(300)'\n"
            "subprocess.Popen([sys.executable, '-c', child]); time.sleep(300)\n")
    root = subprocess.Popen([sys.executable, "-c", tree, "flower-superlink", str(marker)])
    try:
        deadline = time.monotonic() + 10
        while len(flower_run.descendants(root.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        below = flower_run.descendants(root.pid)
        assert len(below) == 2
        stop_local_superlink(tmp_path, grace_s=5)
        root.wait(timeout=5)
        assert not any(flower_run.process_alive(pid) for pid in below)
    finally:
        if root.poll() is None:
            root.kill()


@pytest.mark.parametrize("value, text", [(True, "true"), (3, "3"), (0.5, "0.5"),
                                         ('a "b"', '"a \\"b\\""')])
def test_run_config_values_are_written_as_toml(value, text):
    assert toml_value(value) == text


def test_sites_that_wait_for_a_core_get_the_round_timeout_once_per_turn(monkeypatch, tmp_path):
    """The non-DP `private` run on 2 cores lost its second pair of hospitals as "no reply" while
    they waited for the first pair: in a simulation the round's clock runs once per turn."""
    seen = []

    def fake_run(command, env):
        seen.append(command[command.index("--run-config") + 1])

    _fake_flwr(monkeypatch, fake_run)
    monkeypatch.setattr(flower_run.os, "sched_getaffinity", lambda pid: {0, 1})
    default = float(flower_run.default_run_config()["round-timeout"])
    flwr_run(run_config={}, num_supernodes=5, flwr_home=tmp_path / "a", cpus_per_site=1,
             verbose=True)
    flwr_run(run_config={"round-timeout": 60.0}, num_supernodes=5, flwr_home=tmp_path / "b",
             cpus_per_site=1, verbose=True)
    flwr_run(run_config={}, num_supernodes=2, flwr_home=tmp_path / "c", cpus_per_site=1,
             verbose=True)
    assert f"round-timeout={default * 3!r}" in seen[0]
    assert "round-timeout=60.0" in seen[1]  # what the run sets, it keeps
    assert "round-timeout" not in seen[2]  # one turn: the default as it is


def test_turns_follow_cores_and_gpu_shares():
    assert flower_run.simulation_turns(5, 1, cpus=2) == 3
    assert flower_run.simulation_turns(4, 1, cpus=2) == 2
    assert flower_run.simulation_turns(5, 2, cpus=2) == 5
    assert flower_run.simulation_turns(5, 1, cpus=16) == 1
    assert flower_run.simulation_turns(5, 1, 0.25, cpus=16, gpus=1) == 2  # four share the GPU
    assert flower_run.simulation_turns(3, 1, 0.5, cpus=16, gpus=0) == 3


def test_flowers_commands_come_from_this_environment_whatever_path_says(monkeypatch, tmp_path):
    """Issue 34 #4: the venv's `lang1-fl` called without activating the venv found `flwr`, whose
    `flower-superlink` was then looked up on PATH and not found (`[Errno 2]`)."""
    import shutil
    from pathlib import Path

    seen = {}
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    _fake_flwr(monkeypatch, lambda command, env: seen.update(command=command, env=env))
    flwr_run(run_config={}, num_supernodes=1, flwr_home=tmp_path / "home", cpus_per_site=1)
    venv_bin = Path(sys.executable).parent
    assert seen["command"][0] == str(venv_bin / "flwr")
    assert seen["env"]["PATH"].split(":") == [str(venv_bin), "/usr/bin", "/bin"]
    assert shutil.which("flower-superlink", path=seen["env"]["PATH"]) == str(
        venv_bin / "flower-superlink")


FAKE_FLWR = """#!{python}
import os, subprocess, sys, time
from pathlib import Path
home = Path(os.environ["FLWR_HOME"])
# The local SuperLink as `flwr run` starts it: a session of its own, FLWR_HOME on its command
# line, a child below it (the SuperExec); and a helper in `flwr run`'s own process group
child = ("import subprocess, sys, time; "
         "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); time.sleep(300)")
link = subprocess.Popen([sys.executable, "-c", child, "flower-superlink", str(home / "local-superlink")],
                        start_new_session=True)
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
(home / "pids").write_text(f"{{link.pid}} {{helper.pid}}")
time.sleep(300)
"""

DRIVER = """
import sys
from pathlib import Path
import server.launch.flower_run as flower_run
home, fake = Path(sys.argv[1]), sys.argv[2]
flower_run.flower_executable = lambda name: fake
sys.exit(flower_run.flwr_run(run_config={}, num_supernodes=1, flwr_home=home, cpus_per_site=1))
"""


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_lang1_fl_run_stops_every_flower_process(tmp_path, stop):
    """Issue 33: `lang1-fl run` killed with SIGTERM left SuperLink and Ray running. A real
    `flwr run` stand-in (its process group: itself and a helper) and a local 'SuperLink' with a
    child in a session of their own must all be gone when the command exits."""
    import os
    from pathlib import Path

    home = tmp_path / "home"
    home.mkdir()
    fake = tmp_path / "flwr"
    fake.write_text(FAKE_FLWR.format(python=sys.executable))
    fake.chmod(0o755)
    root = Path(flower_run.__file__).parents[2]
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(home), str(fake)], cwd=root,
                              env=dict(os.environ, PYTHONPATH=str(root)))
    try:
        deadline = time.monotonic() + 20
        while not (home / "pids").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        link, helper = map(int, (home / "pids").read_text().split())
        while not flower_run.descendants(link) and time.monotonic() < deadline:
            time.sleep(0.1)
        started = [link, helper, *flower_run.descendants(link)]
        assert len(started) == 3
        driver.send_signal(stop)
        assert driver.wait(timeout=30) == 128 + stop
        time.sleep(0.5)
        assert [pid for pid in started if flower_run.process_alive(pid)] == []
    finally:
        if driver.poll() is None:
            driver.kill()
