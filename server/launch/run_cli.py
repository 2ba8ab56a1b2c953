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

from client.run_profiles import PROFILE_HELP
from sites.data_root import DATA_DIR_HELP

DEFAULT_RUNS_DIR = Path("runs")
"""Where the `lang1-fl` commands write runs unless told otherwise (the run config's `runs-dir`)."""
VERBOSE_HELP = ("show all of Flower's output (each record twice, its final metrics dump); by "
                "default the console shows our progress lines, warnings and errors")


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
    run.add_argument("--profile", metavar="NAME", help=PROFILE_HELP)
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a run-config key of pyproject.toml, e.g. --set tasks=mortality")
    run.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
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
        cpus_per_site=args.cpus_per_site, gpus_per_site=args.gpus_per_site, verbose=args.verbose,
    )
    return run_outcome(Path(run_config["runs-dir"]) / str(run_config["run-name"]), status)


def plan_run(args: argparse.Namespace, *, fixed: dict[str, object] | None = None,
             default_name: str = "") -> tuple[dict[str, object], int]:
    """Everything `lang1-fl run` does before Flower starts, cheapest checks first, so that bad
    input stops with one line and nothing written: every run-config value, the run's tasks
    against the sites, the run name, the base model, then the site data (checked, or generated),
    the privacy forecast and each site's memory plan. `fixed` are run-config keys the command
    sets itself (an experiment's); `default_name` the run name when none is given (else a UTC
    timestamp). Returns the run config (the overrides of pyproject.toml's: the run profile's
    values, then the command line's) and the number of sites."""
    from client.model import check_base, select_device
    from client.privacy.forecast import check_fits, forecast, render
    from client.run_config import default_run_config, run_config_overrides
    from client.run_profiles import profile_overrides
    from client.site import site_memory_plan
    from client.state import check_state_folder
    from server.run_tasks import resolve_run_tasks
    from server.settings import ServerSettings
    from sites.config import InvalidSiteConfig, load_consortium, resolve_consortium
    from sites.data_root import run_data_dir
    from sites.tasks import TASK_NAMES

    # 1. The run config: pyproject.toml's, the run profile's, the command line's overrides,
    # every value checked
    consortium_file = resolve_consortium(args.consortium)
    data_dir = run_data_dir(args.data_dir, consortium_file)  # sites/data_root.py's rule
    run_config: dict[str, object] = {
        **profile_overrides(args.profile),  # none of the keys below: the command line's own
        "consortium": str(consortium_file),
        "data-dir": "" if data_dir is None else str(data_dir),
        "runs-dir": str(args.runs_dir.resolve()),
        "run-name": args.run_name or default_name or datetime.now(UTC).strftime("%Y%m%d-%H%M%S"),
    }
    if args.rounds is not None:
        run_config["num-server-rounds"] = args.rounds
    run_config.update(run_config_overrides(args.set))
    run_config.update(fixed or {})
    settings = ServerSettings.from_run_config({**default_run_config(), **run_config})

    # 2. The consortium, and the run's tasks against every site (`all`: the tasks all sites have)
    consortium = load_consortium(settings.client.consortium, data_root=settings.client.data_dir)
    if settings.client.experiment == "transfer":
        refuse_private_sites(consortium)
    requested = str({**default_run_config(), **run_config}["tasks"])
    tasks = resolve_run_tasks(requested, consortium)
    if tasks != TASK_NAMES and requested.strip() == "all":
        print(f"tasks: all = {', '.join(tasks)} (the tasks every site of the consortium has)")
        run_config["tasks"] = ",".join(tasks)
        settings = ServerSettings.from_run_config({**default_run_config(), **run_config})

    # 3. The run name is free, and the base model with its scoring fits the tasks
    if settings.run_dir.exists():
        raise FileExistsError(f"{settings.run_dir}: a run of that name exists; choose another "
                              "--run-name")
    check_base(settings.client.model)

    # 4. The sites' data: each table validated (synthetic ones generated), state folders free
    prepare_site_data(consortium)
    for site in consortium.sites:  # a state folder another site claimed stops the run here
        check_state_folder(site.state_dir, site.name)

    # 5. The privacy forecast, which also stops a δ that is not below 1/n, or a run that a
    # site's data can no longer afford
    if any(site.is_private for site in consortium.training_sites):
        rows = forecast(consortium, rounds=settings.client.num_rounds,
                        local_steps=settings.client.local_steps)
        print(render(rows))
        check_fits(rows)

    # 6. Each training step must fit its site's device
    for site in consortium.training_sites:
        try:
            device = select_device(site.device)
        except (RuntimeError, ValueError) as error:  # a device this machine does not have
            raise InvalidSiteConfig(f"{consortium.source}: site {site.name!r}: {error}") from None
        plan = site_memory_plan(site, settings.client.model, device)
        print(plan.render(site.name))
        plan.check(site.name)
    return run_config, len(consortium.sites)


