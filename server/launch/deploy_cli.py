"""`lang1-fl deploy`: joining a real federation (Flower Deployment Engine, TLS, SuperNode auth).

The work is in server/launch/certificates.py, client/node_identity.py and server/launch/deployment.py; each
handler here prints what it wrote and the exact next command, so hospital IT and the coordinator
never have to assemble a Flower command line by hand. The hospital's key pair (`deploy site-key`)
is made by client/cli.py; the `lang1-fl` entry point (server/cli.py) puts the `deploy` commands
of both in one group.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _deploy_command(handler):
    """Deployment errors (a missing or wrong certificate, key or address) as one line, exit 2."""
    import functools

    @functools.wraps(handler)
    def wrapped(args: argparse.Namespace) -> int:
        from client.node_identity import NodeKeyError
        from server.launch.certificates import CertificateError
        from server.launch.deployment import DeploymentError

        try:
            return handler(args)
        except (CertificateError, NodeKeyError, DeploymentError) as error:
            print(f"lang1-fl deploy: {error}", file=sys.stderr)
            return 2
    return wrapped


@_deploy_command
def cmd_deploy_ca(args: argparse.Namespace) -> int:
    """Coordinator: create the consortium CA."""
    from server.launch.certificates import write_ca

    ca = write_ca(args.out, days=args.days, overwrite=args.overwrite)
    print(f"wrote {ca.cert} (public: give it to every hospital) and {ca.key} (PRIVATE: keep it "
          "with the coordinator, offline if you can)")
    print(f"next: lang1-fl deploy server-cert --ca-dir {args.out} --host SUPERLINK_HOSTNAME")
    return 0


@_deploy_command
def cmd_deploy_server_cert(args: argparse.Namespace) -> int:
    """Coordinator: the SuperLink's TLS certificate, signed by the consortium CA."""
    from server.launch.certificates import (
        CA_CERT,
        CA_KEY,
        CertificatePair,
        write_server_certificate,
    )

    ca = CertificatePair(cert=args.ca_dir / CA_CERT, key=args.ca_dir / CA_KEY)
    out = args.out or args.ca_dir
    server = write_server_certificate(out, ca=ca, hosts=args.host, days=args.days,
                                      overwrite=args.overwrite)
    print(f"wrote {server.cert} and {server.key} (PRIVATE: stays on the SuperLink machine), "
          f"valid for {', '.join(args.host)}, localhost and 127.0.0.1")
    print(f"next: lang1-fl deploy superlink --ca-cert {ca.cert} --certs-dir {out}")
    return 0


@_deploy_command
def cmd_deploy_connect(args: argparse.Namespace) -> int:
    """Coordinator: name the SuperLink in `$FLWR_HOME/config.toml` for `flwr run` and register."""
    import os

    from server.launch.deployment import add_connection, run_command, shell_line

    flwr_home = args.flwr_home or Path(os.environ.get("FLWR_HOME", Path.home() / ".flwr"))
    config = flwr_home / "config.toml"
    add_connection(config, args.name, address=args.address, root_cert=args.root_cert)
    print(f"added SuperLink connection `{args.name}` ({args.address}) to {config}")
    if args.flwr_home:
        print(f"(run `flwr` and `lang1-fl deploy register` with FLWR_HOME={flwr_home})")
    print(f"next, for each hospital's public key: lang1-fl deploy register SITE.pub "
          f"--connection {args.name}")
    print(f"then, once every SuperNode is up: {shell_line(run_command(args.name))} "
          "--run-config 'consortium=\"/abs/consortium.yaml\" runs-dir=\"/abs/runs\"'")
    return 0


@_deploy_command
def cmd_deploy_register(args: argparse.Namespace) -> int:
    """Coordinator: check a site's public key, show its fingerprint, register it with the
    SuperLink (`flwr supernode register`)."""
    import subprocess

    from client.node_identity import fingerprint, load_node_public_key
    from server.launch.deployment import register_command, shell_line
    from server.launch.flower_executables import flower_environ

    key = load_node_public_key(args.public_key)
    print(f"{args.public_key}: fingerprint {fingerprint(key)} (compare it with the hospital's)")
    command = register_command(args.public_key, connection=args.connection, name=args.name)
    print(f"running: {shell_line(command)}", flush=True)
    status = subprocess.run(command, env=flower_environ(), check=False).returncode
    if status != 0:
        print(f"lang1-fl deploy register: `flwr supernode register` failed (exit {status}); is "
              f"the SuperLink of connection `{args.connection}` running?", file=sys.stderr)
        return 1
    print("next: the hospital starts its SuperNode (`lang1-fl deploy supernode ...`)")
    return 0


@_deploy_command
def cmd_deploy_superlink(args: argparse.Namespace) -> int:
    """Coordinator: the `flower-superlink` command with TLS and SuperNode auth (or run it)."""
    from server.launch.certificates import SERVER_CERT, SERVER_KEY
    from server.launch.deployment import SuperLinkFiles, shell_line, superlink_command

    files = SuperLinkFiles(ca_cert=args.ca_cert, server_cert=args.certs_dir / SERVER_CERT,
                           server_key=args.certs_dir / SERVER_KEY, database=args.database)
    command = superlink_command(files, host=args.host, port=args.port)
    return _print_or_exec(command, shell_line(command), start=args.exec)


