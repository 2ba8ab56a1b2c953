"""The command lines of a real deployment on Flower 1.42's Deployment Engine, built and checked.

The coordinator runs one `flower-superlink` with TLS and SuperNode authentication; each hospital
runs one `flower-supernode` that trusts the consortium CA, signs with its own key and names its
site YAML in `--node-config`; the coordinator starts a run with `flwr run . <connection>`, where
the connection (address and CA certificate) lives in `$FLWR_HOME/config.toml`. Flags moved between
Flower releases; in 1.42 the SuperLink serves its Fleet (SuperNodes), Control (`flwr`) and Runtime
(ServerApp) APIs on ONE HTTP port (`--host`/`--port`, default 127.0.0.1:8000), so that port must be
reachable from the hospitals and the coordinator's `flwr`, and from no one else: without Flower's
enterprise login, anyone who reaches the port and trusts the CA can call the Control API.

Each builder checks its files first, so a missing certificate or key fails here, naming the flag
and the file, instead of inside Flower.
"""

from __future__ import annotations

import shlex
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from client.node_identity import check_node_private_key
from server.launch.certificates import load_certificate, load_private_key
from server.launch.flower_executables import flower_executable

DEFAULT_PORT = 8000
"""Flower 1.42's single SuperLink port (Fleet, Control and Runtime APIs)."""
DEFAULT_SUPERNODE_PORT = 9094
"""The SuperNode's local Runtime API port (its ClientApp processes connect to it on loopback)."""


class DeploymentError(ValueError):
    """A deployment command cannot be built: a file or value it needs is missing or wrong."""


@dataclass(frozen=True)
class SuperLinkFiles:
    """What the coordinator's SuperLink reads."""

    ca_cert: Path
    """The consortium CA certificate (`ca.crt`)."""
    server_cert: Path
    """The SuperLink certificate signed by the CA (`server.crt`)."""
    server_key: Path
    """Its private key (`server.key`, 0600): never leaves the coordinator."""
    database: Path
    """SuperLink state (SQLite): registered SuperNode keys survive a restart only when on disk."""


def superlink_command(files: SuperLinkFiles, *, host: str = "0.0.0.0",
                      port: int = DEFAULT_PORT) -> list[str]:
    """`flower-superlink` with TLS, SuperNode authentication, state on disk, and no per-run
    dependency installation (a run never downloads torch into a fresh environment)."""
    load_certificate(files.ca_cert, what="CA certificate (--ssl-ca-certfile)")
    load_certificate(files.server_cert, what="server certificate (--ssl-certfile)")
    load_private_key(files.server_key)
    _check_port(port, "--port")
    return [
        flower_executable("flower-superlink"),
        "--ssl-ca-certfile", _absolute(files.ca_cert),
        "--ssl-certfile", _absolute(files.server_cert),
        "--ssl-keyfile", _absolute(files.server_key),
        "--enable-supernode-auth",
        "--database", _absolute(files.database),
        "--disable-runtime-dependency-installation",
        "--host", host, "--port", str(port),
    ]


def supernode_command(*, superlink: str, root_cert: Path, private_key: Path, site_config: Path,
                      runtime_port: int = DEFAULT_SUPERNODE_PORT,
                      site_worker: str | None = None) -> list[str]:
    """`flower-supernode` for one hospital, run as client/supernode.py (Flower's entry point,
    asking for messages every 0.5 s instead of 3 s when idle): trusts the consortium CA, signs
    with the site's key, serves the site named by its YAML (validated here, data not read). With
    `site_worker` (a socket of client/site_worker.py) its ClientApps hand their messages to that
    worker."""
    from sites.config import load_site

    _check_address(superlink)
    load_certificate(root_cert, what="consortium CA certificate (--root-certificates)")
    check_node_private_key(private_key)
    load_site(site_config)  # InvalidSiteConfig names the file and key
    if '"' in _absolute(site_config):
        raise DeploymentError(f"--site {site_config}: a path with '\"' cannot go into "
                              "--node-config; move the YAML")
    _check_port(runtime_port, "--port")
    node_config = f'site-config="{_absolute(site_config)}"'
    if site_worker is not None:
        from client.worker_link import WORKER_KEY

        node_config += f' {WORKER_KEY}="{site_worker}"'
    return [
        sys.executable, "-m", "client.supernode",  # flower-supernode, shorter waits
        "--superlink", superlink,
        "--root-certificates", _absolute(root_cert),
        "--auth-supernode-private-key", _absolute(private_key),
        "--node-config", node_config,
        "--port", str(runtime_port),
    ]


def register_command(public_key: Path, *, connection: str, name: str | None = None) -> list[str]:
    """`flwr supernode register`: adds a site's public key to the running SuperLink."""
    command = [flower_executable("flwr"), "supernode", "register", str(public_key), connection]
    return command + (["--name", name] if name else [])


def run_command(connection: str, *, run_config: dict[str, object] | None = None,
                app_dir: Path | None = None) -> list[str]:
    """`flwr run <app> <connection> --stream` with optional run-config overrides."""
    from server.launch.flower_run import APP_DIR, toml_value

    command = [flower_executable("flwr"), "run", str(app_dir or APP_DIR), connection, "--stream"]
    if run_config:
        overrides = " ".join(f"{k}={toml_value(v)}" for k, v in run_config.items())
        command += ["--run-config", overrides]
    return command


def connection_toml(name: str, *, address: str, root_cert: Path) -> str:
    """The `[superlink.<name>]` table of `$FLWR_HOME/config.toml` that `flwr run . <name>` and
    `flwr supernode register ... <name>` use: the SuperLink's address and the CA to trust."""
    _check_address(address)
    if not name.replace("-", "").replace("_", "").isalnum():
        raise DeploymentError(f"connection name {name!r}: use letters, digits, '-' and '_'")
    load_certificate(root_cert, what="consortium CA certificate (root-certificates)")
    root = str(Path(root_cert).resolve())  # Flower requires an absolute path here
    return (f"\n[superlink.{name}]\naddress = {_toml_string(address)}\n"
            f"root-certificates = {_toml_string(root)}\n")


def add_connection(config_file: Path, name: str, *, address: str, root_cert: Path) -> None:
    """Append the connection to `config_file` (creating it with Flower's `local` default); an
    existing connection of that name is never rewritten: the error says where it is."""
    table = connection_toml(name, address=address, root_cert=root_cert)
    if config_file.exists():
        existing = tomllib.loads(config_file.read_text()).get("superlink", {})
        if name in existing:
            raise FileExistsError(f"{config_file}: connection [superlink.{name}] exists "
                                  f"(address {existing[name].get('address')!r}); edit or remove "
                                  "it, or choose another --name")
        text = config_file.read_text()
    else:
        text = '[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = ":local:"\n'
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(text.rstrip("\n") + "\n" + table)


def shell_line(command: list[str]) -> str:
    """A command as the user would type it (quoted for a POSIX shell)."""
    return " ".join(shlex.quote(part) for part in command)




def _absolute(path: Path) -> str:
    """Printed commands carry absolute paths, so they work from any folder (and in systemd)."""
    return str(Path(path).expanduser().resolve())


def _check_address(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise DeploymentError(f"SuperLink address {address!r}: expected HOST:PORT, e.g. "
                              f"superlink.example.org:{DEFAULT_PORT}")
    _check_port(int(port), "the SuperLink address")


def _check_port(port: int, where: str) -> None:
    if not 0 < port < 65536:
        raise DeploymentError(f"{where}: port {port} is not between 1 and 65535")


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
