"""The `lang1-fl` command: generate and check sites, run the federation and experiments, render
reports, forecast, verify and audit privacy (the `deploy` commands live in server/launch/deploy_cli.py).

Heavy imports (torch, transformers, flwr) happen inside the sub-commands, so `lang1-fl --help`
answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path

from client.run_config import run_config_overrides
from server.launch.deploy_cli import add_deploy_parser

DEFAULT_RUNS_DIR = Path("runs")
DEFAULT_DATA_DIR = Path("lang1-fl-data")


def _consortium_path(value: str) -> Path:
    from sites.config import resolve_consortium

    return resolve_consortium(value)


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
    from client.privacy.forecast import check_fits, forecast, render
    from client.state import check_state_folder
    from sites.config import load_consortium

    consortium_file = _consortium_path(args.consortium)
    data_dir, runs_dir = args.data_dir.resolve(), args.runs_dir.resolve()
    consortium = load_consortium(consortium_file, data_root=data_dir)
    prepare_site_data(consortium)
    for site in consortium.sites:  # a state folder another site claimed stops the run here
        check_state_folder(site.state_dir, site.name)
    if any(site.is_private for site in consortium.training_sites):
        # The privacy forecast, which also stops a δ that is not below 1/n, or a run that a
        # site's data can no longer afford, before Flower starts
        rounds, local_steps = _planned_steps(args)
        rows = forecast(consortium, rounds=rounds, local_steps=local_steps)
        print(render(rows))
        check_fits(rows)
    run_name = args.run_name or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    if (runs_dir / run_name).exists():
        raise FileExistsError(f"{runs_dir / run_name}: a run of that name exists; choose another --run-name")
    run_config: dict[str, object] = {
        "consortium": str(consortium_file),
        "data-dir": str(data_dir),
        "runs-dir": str(runs_dir),
        "run-name": run_name,
    }
    if args.rounds is not None:
        run_config["num-server-rounds"] = args.rounds
    run_config.update(run_config_overrides(args.set))
    return run_config, len(consortium.sites)


def _resume(args: argparse.Namespace) -> int:
    """Continue a killed run from its last checkpoint, with the run config it was started with."""
    from client.run_config import InvalidRunConfig
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
    consortium = load_consortium(run_config["consortium"], data_root=Path(run_config["data-dir"]))
    status = flwr_run(run_config=run_config, num_supernodes=len(consortium.sites),
                      flwr_home=Path(run_config["runs-dir"]) / ".flwr",
                      cpus_per_site=args.cpus_per_site, gpus_per_site=args.gpus_per_site)
    return run_outcome(run_dir, status)


def prepare_site_data(consortium) -> None:
    """Simulation: every site's data is on this machine. Validate each table (a malformed one
    stops here, with file, row and column) and generate missing synthetic ones."""
    from client.site import ensure_site_data
    from sites.dataset import read_site_table

    for site in consortium.sites:
        if site.data.path.exists():
            read_site_table(site)
        elif site.synthetic is None:
            raise FileNotFoundError(
                f"{site.data.path}: site {site.name!r} of {consortium.source} has no data there "
                "and no `synthetic` block to generate it from"
            )
        ensure_site_data(site, seed=consortium.seed)


def cmd_experiment_transfer(args: argparse.Namespace) -> int:
    """Every training regime side by side in one Flower simulation; point at its report."""
    from server.launch.flower_run import flwr_run
    from sites.config import InvalidSiteConfig, load_consortium
    from sites.pooling import write_pooled_table

    consortium_file = _consortium_path(args.consortium)
    data_dir, runs_dir = args.data_dir.resolve(), args.runs_dir.resolve()
    consortium = load_consortium(consortium_file, data_root=data_dir)
    private = [s.name for s in consortium.training_sites if s.is_private]
    if private:
        raise InvalidSiteConfig(
            f"{consortium_file}: sites {private} train with DP; the transfer experiment trains "
            "each site in several regimes, each spending a whole budget, and pools their data. "
            "Run it on a consortium without `privacy` blocks (e.g. `default`)")
    prepare_site_data(consortium)
    write_pooled_table(consortium, data_dir=data_dir)  # before the nodes start: none of them writes
    run_name = args.run_name or "transfer-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    if (runs_dir / run_name).exists():
        raise FileExistsError(f"{runs_dir / run_name}: a run of that name exists; choose another --run-name")
    run_config: dict[str, object] = {
        "consortium": str(consortium_file), "data-dir": str(data_dir), "runs-dir": str(runs_dir),
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


def _planned_steps(args: argparse.Namespace) -> tuple[int, int]:
    """Rounds and run-wide local steps (0 = each site's own) the run will use: the app's run
    config with the command line's overrides."""
    from client.run_config import planned_run_config, read_run_config

    config = planned_run_config(args.set, rounds=args.rounds)
    return (read_run_config(config, "num-server-rounds"), read_run_config(config, "local-steps"))


def cmd_generate(args: argparse.Namespace) -> int:
    from sites.cli import generate

    generate(_consortium_path(args.consortium), args.data_dir.resolve(), overwrite=args.overwrite,
             fmt=args.format)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from sites.cli import summarize
    from sites.config import load_site

    site = load_site(args.site, data_root=args.data_dir)
    print(summarize(site))
    print(_privacy_summary(site))
    return 0


def _privacy_summary(site) -> str:
    """The site's DP budget as Hospital IT declared it, δ checked against its data, and what its
    lifetime ledger for this data has spent already."""
    from client.privacy.budget import recorded_spend
    from client.privacy.ledger import read_ledger
    from client.privacy.plan import check_delta
    from client.state import SiteState
    from sites.dataset import count_training_units, dataset_fingerprint

    if site.is_external:
        return "privacy: external site, evaluated only (it never trains, so spends no budget)"
    if not site.is_private:
        return ("privacy: NO differential privacy (no enabled `privacy` block): the adapter this "
                "site sends carries no DP guarantee")
    privacy = site.privacy
    check_delta(site, count_training_units(site))
    state = SiteState.peek(site, dataset_fingerprint(site))
    spent = recorded_spend(read_ledger(state.ledger), None, delta=privacy.delta,
                           accountant=privacy.accountant)
    return (f"privacy: DP-SGD per {privacy.unit}, lifetime budget ε = "
            f"{privacy.lifetime_epsilon:g} at δ = {privacy.delta:g} for this data (spent so far: "
            f"ε = {spent.epsilon:.3f} over {spent.entries} rounds), ε = {privacy.run_allocation:g} "
            f"per run, clipping norm {privacy.max_grad_norm:g}, accountant {privacy.accountant}; "
            f"ledger {state.ledger}; `lang1-fl privacy forecast` shows the noise")


def cmd_report(args: argparse.Namespace) -> int:
    """(Re)write report.md and report.html: a transfer experiment's when the folder has
    `transfer.json`, else a run's from its `metrics.json`; print both paths."""
    folder = args.run_dir
    if (folder / "transfer.json").is_file():
        from server.report.transfer import write_transfer_report  # another command's module

        markdown = write_transfer_report(folder)
    elif (folder / "metrics.json").is_file():
        from server.report.markdown import write_report

        markdown = write_report(folder)
    else:
        raise FileNotFoundError(
            f"{folder}: no metrics.json (a run written by `lang1-fl run`) or transfer.json (a "
            "transfer experiment) there; pass the folder that holds one")
    print(markdown)
    print(markdown.with_suffix(".html"))
    return 0


def cmd_privacy_forecast(args: argparse.Namespace) -> int:
    """Per training site: σ and the ε the planned run will spend, before any note is read."""
    from client.privacy.forecast import forecast, render
    from client.site import ensure_site_data
    from sites.config import load_consortium

    consortium = load_consortium(_consortium_path(args.consortium), data_root=args.data_dir.resolve())
    rounds, local_steps = _planned_steps(args)
    for site in consortium.training_sites:  # synthetic sites are made as a run would make them
        ensure_site_data(site, seed=consortium.seed)
    print(render(forecast(consortium, rounds=rounds, local_steps=local_steps)))
    return 0


def cmd_privacy_verify(args: argparse.Namespace) -> int:
    """Check a site's signed ledger against its public key, and every epsilon against what the
    recorded mechanism provably spends."""
    from client.node_identity import NodeKeyError
    from client.privacy.verify import verify_ledger

    if args.public_key is None:
        print("lang1-fl privacy verify: pass --public-key KEY.pub, the public key the site signs "
              "its ledger with: its registered SuperNode public key (the `.pub` that `lang1-fl "
              "deploy site-key` wrote), or, for a simulated site, `<state folder>/signing-key.pub` "
              f"(here probably {args.ledger.parent / 'signing-key.pub'}). Take it from where the "
              "site registered it, not from beside the ledger: whoever can rewrite the ledger can "
              "replace a key kept next to it.", file=sys.stderr)
        return 2
    # dp-accounting logs each fractional RDP order whose series did not converge and drops that
    # order; dropping orders only makes the re-derived ε larger (safer), so these are not findings.
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        report = verify_ledger(args.ledger, public_key=args.public_key, head_sha256=args.head)
    except NodeKeyError as error:
        print(f"lang1-fl: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.ok else 1


def cmd_privacy_audit(args: argparse.Namespace) -> int:
    """Audit one site empirically (client/privacy/audit.py); exit 1 with an ALARM when the
    measured ε_lower exceeds the accounted ε."""
    from client.privacy.audit import run_audit
    from client.privacy.audit_cli import alarm, audited_site, render
    from client.run_config import planned_run_config
    from client.settings import ClientSettings

    # A consortium's data is where `lang1-fl run` keeps it; a site YAML's beside it
    data_dir = args.data_dir or (DEFAULT_DATA_DIR if args.site else None)
    site = audited_site(args.site_yaml, site_name=args.site,
                        data_dir=data_dir.resolve() if data_dir else None)
    settings = ClientSettings.from_run_config(planned_run_config(args.set, rounds=None))
    try:
        result = run_audit(site, settings, canaries=args.canaries, guesses=args.guesses,
                           rounds=args.rounds, private=not args.no_dp, seed=args.seed)
    except ValueError as error:  # a bad --canaries/--guesses/--rounds or an external site
        print(f"lang1-fl privacy audit: {error}", file=sys.stderr)
        return 2
    print(render(result))
    if result.alarm:
        print(alarm(result), file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lang1-fl", description="Federated LoRA finetuning of a clinical language model."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a federation (Flower simulation) and write its report")
    run.add_argument("--consortium", default="default", help="consortium YAML (default: the shipped one)")
    run.add_argument("--rounds", type=int, help="number of federated rounds")
    run.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="site data folder")
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

    sites = commands.add_parser("sites", help="generate or check site data").add_subparsers(
        dest="sites_command", required=True
    )
    generate = sites.add_parser("generate", help="write a consortium's synthetic hospitals to disk")
    generate.add_argument("consortium", nargs="?", default="default")
    generate.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    generate.add_argument("--format", choices=("parquet", "jsonl", "csv"), default=None,
                          help="override the format named in the site YAMLs")
    generate.add_argument("--overwrite", action="store_true")
    generate.set_defaults(handler=cmd_generate)
    check = sites.add_parser("check", help="validate a site's YAML and data locally; print a summary")
    check.add_argument("site", type=Path)
    check.add_argument("--data-dir", type=Path, default=None,
                       help="folder relative data paths resolve against (default: the YAML's)")
    check.set_defaults(handler=cmd_check)

    privacy = commands.add_parser("privacy", help="privacy: forecast, verify ledgers, audit").add_subparsers(
        dest="privacy_command", required=True
    )
    verify = privacy.add_parser(
        "verify", help="check a site's signed privacy ledger: signatures, hash chain, budgets, and "
        "every epsilon against what the recorded DP-SGD steps provably spend",
        description="Check one site's privacy ledger and print the first bad line (exit 1) or a "
        "summary (exit 0): every entry's signature against the site's public key; the hash chain, "
        "and its head against --head; site, dataset, privacy unit, accountant and delta constant; "
        "rounds increasing within each run; no entry over its lifetime budget or per-run cap; and "
        "every epsilon, lifetime and per run, at or above a lower bound on what the recorded "
        "(sigma, q, steps) provably spend (dp-accounting's optimistic PLD), with dp-accounting's "
        "RDP or PLD shown beside it. The check is one-sided: overstating a spend is allowed."
    )
    verify.add_argument("ledger", type=Path, help="one site's ledger: <state folder>/<dataset>/"
                        "privacy-ledger.jsonl (`lang1-fl sites check` prints its path)")
    verify.add_argument("--public-key", type=Path, default=None, metavar="KEY.pub",
                        help="required: the site's public key, as registered (its SuperNode "
                        "`.pub`, or <state folder>/signing-key.pub for a simulated site)")
    verify.add_argument("--head", default=None, metavar="SHA256",
                        help="the last entry's hash as the site reported it (catches truncation)")
    verify.set_defaults(handler=cmd_privacy_verify)
    forecast = privacy.add_parser(
        "forecast", help="print each training site's noise multiplier and the epsilon the planned "
        "run will spend (reads only the split column of each table)"
    )
    forecast.add_argument("consortium", nargs="?", default="default")
    forecast.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    forecast.add_argument("--rounds", type=int, help="number of federated rounds (default: the app's)")
    forecast.add_argument("--set", action="append", metavar="KEY=VALUE",
                          help="run-config override, as for `lang1-fl run` (e.g. local-steps=20)")
    forecast.set_defaults(handler=cmd_privacy_forecast)
    _add_audit_parser(privacy)

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
    transfer.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    transfer.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR)
    transfer.add_argument("--run-name", default="", help="folder name (default: transfer-<UTC time>)")
    transfer.add_argument("--cpus-per-site", type=int, default=1)
    transfer.add_argument("--gpus-per-site", type=float, default=0.0)
    transfer.add_argument("--set", action="append", metavar="KEY=VALUE",
                          help="run-config override, as for `lang1-fl run`")
    transfer.set_defaults(handler=cmd_experiment_transfer)

    report = commands.add_parser(
        "report", help="(re)write report.md and report.html from a run's metrics.json (or a "
        "transfer experiment's transfer.json)")
    report.add_argument("run_dir", type=Path, metavar="DIR",
                        help="a run folder (metrics.json) or transfer experiment (transfer.json)")
    report.set_defaults(handler=cmd_report)
    add_deploy_parser(commands)
    return parser