@_deploy_command
def cmd_deploy_supernode(args: argparse.Namespace) -> int:
    """Hospital: the `flower-supernode` command for its site YAML (or run it, beside the site
    worker that keeps the model loaded between messages: client/site_worker.py)."""
    from server.launch.deployment import DeploymentError, shell_line, supernode_command

    def command(site_worker: str | None = None) -> list[str]:
        return supernode_command(superlink=args.superlink, root_cert=args.root_cert,
                                 private_key=args.key, site_config=args.site,
                                 runtime_port=args.port, site_worker=site_worker)

    if args.no_worker and not args.exec:
        raise DeploymentError("--no-worker only changes how --exec runs the SuperNode; add --exec")
    if not args.exec or args.no_worker:
        line = command()
        return _print_or_exec(line, shell_line(line), start=args.exec)
    from client.site_worker import run_with_worker

    command()  # every file and value checked before the worker imports anything

    def announced(site_worker: str) -> list[str]:
        line = command(site_worker)
        print(shell_line(line), flush=True)
        return line

    return run_with_worker(announced, _flower_process_environ())


def _flower_process_environ() -> dict[str, str]:
    """The environment of a SuperLink or SuperNode we start: Flower's commands from this venv,
    no per-run dependency installation (a run never rebuilds torch), and the SuperExec looking
    for messages every 0.2 s instead of Flower's 1 s (unless set): with the model kept loaded,
    that wait is a visible share of a message."""
    from server.launch.flower_executables import flower_environ

    env = flower_environ()
    env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] = "1"
    env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.2")
    return env


def _print_or_exec(command: list[str], line: str, *, start: bool) -> int:
    """Print the command; with `--exec`, become it (so systemd and signals reach Flower)."""
    import os

    print(line, flush=True)
    if start:
        os.execvpe(command[0], command, _flower_process_environ())
    return 0


def add_certificate_parsers(deploy: argparse._SubParsersAction) -> None:
    """The coordinator's files: consortium CA, SuperLink certificate (a site's key pair is the
    hospital's: client/cli.py)."""
    ca = deploy.add_parser("ca", help="coordinator: create the consortium CA (ca.crt, ca.key)")
    ca.add_argument("--out", type=Path, required=True, help="folder for ca.crt and ca.key")
    ca.add_argument("--days", type=int, default=3650, help="validity in days")
    ca.add_argument("--overwrite", action="store_true", help="replace existing files")
    ca.set_defaults(handler=cmd_deploy_ca)
    server = deploy.add_parser("server-cert", help="coordinator: the SuperLink's TLS certificate, "
                               "signed by the CA, for the names the hospitals dial")
    server.add_argument("--ca-dir", type=Path, required=True, help="folder of ca.crt and ca.key")
    server.add_argument("--host", action="append", required=True, metavar="NAME_OR_IP",
                        help="a DNS name or IP address of the SuperLink (repeat for several); "
                        "localhost and 127.0.0.1 are always added")
    server.add_argument("--out", type=Path, help="folder for server.crt/.key (default: --ca-dir)")
    server.add_argument("--days", type=int, default=825, help="validity in days")
    server.add_argument("--overwrite", action="store_true", help="replace existing files")
    server.set_defaults(handler=cmd_deploy_server_cert)


def add_federation_parsers(deploy: argparse._SubParsersAction) -> None:
    """The processes: flwr connection, registration, SuperLink, SuperNode."""
    connect = deploy.add_parser("connect", help="coordinator: add the SuperLink to "
                                "$FLWR_HOME/config.toml for `flwr run` and `register`")
    connect.add_argument("--name", required=True, help="connection name, e.g. the consortium's")
    connect.add_argument("--address", required=True, metavar="HOST:PORT", help="SuperLink address")
    connect.add_argument("--root-cert", type=Path, required=True, help="the consortium's ca.crt")
    connect.add_argument("--flwr-home", type=Path, help="default: $FLWR_HOME or ~/.flwr")
    connect.set_defaults(handler=cmd_deploy_connect)
    register = deploy.add_parser("register", help="coordinator: check a site's public key and "
                                 "register it with the running SuperLink")
    register.add_argument("public_key", type=Path, metavar="SITE.pub")
    register.add_argument("--connection", required=True, help="name given to `deploy connect`")
    register.add_argument("--name", help="a name for the SuperNode in `flwr supernode list`")
    register.set_defaults(handler=cmd_deploy_register)
    link = deploy.add_parser("superlink", help="coordinator: print (or --exec) flower-superlink "
                             "with TLS and SuperNode authentication")
    link.add_argument("--ca-cert", type=Path, required=True, help="the consortium's ca.crt")
    link.add_argument("--certs-dir", type=Path, required=True, help="folder of server.crt/.key")
    link.add_argument("--database", type=Path, default=Path("superlink-state.db"),
                      help="SuperLink state; registrations survive restarts only on disk")
    link.add_argument("--host", default="0.0.0.0", help="address to listen on")
    link.add_argument("--port", type=int, default=8000, help="the one SuperLink port (Flower 1.42)")
    link.add_argument("--exec", action="store_true", help="start it instead of printing it")
    link.set_defaults(handler=cmd_deploy_superlink)
    node = deploy.add_parser("supernode", help="hospital: print (or --exec) flower-supernode "
                             "for its site YAML")
    node.add_argument("--superlink", required=True, metavar="HOST:PORT", help="SuperLink address")
    node.add_argument("--root-cert", type=Path, required=True, help="the consortium's ca.crt")
    node.add_argument("--key", type=Path, required=True, help="this site's private key")
    node.add_argument("--site", type=Path, required=True, help="this site's YAML")
    node.add_argument("--port", type=int, default=9094, help="local port for its ClientApps")
    node.add_argument("--exec", action="store_true",
                      help="start it (with the site worker) instead of printing it")
    node.add_argument("--no-worker", action="store_true",
                      help="with --exec: no site worker; every message loads the model in a "
                      "fresh process (Flower's own way, seconds per message)")
    node.set_defaults(handler=cmd_deploy_supernode)
