"""End to end on loopback: the app on Flower's Deployment Engine, with real processes.

One SuperLink (TLS, SuperNode authentication, state on disk) and three SuperNodes — two training
hospitals and the external health system, each started from its own site YAML with its own key —
run as separate processes. Certificates, keys, the `flwr` connection (in a temporary FLWR_HOME)
and the registrations go through `lang1-fl deploy ...` as the README tells the coordinator and
hospital IT to; the SuperLink and SuperNodes run the command lines that `lang1-fl deploy superlink`
and `lang1-fl deploy supernode` print (the same builders). `flwr run` then runs two rounds. The same
config in simulation must give the same numbers, a fourth SuperNode whose key was never registered
must be refused, and nothing may be left running.

Slow: Flower 1.42's SuperNode starts a fresh ClientApp process for every message (6 per site
here), each importing torch and loading the model again; about 4 minutes on 2 busy cores.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from server.cli import main as lang1_fl
from server.deployment import SuperLinkFiles, run_command, superlink_command, supernode_command
from server.flower_run import local_superlink_pids, stop_local_superlink
from tests.consortium_fixtures import write_table_consortium
from tests.tiny_models import keyword_table, make_tiny_encoder

pytestmark = pytest.mark.slow

ROUNDS = 2
CONNECTION = "loopback"
SITES = {"north": "train", "south": "train", "external-system": "external"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _with_validation(table):
    train = table.index[table["split"] == "train"]
    return table.assign(split=table["split"].where(~table.index.isin(train[-len(train) // 8:]),
                                                  "validation"))


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    """Tiny encoder, three table sites, one site YAML per hospital, and the run config."""
    root = tmp_path_factory.mktemp("deployment")
    tables = {name: (role, _with_validation(keyword_table(120, seed=i)) if role == "train"
                     else keyword_table(80, seed=i))
              for i, (name, role) in enumerate(SITES.items(), start=1)}
    consortium = write_table_consortium(root, tables, tasks=("mortality",), local_steps=6)
    site_yamls = {}
    for site in yaml.safe_load(consortium.read_text())["sites"]:  # what each hospital holds
        site_yamls[site["name"]] = root / "hospitals" / site["name"] / "site.yaml"
        site_yamls[site["name"]].parent.mkdir(parents=True)
        site_yamls[site["name"]].write_text(yaml.safe_dump(site))
    base = make_tiny_encoder(root / "base")
    run_config = {"consortium": str(consortium), "data-dir": str(root / "data"),
                  "runs-dir": str(root / "runs"), "num-server-rounds": ROUNDS,
                  "base-model": str(base), "tasks": "mortality", "max-length": 64,
                  "learning-rate": 0.01, "head-learning-rate": 0.1, "bootstrap-resamples": 50,
                  "round-timeout": 120.0}
    return root, consortium, site_yamls, run_config


@pytest.fixture(scope="module")
def simulated(federation) -> dict:
    """The same run config in Flower's simulation engine (its own FLWR_HOME and free ports, so it
    never joins another local SuperLink), its SuperLink stopped by process id afterwards."""
    root, _, _, run_config = federation
    flwr_home = root / "simulation-flwr-home"
    env = dict(os.environ, FLWR_HOME=str(flwr_home),
               FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
               FLWR_LOCAL_SUPERLINK_HTTP_API_PORT=str(_free_port()),
               FLWR_LOCAL_CONTROL_API_PORT=str(_free_port()))
    command = run_command("local", run_config={**run_config, "run-name": "simulated"}) + [
        "--federation-config", f"num-supernodes={len(SITES)} client-resources-num-cpus=1"]
    try:
        with (root / "simulation.log").open("wb") as log:
            subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=300,
                           check=False)
    finally:
        stop_local_superlink(flwr_home)
    assert local_superlink_pids(flwr_home) == []
    metrics = root / "runs" / "simulated" / "metrics.json"
    assert metrics.exists(), (root / "simulation.log").read_text()[-3000:]
    return json.loads(metrics.read_text())


class Processes:
    """Every process this test starts, stopped by process id (and their children too)."""

    def __init__(self, logs: Path) -> None:
        self.logs, self.started, self.seen = logs, {}, set()

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        with (self.logs / f"{name}.log").open("wb") as log:  # the child keeps its own copy
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       cwd=self.logs)
        self.started[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def descendants(self) -> set[int]:
        """Started processes and everything below them (Flower starts SuperExec and app
        processes in new sessions, so a process group would miss them)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        found, todo = set(), [p.pid for p in self.started.values()]
        while todo:
            pid = todo.pop()
            found.add(pid)
            todo += children.get(pid, [])
        self.seen |= found
        return found

    def stop_all(self, grace_s: float = 15.0) -> None:
        pids = self.descendants()
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            for process in self.started.values():
                process.poll()  # reap our own children, so they do not linger as zombies
            time.sleep(0.2)
        for pid in [p for p in pids if _alive(p)]:
            _signal(pid, signal.SIGKILL)
        for process in self.started.values():
            process.wait(timeout=10)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the SuperLink exited at start"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"the SuperLink did not listen on port {port} within {timeout:.0f} s")


def _join(root: Path, site_yamls: dict[str, Path], env: dict[str, str], port: int) -> None:
    """Coordinator and hospitals run the README's commands: CA, server certificate, site keys,
    connection (the SuperLink starts, then registration follows)."""
    certs, keys = root / "coordinator", root / "keys"
    assert lang1_fl(["deploy", "ca", "--out", str(certs)]) == 0
    assert lang1_fl(["deploy", "server-cert", "--ca-dir", str(certs), "--host", "localhost"]) == 0
    for name in [*site_yamls, "intruder"]:
        assert lang1_fl(["deploy", "site-key", name, "--out", str(keys / name)]) == 0
    assert lang1_fl(["deploy", "connect", "--name", CONNECTION, "--address", f"127.0.0.1:{port}",
                     "--root-cert", str(certs / "ca.crt"),
                     "--flwr-home", env["FLWR_HOME"]]) == 0


