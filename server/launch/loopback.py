"""One small federation run on this machine, both ways: in Flower's simulation engine, and on its
Deployment Engine over loopback, with every Flower component a real process.

The deployment follows docs/coordinator.md's Deployment section step by step: `lang1-fl deploy ...` makes
the consortium CA, the SuperLink's certificate, one key pair per hospital and the `flwr`
connection (in a FLWR_HOME of its own); one SuperLink (TLS, SuperNode authentication, state on
disk) and one SuperNode per site YAML then run the command lines `lang1-fl deploy superlink` and
`lang1-fl deploy supernode` print, the coordinator registers the hospitals' public keys, and
`flwr run` runs the app. tests/test_deployment_e2e.py checks with it that both ways give the same
numbers; bench/deployment.py measures what the deployment path costs. Both need it to leave nothing
running, so every process started here — and everything below it, which Flower starts in new
sessions — is stopped by process id.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from server.launch.deployment import (
    SuperLinkFiles,
    run_command,
    superlink_command,
    supernode_command,
)
from server.launch.flower_run import (
    free_port,
    local_superlink_pids,
    process_alive,
    send_signal,
    stop_local_superlink,
)

CONNECTION = "loopback"
"""The name of the SuperLink in the deployment's `$FLWR_HOME/config.toml`."""
INTRUDER = "intruder"
"""A SuperNode whose key is made but never registered: the SuperLink must refuse it."""


class LoopbackError(RuntimeError):
    """A step of the loopback deployment failed; the message names the step and its log."""


@dataclass(frozen=True)
class SimulatedRun:
    status: int
    """`flwr run`'s exit status."""
    log: Path
    """Its output (`--stream`: the ServerApp's log)."""
    wall_s: float
    """Seconds `flwr run` took, the local SuperLink's start included."""


@dataclass(frozen=True)
class DeployedRun:
    status: int
    """`flwr run`'s exit status."""
    logs: Path
    """Folder of every process's log: `flwr-run.log`, `superlink.log`, `<site>.log`."""
    wall_s: float
    """Seconds `flwr run` took (the SuperLink and SuperNodes were already up)."""
    nodes: list[dict]
    """`flwr supernode list` after the run: the registered SuperNodes."""
    intruder_status: int | None
    """Exit status of the unregistered SuperNode (None when none was started)."""
    left_running: list[int]
    """Process ids still alive after everything was stopped: should be empty."""

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")


RUN_TIMEOUT_S = 900.0
"""How long one `flwr run` on loopback may take before it counts as hung: a guard, not a speed
target. A deployed message starts a fresh ClientApp process (~10 s of imports each), so a two-round
run of three sites took 4-5 min on 2 cores that other tests shared."""


def simulate(run_config: dict[str, object], *, num_sites: int, root: Path,
             timeout_s: float = RUN_TIMEOUT_S) -> SimulatedRun:
    """`flwr run` in simulation, one node per site and one CPU each, with its own FLWR_HOME and
    free ports (so it never joins another local SuperLink); that SuperLink is stopped by process
    id afterwards. The log is `root/simulation.log`."""
    flwr_home, log_path = root / "simulation-flwr-home", root / "simulation.log"
    env = dict(os.environ, FLWR_HOME=str(flwr_home),
               FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
               FLWR_LOCAL_SUPERLINK_HTTP_API_PORT=str(free_port()),
               FLWR_LOCAL_CONTROL_API_PORT=str(free_port()))
    command = run_command("local", run_config=run_config) + [
        "--federation-config", f"num-supernodes={num_sites} client-resources-num-cpus=1"]
    started = time.monotonic()
    try:
        with log_path.open("wb") as log:
            status = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=timeout_s, check=False).returncode
    finally:
        stop_local_superlink(flwr_home)
    if local_superlink_pids(flwr_home):
        raise LoopbackError(f"the simulation's SuperLink under {flwr_home} is still running")
    return SimulatedRun(status=status, log=log_path, wall_s=time.monotonic() - started)


