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

from server.launch.run_cli import DEFAULT_RUNS_DIR
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
    transfer.add_argument("--set", action="append", metavar="KEY=VALUE",
                          help="run-config override, as for `lang1-fl run`")
    transfer.set_defaults(handler=cmd_experiment_transfer)


def cmd_experiment_transfer(args: argparse.Namespace) -> int:
    """Every training regime side by side in one Flower simulation; point at its report."""
    from client.run_config import run_config_overrides
    from server.launch.flower_run import flwr_run
    from server.launch.run_cli import prepare_site_data
    from sites.config import InvalidSiteConfig, load_consortium, resolve_consortium
    from sites.data_root import run_data_dir
    from sites.pooling import write_pooled_table

    consortium_file = resolve_consortium(args.consortium)
    data_dir, runs_dir = run_data_dir(args.data_dir, consortium_file), args.runs_dir.resolve()
    consortium = load_consortium(consortium_file, data_root=data_dir)
    private = [s.name for s in consortium.training_sites if s.is_private]
    if private:
        raise InvalidSiteConfig(
            f"{consortium_file}: sites {private} train with DP; the transfer experiment trains "
            "each site in several regimes, each spending a whole budget, and pools their data. "
            "Run it on a consortium without `privacy` blocks (e.g. `default`)")
    prepare_site_data(consortium)
    write_pooled_table(consortium, data_dir=data_dir)  # before the nodes start: none of them writes
    run_name = args.run_name or "transfer-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if (runs_dir / run_name).exists():
        raise FileExistsError(f"{runs_dir / run_name}: a run of that name exists; choose another --run-name")
    run_config: dict[str, object] = {
        "consortium": str(consortium_file), "data-dir": "" if data_dir is None else str(data_dir),
        "runs-dir": str(runs_dir),
        "run-name": run_name, "experiment": "transfer",
        "experiment-regimes": args.regimes,
    }
    if args.rounds is not None:
        run_config["num-server-rounds"] = args.rounds
    run_config.update(run_config_overrides(args.set))
    status = flwr_run(run_config=run_config, num_supernodes=len(consortium.sites) + 1,
                      flwr_home=runs_dir / ".flwr", cpus_per_site=args.cpus_per_site,
                      gpus_per_site=args.gpus_per_site)
    if status != 0 or not (runs_dir / run_name / "transfer.json").exists():
        print("lang1-fl experiment transfer: the experiment failed; see the log above",
              file=sys.stderr)
        return 1
    print(f"report: {runs_dir / run_name / 'report.md'} (and report.html)")
    return 0