def _add_audit_parser(privacy: argparse._SubParsersAction) -> None:
    audit = privacy.add_parser(
        "audit", help="train one site as configured with canary encounters planted by coin "
        "flips, guess which it trained on, and print the empirical lower bound ε_lower beside "
        "the accounted ε (exit 1 with an ALARM when above: DP is broken); writes and sends "
        "nothing")
    audit.add_argument("site_yaml", metavar="SITE_YAML",
                       help="the site's YAML; with --site, a consortium (`default`, `private`, "
                       "or a consortium YAML)")
    audit.add_argument("--site", default=None, metavar="NAME",
                       help="audit this site of the consortium SITE_YAML")
    audit.add_argument("--data-dir", type=Path, default=None,
                       help="folder relative data paths resolve against (default: the site "
                       f"YAML's folder; {DEFAULT_DATA_DIR} for a consortium)")
    audit.add_argument("--canaries", type=int, default=1000,  # client.privacy.audit's default
                       help="m, canaries planted, each trained on with probability 1/2")
    audit.add_argument("--guesses", type=int, default=None, metavar="N",
                       help="a fixed, even number of guesses, half in and half out (default: the "
                       "best of a fixed grid, each at beta divided by its size)")
    audit.add_argument("--rounds", type=int, default=None,
                       help="rounds to train (default: the run config's num-server-rounds)")
    audit.add_argument("--no-dp", action="store_true",
                       help="train the same site without DP (the non-private arm)")
    audit.add_argument("--seed", type=int, default=None,
                       help="the audit's seed for canaries and coins (default: fresh, printed)")
    audit.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="run-config override, as for `lang1-fl run` (e.g. local-steps=20)")
    audit.set_defaults(handler=cmd_privacy_audit)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from client.privacy.forecast import RunDoesNotFit
    from client.run_config import InvalidRunConfig
    from client.state import StateFolderClaimed
    from sites.config import InvalidSiteConfig
    from sites.dataset import InvalidSiteData

    try:
        return args.handler(args)
    except (InvalidSiteConfig, InvalidSiteData, InvalidRunConfig, FileNotFoundError,
            FileExistsError, StateFolderClaimed, RunDoesNotFit) as error:
        print(f"lang1-fl: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