def refuse_private_sites(consortium) -> None:
    """The transfer experiment trains each site in several regimes, each spending a whole budget,
    and pools their data: it runs on consortia without DP sites only."""
    from sites.config import InvalidSiteConfig

    private = [s.name for s in consortium.training_sites if s.is_private]
    if private:
        raise InvalidSiteConfig(
            f"{consortium.source}: sites {private} train with DP; the transfer experiment trains "
            "each site in several regimes, each spending a whole budget, and pools their data. "
            "Run it on a consortium without `privacy` blocks (e.g. `default`)")


def _resume(args: argparse.Namespace) -> int:
    """Continue a killed run from its last checkpoint, with the run config it was started with."""
    from client.run_config import InvalidRunConfig, read_run_config
    from server.checkpoint import load_run_config
    from server.launch.flower_run import flwr_run
    from sites.config import load_consortium

    if args.set or args.profile or args.rounds is not None or args.run_name:
        raise InvalidRunConfig("`--resume` continues a run with the settings it started with; "
                              "drop --set, --profile, --rounds and --run-name")
    run_dir = args.resume.resolve()
    run_config = {**load_run_config(run_dir), "resume": True}
    if (run_dir / "metrics.json").exists():
        raise FileExistsError(f"{run_dir / 'metrics.json'}: that run finished; nothing to resume")
    consortium = load_consortium(read_run_config(run_config, "consortium"),
                                 data_root=read_run_config(run_config, "data-dir") or None)
    status = flwr_run(run_config=run_config, num_supernodes=len(consortium.sites),
                      flwr_home=Path(read_run_config(run_config, "runs-dir")) / ".flwr",
                      cpus_per_site=args.cpus_per_site, gpus_per_site=args.gpus_per_site,
                      verbose=args.verbose)
    return run_outcome(run_dir, status)


def prepare_site_data(consortium) -> None:
    """Simulation: every site's data is on this machine. Check each table (a malformed one, or
    a training site with nothing to train on, stops here with file, row and column; a missing
    one names where it was looked for and why) and generate missing synthetic ones."""
    from client.site import ensure_site_data
    from sites.site_check import check_site_data

    for site in consortium.sites:
        ensure_site_data(site, seed=consortium.seed)  # a real site's table is left as it is
        for warning in check_site_data(site).warnings:  # generated ones get the same check
            print(f"warning: {warning}")


def run_outcome(run_dir: Path, flwr_status: int) -> int:
    """`flwr run` exits 0 even when the ServerApp raised, so success is what the run recorded."""
    import json

    metrics = run_dir / "metrics.json"
    if flwr_status > 128 and not metrics.exists():  # flwr_run: stopped by a signal
        resume = (f"; continue it with `lang1-fl run --resume {run_dir}`" if run_dir.exists()
                  else "")
        print(f"lang1-fl run: stopped by signal {flwr_status - 128}; Flower's processes were "
              f"stopped{resume}", file=sys.stderr)
        return flwr_status
    outcome = json.loads(metrics.read_text())["run"]["outcome"] if metrics.exists() else None
    if flwr_status != 0 or outcome != "completed":
        reason = outcome or "the server stopped before writing metrics.json"
        print(f"lang1-fl run: the run failed ({reason}); see the log above", file=sys.stderr)
        return 1
    print(f"report: {run_dir / 'report.html'}")
    return 0
