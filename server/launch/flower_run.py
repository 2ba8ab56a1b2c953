"""Drive `flwr run` on this project's Flower app, and clean up what it leaves behind.

`flwr run . --stream` starts a managed local SuperLink in the background (state under
`$FLWR_HOME`) that outlives the run. `lang1-fl run` gives each invocation a known `FLWR_HOME` and
ports of its own, so the SuperLink it started is its alone, can be found by its database path and
is stopped by process id afterwards with everything below it — also when `lang1-fl` itself is
stopped by SIGTERM or Ctrl-C —, finds Flower's commands in its own environment whatever PATH
says, and disables Flower's per-run dependency installation so a run never re-downloads torch.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from client.run_config import default_run_config, read_run_config
from server.launch.console_filter import relay_filtered
from server.launch.flower_executables import flower_environ, flower_executable

log = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parents[2]
"""The project root: where `pyproject.toml` declares the Flower app."""


def toml_value(value: object) -> str:
    """A run-config override value as TOML: strings quoted, numbers and booleans bare."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def flwr_run(
    *,
    run_config: dict[str, object],
    num_supernodes: int,
    flwr_home: Path,
    cpus_per_site: int,
    gpus_per_site: float = 0.0,
    verbose: bool = False,
) -> int:
    """Run the app in Flower's simulation engine; returns `flwr run`'s exit status.

    `gpus_per_site` is Ray's share of a GPU per simulated site (0.25: four sites share one GPU);
    with a share, sites whose `device` is `auto` find CUDA and train on it. Flower's output is
    filtered for a person (server/launch/console_filter.py) unless `verbose`."""
    if not (APP_DIR / "pyproject.toml").exists():
        raise FileNotFoundError(
            f"{APP_DIR / 'pyproject.toml'} not found: `lang1-fl run` needs the source checkout "
            "(pip install -e .), where the Flower app is declared"
        )
    run_config = _with_turn_timeout(run_config, simulation_turns(num_supernodes, cpus_per_site,
                                                                 gpus_per_site))
    overrides = " ".join(f"{key}={toml_value(value)}" for key, value in run_config.items())
    federation = (f"num-supernodes={num_supernodes} client-resources-num-cpus={cpus_per_site} "
                  f"client-resources-num-gpus={gpus_per_site}")
    command = [
        flower_executable("flwr"), "run", str(APP_DIR), "--stream",
        "--run-config", overrides,
        "--federation-config", federation,
    ]
    # `flwr run` reuses any local SuperLink answering on its fixed ports, which the run that
    # started it stops when it ends: with ports of its own, each run gets its own SuperLink.
    env = dict(flower_environ(), FLWR_HOME=str(flwr_home),
               FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
               FLWR_LOCAL_SUPERLINK_HTTP_API_PORT=str(free_port()),
               FLWR_LOCAL_CONTROL_API_PORT=str(free_port()))
    flwr_home.mkdir(parents=True, exist_ok=True)
    log.info("running: %s", " ".join(command))
    # `flwr run` in a process group of its own, which goes with the SuperLink's tree whenever
    # this command ends: finished, failed, or stopped by SIGTERM or Ctrl-C
    # Unless `verbose`, its output goes through the filter for a person
    piped = {} if verbose else dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    errors="replace", bufsize=1)
    process = subprocess.Popen(command, env=env, start_new_session=True, **piped)
    try:
        with signals_raised():
            return process.wait() if verbose else relay_filtered(process)
    except RunInterrupted as stop:
        log.warning("stopped by %s: stopping Flower's processes", stop.signal.name)
        return 128 + stop.signal
    finally:
        stop_process_group(process)
        stop_local_superlink(flwr_home)


class RunInterrupted(Exception):
    """SIGTERM or SIGINT reached `lang1-fl` while Flower ran."""

    def __init__(self, received: signal.Signals) -> None:
        super().__init__(f"stopped by {received.name}")
        self.signal = received


