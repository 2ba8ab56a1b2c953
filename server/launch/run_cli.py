"""`lang1-fl run`: check or generate the sites' data, forecast privacy, run the Flower simulation
(server/launch/flower_run.py), and point at the report; `--resume` continues a killed run.

The `lang1-fl` entry point (server/cli.py) attaches this parser. Heavy imports happen inside the
handlers, so `lang1-fl --help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from sites.data_root import DATA_DIR_HELP

DEFAULT_RUNS_DIR = Path("runs")
"""Where the `lang1-fl` commands write runs unless told otherwise (the run config's `runs-dir`)."""


def add_run_parser(commands: argparse._SubParsersAction) -> None:
    """`lang1-fl run ...`."""
    run = commands.add_parser("run", help="run a federation (Flower simulation) and write its report")
    run.add_argument("--consortium", default="default", help="consortium YAML (default: the shipped one)")
    run.add_argument("--rounds", type=int, help="number of federated rounds")
    run.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    run.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="where runs are written")
    run.add_argument("--run-name", default="", help="run folder name (default: UTC timestamp)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="continue a killed run from its last checkpointed round, with the "
                     "settings it was started with")
    run.add_argument("--gpus-per-site", type=float, default=0.0,
                     help="share of a GPU per simulated site (e.g. 0.25: four sites per GPU); "
                     "sites with device 'auto' then train on it")
    run.add_argument("--cpus-per-site", type=int, default=1,
                     help="CPU cores per simulated site (1: two sites train in parallel on 2 cores)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a run-config key of pyproject.toml, e.g. --set tasks=mortality")
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """Generate missing synthetic sites, run the Flower simulation, point at the report."""
    if args.resume is not None:
        return _resume(args)
    from server.launch.flower_run import flwr_run

    run_config, num_sites = plan_run(args)
    status = flwr_run(
        run_config=run_config,
        num_supernodes=num_sites,
        flwr_home=Path(run_config["runs-dir"]) / ".flwr",
        cpus_per_site=args.cpus_per_site, gpus_per_site=args.gpus_per_site,
    )
    return run_outcome(Path(run_config["runs-dir"]) / str(run_config["run-name"]), status)


def plan_run(args: argparse.Namespace) -> tuple[dict[str, object], int]:
    """Everything `lang1-fl run` does before Flower starts: site data checked or generated, the
    privacy forecast printed, the run name checked against runs and ledgers. Returns the run
    config (the command line's overrides of pyproject.toml's) and the number of sites."""
    from client.model import check_base, select_device
    from client.privacy.cli import planned_steps
    from client.privacy.forecast import check_fits, forecast, render
    from client.run_config import default_run_config, run_config_overrides
    from client.site import site_memory_plan
    from client.state import check_state_folder
    from server.settings import ServerSettings
    from sites.config import InvalidSiteConfig, load_consortium, resolve_consortium
    from sites.data_root import run_data_dir

    consortium_file = resolve_consortium(args.consortium)
    data_dir, runs_dir = run_data_dir(args.data_dir, consortium_file), args.runs_dir.resolve()
    consortium = load_consortium(consortium_file, data_root=data_dir)
    prepare_site_data(consortium)
    for site in consortium.sites:  # a state folder another site claimed stops the run here
        check_state_folder(site.state_dir, site.name)
    if any(site.is_private for site in consortium.training_sites):
        # The privacy forecast, which also stops a δ that is not below 1/n, or a run that a
        # site's data can no longer afford, before Flower starts
        rounds, local_steps = planned_steps(args.set, rounds=args.rounds)
        rows = forecast(consortium, rounds=rounds, local_steps=local_steps)
        print(render(rows))
        check_fits(rows)
    run_name = args.run_name or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if (runs_dir / run_name).exists():
        raise FileExistsError(f"{runs_dir / run_name}: a run of that name exists; choose another --run-name")
    run_config: dict[str, object] = {
        "consortium": str(consortium_file),
        "data-dir": "" if data_dir is None else str(data_dir),
        "runs-dir": str(runs_dir),
        "run-name": run_name,
    }
    if args.rounds is not None:
        run_config["num-server-rounds"] = args.rounds
    run_config.update(run_config_overrides(args.set))
    # Every run-config value, and the base model with its scoring, checked here rather than in
    # the first round
    settings = ServerSettings.from_run_config({**default_run_config(), **run_config})
    check_base(settings.client.model)
    for site in consortium.training_sites:  # each training step must fit its site's device
        try:
            device = select_device(site.device)
        except (RuntimeError, ValueError) as error:  # a device this machine does not have
            raise InvalidSiteConfig(f"{consortium_file}: site {site.name!r}: {error}") from None
        plan = site_memory_plan(site, settings.client.model, device)
        print(plan.render(site.name))
        plan.check(site.name)
    return run_config, len(consortium.sites)


def _resume(args: argparse.Namespace) -> int:
    """Continue a killed run from its last checkpoint, with the run config it was started with."""
    from client.run_config import InvalidRunConfig, read_run_config
    from server.checkpoint import load_run_config
    from server.launch.flower_run import flwr_run
    from sites.config import load_consortium

    if args.set or args.rounds is not None or args.run_name:
        raise InvalidRunConfig("`--resume` continues a run with the settings it started with; "
                              "drop --set, --rounds and --run-name")
    run_dir = args.resume.resolve()
    run_config = {**load_run_config(run_dir), "resume": True}
    if (run_dir / "metrics.json").exists():
        raise FileExistsError(f"{run_dir / 'metrics.json'}: that run finished; nothing to resume")
    consortium = load_consortium(read_run_config(run_config, "consortium"),
                                 data_root=read_run_config(run_config, "data-dir") or None)
    status = flwr_run(run_config=run_config, num_supernodes=len(consortium.sites),
                      flwr_home=Path(read_run_config(run_config, "runs-dir")) / ".flwr",
                      cpus_per_site=args.cpus_per_site, gpus_per_site=args.gpus_per_site)
    return run_outcome(run_dir, status)


def prepare_site_data(consortium) -> None:
    """Simulation: every site's data is on this machine. Check each table (a malformed one, or
    a training site with nothing to train on, stops here with file, row and column; a missing
    one names where it was looked for and why) and generate missing synthetic ones."""
    from client.site import ensure_site_data
    from sites.site_check import check_site_data

    for site in consortium.sites:
        if site.data.path.exists() or site.synthetic is None:
            for warning in check_site_data(site).warnings:
                print(f"warning: {warning}")
        ensure_site_data(site, seed=consortium.seed)


def run_outcome(run_dir: Path, flwr_status: int) -> int:
    """`flwr run` exits 0 even when the ServerApp raised, so success is what the run recorded."""
    import json

    metrics = run_dir / "metrics.json"
    outcome = json.loads(metrics.read_text())["run"]["outcome"] if metrics.exists() else None
    if flwr_status != 0 or outcome != "completed":
        reason = outcome or "the server stopped before writing metrics.json"
        print(f"lang1-fl run: the run failed ({reason}); see the log above", file=sys.stderr)
        return 1
    print(f"report: {run_dir / 'report.md'}")
    return 0