@pytest.fixture(scope="module")
def deployed(federation, simulated):
    """Join, start everything, run two rounds, record what happened, stop everything."""
    root, _, site_yamls, run_config = federation
    port = _free_port()
    env = dict(os.environ, FLWR_HOME=str(root / "flwr-home"), OMP_NUM_THREADS="1",
               FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1")
    (root / "logs").mkdir()
    processes = Processes(root / "logs")
    outcome: dict = {}
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:  # `deploy register` runs flwr in this FLWR_HOME
        patch.setenv("FLWR_HOME", env["FLWR_HOME"])
        _join(root, site_yamls, env, port)
        try:
            outcome = _run_federation(processes, root, site_yamls, run_config, env, port)
        finally:
            processes.stop_all()
    outcome["left_running"] = [pid for pid in processes.seen if _alive(pid)]
    outcome["wall_s"] = time.monotonic() - started
    return outcome


def _run_federation(processes: Processes, root: Path, site_yamls: dict[str, Path],
                    run_config: dict, env: dict[str, str], port: int) -> dict:
    certs, keys = root / "coordinator", root / "keys"
    link = processes.start("superlink", superlink_command(
        SuperLinkFiles(ca_cert=certs / "ca.crt", server_cert=certs / "server.crt",
                       server_key=certs / "server.key", database=root / "superlink.db"),
        host="127.0.0.1", port=port), env)
    _wait_for_port(port, link)
    for name in site_yamls:  # the coordinator registers the three hospitals' public keys only
        assert lang1_fl(["deploy", "register", str(keys / name / f"{name}.pub"),
                         "--connection", CONNECTION, "--name", name]) == 0
    for name, site_yaml in [*site_yamls.items(), ("intruder", site_yamls["external-system"])]:
        processes.start(name, supernode_command(
            superlink=f"127.0.0.1:{port}", root_cert=certs / "ca.crt",
            private_key=keys / name / name, site_config=site_yaml, runtime_port=_free_port()), env)
    intruder_status = processes.started["intruder"].wait(timeout=90)
    command = run_command(CONNECTION, run_config={**run_config, "run-name": "deployed"})
    with (root / "logs" / "flwr-run.log").open("wb") as log:
        status = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                timeout=300, check=False).returncode
    processes.descendants()  # remember SuperExec and app processes for the leftover check
    listing = subprocess.run([str(Path(sys.executable).parent / "flwr"), "supernode", "list", CONNECTION, "--format", "json"],
                             env=env, capture_output=True, text=True, timeout=60, check=False)
    metrics_file = Path(run_config["runs-dir"]) / "deployed" / "metrics.json"
    return {"flwr_status": status, "run_log": processes.logs / "flwr-run.log",
            "metrics": json.loads(metrics_file.read_text()) if metrics_file.exists() else None,
            "intruder_status": intruder_status, "intruder_log": processes.log("intruder"),
            "superlink_log": processes.log("superlink"),
            "nodes": json.loads(listing.stdout[listing.stdout.index("{"):])["nodes"]}


def _aurocs(metrics: dict) -> dict[tuple, float | None]:
    """Every AUROC of the run: (round, site, split, task) -> value."""
    values = {}
    for entry in metrics["rounds"]:
        for site, result in entry["evaluation"].items():
            for task, cell in result["tasks"].items():
                values[(entry["round"], site, "test", task)] = cell["auroc"]
            for task, cell in result.get("validation", {}).items():
                values[(entry["round"], site, "validation", task)] = cell["auroc"]
    return values


def test_two_rounds_complete_on_the_deployment_engine(deployed):
    metrics = deployed["metrics"]
    assert deployed["flwr_status"] == 0 and metrics is not None, deployed["run_log"].read_text()[-3000:]
    assert metrics["run"]["outcome"] == "completed"
    assert [r["round"] for r in metrics["rounds"]] == list(range(ROUNDS + 1))
    for entry in metrics["rounds"]:
        assert set(entry["evaluation"]) == set(SITES)
        assert set(entry["training"]) == ({"north", "south"} if entry["round"] else set())
        assert not entry["failures"]


def test_deployment_matches_simulation_bitwise(deployed, simulated):
    """Same seeds, same numbers: every seed derives from the run seed and the site's name, not
    from the engine; one torch thread in both (OMP_NUM_THREADS=1 here, one CPU per Ray actor
    there); and with two training sites FedAvg's weighted sum is the same in either reply order
    (addition commutes; with three or more the order could move the last bits)."""
    deployment, simulation = _aurocs(deployed["metrics"]), _aurocs(simulated)
    assert deployment.keys() == simulation.keys() and len(deployment) >= 3 * (ROUNDS + 1)
    assert deployment == simulation
    for ours, theirs in zip(deployed["metrics"]["rounds"], simulated["rounds"]):
        assert ours["training"] == theirs["training"]  # losses and example counts
    assert deployed["metrics"]["selection"] == simulated["selection"]


def test_an_unregistered_supernode_is_refused(deployed):
    assert deployed["intruder_status"] != 0
    assert "Failed to activate SuperNode" in deployed["intruder_log"]
    assert len(deployed["nodes"]) == len(SITES)  # the three registered keys, nobody else


def test_nothing_is_left_running(deployed):
    assert deployed["left_running"] == []