@contextmanager
def signals_raised() -> Iterator[None]:
    """SIGTERM and SIGINT raise `RunInterrupted` for the duration, so the clean-up in `finally`
    runs (by default SIGTERM ends Python at once, leaving SuperLink, SuperExec and Ray behind);
    the previous handlers come back afterwards. Only the main thread may set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise RunInterrupted(signal.Signals(signum))

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_process_group(process: subprocess.Popen, *, grace_s: float = 15.0) -> None:
    """SIGTERM to the process group `process` leads (whatever of it is left), then SIGKILL to it
    after `grace_s` seconds if `process` itself has not exited."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log.warning("`flwr run` (%d) ignored SIGTERM; killing its process group", process.pid)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()


def simulation_turns(num_sites: int, cpus_per_site: int, gpus_per_site: float = 0.0,
                     *, cpus: int | None = None, gpus: int | None = None) -> int:
    """How many turns the simulated sites take on this machine: Ray runs as many at once as the
    cores (and GPU shares) allow, and the others wait for a free one."""
    if cpus is None:
        cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                else os.cpu_count() or 1)
    slots = max(1, cpus // max(1, cpus_per_site))
    if gpus_per_site > 0:
        if gpus is None:
            import torch

            gpus = torch.cuda.device_count()
        slots = min(slots, max(1, int(gpus / gpus_per_site)))
    return -(-num_sites // slots)


def _with_turn_timeout(run_config: dict[str, object], turns: int) -> dict[str, object]:
    """`round-timeout` is how long one site may take. In a simulation a site that waits for a free
    core is already on the round's clock, so unless the run sets it, the round gets the default
    once per turn: at the default, four 15,000-encounter hospitals on 2 cores would otherwise
    see the second pair dropped as "no reply" while they wait."""
    if "round-timeout" in run_config or turns <= 1:
        return run_config
    per_site = read_run_config(default_run_config(), "round-timeout")
    log.info("%d turns of simulated sites on this machine: round-timeout %.0f s (%.0f s per turn)",
             turns, per_site * turns, per_site)
    return {**run_config, "round-timeout": per_site * turns}


_HANDED_OUT: set[int] = set()
"""Ports `free_port` has given this process: the kernel may offer a just-closed probe's port again,
and two servers told the same port leave one unable to start (seen: two loopback SuperNodes given
one runtime port, the second dead and the run waiting for its site until the start wait ran out)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now and that this process has not
    handed out before."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _processes() -> list[tuple[int, str]]:
    """(pid, command line) of every live process (Linux /proc)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmdline and process_alive(int(proc.name)):
            found.append((int(proc.name), cmdline))
    return found


def local_superlink_pids(flwr_home: Path) -> list[int]:
    """Process ids of Flower processes started with state under `flwr_home` (Linux /proc)."""
    marker = str(flwr_home / "local-superlink")
    return [pid for pid, cmdline in _processes() if marker in cmdline
            and ("flower-superlink" in cmdline or "flower-superexec" in cmdline)]


def stop_local_superlink(flwr_home: Path, *, grace_s: float = 15.0) -> None:
    """Stop the background SuperLink that `flwr run` started for this FLWR_HOME: SIGTERM, then
    SIGKILL for whatever has not exited after `grace_s` seconds."""
    roots = local_superlink_pids(flwr_home)
    # The simulation (flwr-simulation, its Ray workers) runs under the SuperExec: a killed
    # `flwr run` leaves it running, still driving the ServerApp, unless the tree goes too.
    pids = roots + [child for pid in roots for child in descendants(pid) if child not in roots]
    for pid in pids:
        log.info("stopping local Flower process %d", pid)
        send_signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while (alive := [p for p in pids if process_alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in alive:
        log.warning("local Flower process %d ignored SIGTERM; killing it", pid)
        send_signal(pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), children before grandchildren."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, frontier = [], [pid]
    while frontier:
        children = [c for p in frontier for c in parents.get(p, [])]
        found += children
        frontier = children
    return found


def send_signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def process_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