def make_site_keys(root: Path, names: list[str]) -> dict[str, Path]:
    """Each hospital's key pair, made as docs/hospital-it.md says (`lang1-fl deploy site-key`)
    unless it exists already: the public key file of each. A test makes them before `deploy`
    to write their fingerprints into the consortium, as a coordinator does."""
    public = {}
    for name in names:
        public[name] = root / "keys" / name / f"{name}.pub"
        if not public[name].exists():
            _lang1_fl("deploy", "site-key", name, "--out", str(public[name].parent))
    return public


def deploy(run_config: dict[str, object], *, site_yamls: dict[str, Path], root: Path,
           intruder_site: Path | None = None, signing_keys: dict[str, str] | None = None,
           held_back: frozenset[str] = frozenset(),
           during: Callable[[LiveDeployment], None] | None = None,
           timeout_s: float = RUN_TIMEOUT_S, site_worker: bool = True) -> DeployedRun:
    """Join (CA, certificates, keys, connection), start the SuperLink and one SuperNode per site
    YAML, run `flwr run` once, list the SuperNodes, stop everything. With `intruder_site`, one more
    SuperNode serving that YAML starts with a key that was never registered, before the run.
    `signing_keys` maps a SuperNode to the site whose key it holds (default: its own); the
    coordinator registers the keys the SuperNodes hold. The SuperNodes of `held_back` sites are
    not started before the run; `during`, run beside `flwr run`, may start them, or pause and
    resume a site (`LiveDeployment`): sites that join late or hang. Each SuperNode runs as a
    hospital starts it, `lang1-fl deploy supernode --exec`: beside its site worker, or, with
    `site_worker=False`, with a fresh ClientApp process loading the model for every message."""
    port = free_port()
    # One torch thread per site, as simulation's one CPU per Ray actor: the same numbers, bit for
    # bit, and a fair timing comparison.
    env = dict(os.environ, FLWR_HOME=str(root / "flwr-home"), OMP_NUM_THREADS="1",
               FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1")
    (root / "logs").mkdir(parents=True, exist_ok=True)
    processes = Processes(root / "logs")
    holds = {name: (signing_keys or {}).get(name, name) for name in site_yamls}
    names = [*holds.values(), *([INTRUDER] if intruder_site else [])]
    with _flwr_home(env["FLWR_HOME"]), _quiet(root / "logs" / "coordinator.log"):
        _join(root, names, env, port)
        try:
            status, wall_s, intruder = _start_and_run(processes, root, site_yamls, holds,
                                                      intruder_site, run_config, env, port,
                                                      timeout_s, held_back, during,
                                                      site_worker)
            processes.descendants()  # remember SuperExec and app processes for the leftover check
            nodes = _supernodes(env)
        finally:
            processes.stop_all()
    return DeployedRun(status=status, logs=processes.logs, wall_s=wall_s, nodes=nodes,
                       intruder_status=intruder,
                       left_running=[pid for pid in processes.seen if process_alive(pid)])


def _join(root: Path, names: list[str], env: dict[str, str], port: int) -> None:
    """Coordinator and hospitals run the commands of docs/coordinator.md and docs/hospital-it.md:
    CA, server certificate, site keys, connection (the SuperLink starts next, then registration
    follows)."""
    certs = root / "coordinator"
    _lang1_fl("deploy", "ca", "--out", str(certs))
    _lang1_fl("deploy", "server-cert", "--ca-dir", str(certs), "--host", "localhost")
    make_site_keys(root, names)
    _lang1_fl("deploy", "connect", "--name", CONNECTION, "--address", f"127.0.0.1:{port}",
              "--root-cert", str(certs / "ca.crt"), "--flwr-home", env["FLWR_HOME"])


def _start_and_run(processes: Processes, root: Path, site_yamls: dict[str, Path],
                   holds: dict[str, str], intruder_site: Path | None,
                   run_config: dict[str, object], env: dict[str, str], port: int,
                   timeout_s: float, held_back: frozenset[str] = frozenset(),
                   during: Callable[[LiveDeployment], None] | None = None,
                   site_worker: bool = True) -> tuple[int, float, int | None]:
    """SuperLink up, the sites' keys registered, SuperNodes up (but `held_back`), one `flwr run`
    with `during` beside it: (its exit status, its seconds, the intruder's exit status or
    None)."""
    certs, keys = root / "coordinator", root / "keys"
    link = processes.start("superlink", superlink_command(
        SuperLinkFiles(ca_cert=certs / "ca.crt", server_cert=certs / "server.crt",
                       server_key=certs / "server.key", database=root / "superlink.db"),
        host="127.0.0.1", port=port), env)
    _wait_for_port(port, link)
    for key in dict.fromkeys(holds.values()):  # the coordinator registers hospitals' keys only
        _lang1_fl("deploy", "register", str(keys / key / f"{key}.pub"),
                  "--connection", CONNECTION, "--name", key)
    nodes = [*site_yamls.items(), *([(INTRUDER, intruder_site)] if intruder_site else [])]
    commands = {name: _supernode(superlink=f"127.0.0.1:{port}", root_cert=certs / "ca.crt",
                                 private_key=keys / holds.get(name, name) / holds.get(name, name),
                                 site_config=site_yaml, site_worker=site_worker)
                for name, site_yaml in nodes}
    for name in commands:
        if name not in held_back:
            processes.start(name, commands[name], env)
    intruder = processes.started[INTRUDER].wait(timeout=90) if intruder_site else None
    live = LiveDeployment(processes, commands, env)
    beside = threading.Thread(target=live.run, args=(during,), daemon=True)
    started = time.monotonic()
    with (processes.logs / "flwr-run.log").open("wb") as log:
        beside.start()
        status = subprocess.run(run_command(CONNECTION, run_config=run_config), env=env,
                                stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s,
                                check=False).returncode
    wall_s = time.monotonic() - started
    live.finished.set()
    beside.join(timeout=60)
    if live.error is not None:
        raise LoopbackError(f"what ran beside `flwr run` failed: {live.error!r}") from live.error
    return status, wall_s, intruder


def _supernode(*, superlink: str, root_cert: Path, private_key: Path, site_config: Path,
               site_worker: bool) -> list[str]:
    """`lang1-fl deploy supernode --exec` for one site, its files checked here first."""
    runtime_port = free_port()
    supernode_command(superlink=superlink, root_cert=root_cert, private_key=private_key,
                      site_config=site_config, runtime_port=runtime_port)
    return [str(Path(sys.executable).parent / "lang1-fl"), "deploy", "supernode",
            "--superlink", superlink, "--root-cert", str(root_cert), "--key", str(private_key),
            "--site", str(site_config), "--port", str(runtime_port), "--exec",
            *([] if site_worker else ["--no-worker"])]


class LiveDeployment:
    """What a test may do to the deployment while `flwr run` runs: start a held-back site's
    SuperNode, pause a site (SIGSTOP to its SuperNode and everything below it: a hung host) and
    resume it, and read the run's log as it grows."""

    def __init__(self, processes: Processes, commands: dict[str, list[str]],
                 env: dict[str, str]) -> None:
        self.processes, self.commands, self.env = processes, commands, env
        self.finished = threading.Event()
        """Set when `flwr run` has exited."""
        self.error: BaseException | None = None

    def run(self, during: Callable[[LiveDeployment], None] | None) -> None:
        if during is None:
            return
        try:
            during(self)
        except BaseException as error:  # handed to the caller, which raises it
            self.error = error

    def start(self, name: str) -> None:
        self.processes.start(name, self.commands[name], self.env)

    def pause(self, name: str) -> None:
        for pid in self.processes.descendants([self.processes.started[name].pid]):
            send_signal(pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        for pid in self.processes.descendants([self.processes.started[name].pid]):
            send_signal(pid, signal.SIGCONT)

    def wait_for_file(self, path: Path, timeout_s: float = 600) -> None:
        """Wait until `path` exists (a file the ServerApp writes, such as a round's checkpoint,
        appears at once; the streamed log can lag behind the run by seconds)."""
        deadline = time.monotonic() + timeout_s
        while not path.exists():
            if self.finished.is_set() or time.monotonic() > deadline:
                raise LoopbackError(f"{path} did not appear")
            time.sleep(0.2)

    def wait_for(self, pattern: str, timeout_s: float = 600, *, log_of: str = "flwr-run") -> str:
        """The first line of the run's log (or of site `log_of`'s) matching regular expression
        `pattern`, waiting for it as the log grows; LoopbackError once `flwr run` ended or
        `timeout_s` passed without."""
        found = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        log = self.processes.logs / f"{log_of}.log"
        while time.monotonic() < deadline:
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            if match := next((line for line in lines if found.search(line)), None):
                return match
            if self.finished.is_set():
                break
            time.sleep(0.5)
        raise LoopbackError(f"no line matching {pattern!r} in {log}")


def _supernodes(env: dict[str, str]) -> list[dict]:
    listing = subprocess.run([str(Path(sys.executable).parent / "flwr"), "supernode", "list",
                              CONNECTION, "--format", "json"],
                             env=env, capture_output=True, text=True, timeout=60, check=False)
    if "{" not in listing.stdout:
        raise LoopbackError(f"`flwr supernode list` printed no JSON: {listing.stderr[-1000:]}")
    return json.loads(listing.stdout[listing.stdout.index("{"):])["nodes"]


def _lang1_fl(*argv: str) -> None:
    from server.cli import main as lang1_fl

    if lang1_fl(list(argv)) != 0:
        raise LoopbackError(f"`lang1-fl {' '.join(argv)}` failed")


@contextlib.contextmanager
def _flwr_home(path: str) -> Iterator[None]:
    """`lang1-fl deploy register` runs `flwr` in the environment's FLWR_HOME: point it at the
    deployment's for the duration, then restore it."""
    before = os.environ.get("FLWR_HOME")
    os.environ["FLWR_HOME"] = path
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("FLWR_HOME", None)
        else:
            os.environ["FLWR_HOME"] = before


@contextlib.contextmanager
def _quiet(log_path: Path) -> Iterator[None]:
    """The coordinator's `lang1-fl deploy` output goes to a log, not between a caller's lines."""
    with log_path.open("a") as log, contextlib.redirect_stdout(log):
        yield


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LoopbackError("the SuperLink exited at start; see superlink.log")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise LoopbackError(f"the SuperLink did not listen on port {port} within {timeout:.0f} s")


class Processes:
    """Every process started here, stopped by process id (and their children too)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: dict[str, subprocess.Popen] = {}
        self.seen: set[int] = set()

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        with (self.logs / f"{name}.log").open("wb") as log:  # the child keeps its own copy
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       cwd=self.logs)
        self.started[name] = process
        return process

    def descendants(self, roots: list[int] | None = None) -> set[int]:
        """Started processes (or `roots`) and everything below them (Flower starts SuperExec and
        app processes in new sessions, so a process group would miss them)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        found, todo = set(), list(roots or [p.pid for p in self.started.values()])
        while todo:
            pid = todo.pop()
            found.add(pid)
            todo += children.get(pid, [])
        self.seen |= found
        return found

    def stop_all(self, grace_s: float = 15.0) -> None:
        """SIGTERM to every process below the started ones, SIGKILL after `grace_s` seconds."""
        pids = self.descendants()
        for pid in pids:
            send_signal(pid, signal.SIGCONT)  # a paused process would hold SIGTERM until resumed
            send_signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
            for process in self.started.values():
                process.poll()  # reap our own children, so they do not linger as zombies
            time.sleep(0.2)
        for pid in [p for p in pids if process_alive(p)]:
            send_signal(pid, signal.SIGKILL)
        for process in self.started.values():
            process.wait(timeout=10)
