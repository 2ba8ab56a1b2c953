"""`lang1-fl experiment transfer`: every training regime side by side in one Flower simulation
(server/transfer/experiment.py runs it inside the ServerApp), then point at its report.

The `lang1-fl` entry point (server/cli.py) attaches this parser. Heavy imports happen inside the
handler, so `lang1-fl --help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from client.run_profiles import PROFILE_HELP
from server.launch.run_cli import DEFAULT_RUNS_DIR, VERBOSE_HELP
from sites.data_root import DATA_DIR_HELP


def add_experiment_parser(commands: argparse._SubParsersAction) -> None:
    """`lang1-fl experiment transfer ...`."""
    experiment = commands.add_parser("experiment", help="experiments over a consortium").add_subparsers(
        dest="experiment_command", required=True
    )
    transfer = experiment.add_parser(
        "transfer", help="train every regime (untrained, local-only, federated, leave-one-site-"
        "out, pooled, single-task) with the same base, steps and seeds; score each at every site "
        "and the external system; write transfer.json and a report"
    )
    transfer.add_argument("consortium", nargs="?", default="default")
    transfer.add_argument("--rounds", type=int, help="federated rounds per regime")
    transfer.add_argument("--regimes", default="all",
                          help="'all' or a comma list of federated, local, leave-one-out, "
                          "pooled, single-task (the untrained model is always scored)")
    transfer.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    transfer.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR)
    transfer.add_argument("--run-name", default="", help="folder name (default: transfer-<UTC time>)")
    transfer.add_argument("--cpus-per-site", type=int, default=1)
    transfer.add_argument("--gpus-per-site", type=float, default=0.0)
    transfer.add_argument("--profile", metavar="NAME", help=PROFILE_HELP)
    transfer.add_argument("--set", action="append", metavar="KEY=VALUE",
                          help="run-config override, as for `lang1-fl run`")
    transfer.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    transfer.set_defaults(handler=cmd_experiment_transfer)


def cmd_experiment_transfer(args: argparse.Namespace) -> int:
    """Every training regime side by side in one Flower simulation; point at its report."""
    from server.launch.flower_run import flwr_run

    run_config, num_nodes = plan_transfer(args)
    status = flwr_run(run_config=run_config, num_supernodes=num_nodes,
                      flwr_home=_folder(run_config["runs-dir"]) / ".flwr",
                      cpus_per_site=args.cpus_per_site, gpus_per_site=args.gpus_per_site,
                      verbose=args.verbose)
    return transfer_outcome(run_config, status)


def plan_transfer(args: argparse.Namespace) -> tuple[dict[str, object], int]:
    """Everything before Flower starts: every check of `lang1-fl run` (and the refusal of DP
    sites), then the pooled site's table when the pooled regime runs. Returns the run config and
    the number of nodes: one per site, plus the pooled site."""
    from server.launch.run_cli import plan_run
    from server.settings import parse_regimes
    from sites.config import load_consortium, resolve_consortium
    from sites.pooling import write_pooled_table

    run_config, num_sites = plan_run(
        args, fixed={"experiment": "transfer", "experiment-regimes": args.regimes},
        default_name="transfer-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S"))
    if "pooled" in parse_regimes(args.regimes):  # before the nodes start: none of them writes
        data_dir = _folder(run_config["data-dir"]) if run_config["data-dir"] else None
        consortium = load_consortium(resolve_consortium(str(run_config["consortium"])),
                                     data_root=data_dir)
        write_pooled_table(consortium, data_dir=data_dir)
    return run_config, num_sites + 1


def transfer_outcome(run_config: dict[str, object], status: int) -> int:
    """The experiment succeeded when Flower did and transfer.json was written."""
    run_dir = _folder(run_config["runs-dir"]) / str(run_config["run-name"])
    if status != 0 or not (run_dir / "transfer.json").exists():
        print("lang1-fl experiment transfer: the experiment failed; see the log above",
              file=sys.stderr)
        return 1
    print(f"report: {run_dir / 'report.html'}")
    return 0


def _folder(value: object) -> Path:
    """A folder of the run config as the apps read it (client/settings.py)."""
    return Path(str(value)).expanduser().resolve()
