"""The Flower ServerApp: the consortium coordinator.

It reads the run configuration once, learns which node is which hospital (every site, or the
start quorum once `start-wait` has passed; later sites join between rounds), starts every site from
the same initial adapter, evaluates the untrained model everywhere (round 0), runs the federated
rounds with the chosen strategy — training sites train, every site including the external health
system is evaluated each round — selects the best round on validation, asks every site once
more for that round's test AUROC intervals (the only ones the report shows), and writes the run
directory: that round's adapter, `metrics.json` and `report.md`/`report.html`. With
`experiment = "transfer"` it runs the transfer experiment instead (server/transfer/experiment.py).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from functools import partial

import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from client.adapter_export import save_adapter
from client.model import build_model, load_trainable_state, trainable_state
from client.progress import show_progress
from client.run_config import InvalidRunConfig
from server.checkpoint import Checkpoint, RoundCheckpointer, load_checkpoint, save_run_config
from server.discovery import SiteDiscovery, discover_sites
from server.grid_waits import shorten_grid_waits
from server.late_sites import admit_late_sites
from server.ledger_query import collect_ledgers
from server.packed_grid import deployment_grid
from server.process_memory import peak_rss_bytes
from server.report.console_summary import closing_summary
from server.report.markdown import write_report
from server.report.metrics_file import write_metrics
from server.report.model_card import write_run_model_card
from server.round_progress import RoundProgress
from server.round_selection import select_round
from server.run_tasks import check_run_tasks
from server.settings import ServerSettings
from server.transfer.experiment import run_transfer_experiment
from sites.config import load_consortium
from sites.pooling import with_pooled_site
from strategies import build_strategy, training_sites_needed
from strategies.continued_rounds import ContinuedRounds
from strategies.exchange import INTERVALS_KEY

log = logging.getLogger(__name__)

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the federation (or an experiment) end to end and leave a run directory behind."""
    started, started_clock = time.time(), time.monotonic()
    show_progress()
    shorten_grid_waits(grid)  # deployed: replies asked for every 0.5 s, not Flower's 3 s
    grid = deployment_grid(grid)  # deployed: each adapter travels as one array, not 34
    # 1. Settings and consortium, read and validated once
    settings = ServerSettings.from_run_config(context.run_config)
    consortium = load_consortium(settings.client.consortium, data_root=settings.client.data_dir)
    # A task some site lacks would fail there every round (`flwr run .` has no pre-flight)
    check_run_tasks(settings.client.model.tasks, consortium, value=str(context.run_config["tasks"]))
    if settings.client.experiment == "transfer":  # simulation only: one more node, the pooled site
        consortium = with_pooled_site(consortium, data_dir=settings.client.data_dir)
    quorum = _start_quorum(settings, consortium)  # a bad `min-train-sites` fails before any wait
    run_dir = settings.run_dir
    checkpoint = _open_run_dir(run_dir, settings, dict(context.run_config))

    # 2. Which node is which hospital: every site within `start-wait`, or the start quorum
    discovery = SiteDiscovery(grid, consortium)
    roster = discover_sites(grid, consortium, timeout=settings.start_wait, discovery=discovery,
                            training_quorum=quorum)
    if settings.client.experiment == "transfer":
        run_transfer_experiment(grid, settings=settings, consortium=consortium, roster=roster,
                                run_dir=run_dir)
        return

    # 3. The initial adapter and heads: the same deterministic builder every site uses
    model = build_model(settings.client.model, device=torch.device("cpu"), base_weights=False)
    initial = ArrayRecord({k: Array(v) for k, v in trainable_state(model).items()})

    # 4. The strategy, told which sites may train; it says what round 1 starts from
    strategy = build_strategy(
        settings.strategy, roster=roster, min_train_sites=settings.min_train_sites,
        client_dp=settings.client_dp,  # used by `dp-fedavg` only
        options=settings.options,
    )
    initial = strategy.initial_arrays(initial)
    scored = ConfigRecord({"splits": "validation,test", "run-name": settings.run_name})
    progress = RoundProgress(  # one console line per round
        num_rounds=settings.client.num_rounds, tasks=settings.client.model.tasks,
        training_sites=tuple(s.name for s in consortium.training_sites),
        external_sites=tuple(s.name for s in consortium.external_sites),
        started=started_clock, criterion=settings.round_selection)
    if checkpoint is None:
        # 5. Round 0: the untrained model, evaluated at every site; checkpointed as round 0
        round_zero = strategy.configure_evaluate(0, initial, scored, grid)
        strategy.aggregate_evaluate(0, grid.send_and_receive(round_zero,
                                                             timeout=settings.round_timeout))
        kept = RoundCheckpointer(run_dir=run_dir, strategy=strategy)
        kept(0, initial)
        progress(0, strategy.run_log)
    else:
        # 5'. A resumed run: its records and every round's adapter, from the last checkpoint
        log.info("resuming %s after round %d", run_dir, checkpoint.round)
        strategy.resume_from(checkpoint.run_log)
        strategy.restore_state(checkpoint.strategy_state)
        kept = RoundCheckpointer(run_dir=run_dir, strategy=strategy, arrays=checkpoint.arrays,
                                 offset=checkpoint.round)

    # 6. Federated rounds: train at training sites, evaluate everywhere; checkpoint every round
    done = kept.offset
    ContinuedRounds(strategy, offset=done).start(
        grid=grid,
        initial_arrays=kept[done],
        num_rounds=settings.client.num_rounds - done,
        timeout=settings.round_timeout,
        train_config=ConfigRecord({"run-name": settings.run_name}),  # names the sites' ledgers
        evaluate_config=scored,
        evaluate_fn=partial(_after_round, kept=kept, progress=progress, strategy=strategy,
                            discovery=discovery, num_rounds=settings.client.num_rounds),
    )

    # 7. What each site's ledger holds now (late joiners' too): the sites' own accounts
    ledgers = collect_ledgers(grid, strategy.roster, run_name=settings.run_name,
                              timeout=settings.round_timeout)

    # 8. The best round on validation (never test): its adapter is the run's model
    selection = select_round(strategy.run_log.evaluation, sites=[s.name for s in
                             consortium.training_sites], tasks=settings.client.model.tasks,
                             num_rounds=settings.client.num_rounds,
                             criterion=settings.round_selection)

    # 9. The selected round's test AUROC intervals: asked once, of that round's adapter (the
    #    rounds' evaluations skip the bootstrap: the report shows this round's intervals only)
    strategy.aggregate_intervals(selection.round, grid.send_and_receive(
        strategy.configure_evaluate(selection.round, kept[selection.round], ConfigRecord(
            {"splits": "test", INTERVALS_KEY: True, "run-name": settings.run_name}), grid),
        timeout=settings.round_timeout))

    # 10. The selected adapter (loadable by plain peft), metrics and report
    model, model_settings = _load_selected(strategy, model, kept[selection.round], settings)
    save_adapter(model, run_dir / "adapter", settings=model_settings)
    trained = len(strategy.run_log.skipped_rounds) < settings.client.num_rounds
    outcome = "completed" if trained else "no round trained"
    metrics_path = write_metrics(
        run_dir,
        outcome=outcome,
        settings=settings,
        consortium=consortium,
        run_log=strategy.run_log,
        model=model,
        duration_s=time.time() - started,
        selection=selection,
        ledgers=ledgers,
    )
    report_path = write_report(run_dir, metrics_path)
    metrics = json.loads(metrics_path.read_text())
    write_run_model_card(run_dir / "adapter", metrics)  # the card, with the reported results
    log.info("%s", closing_summary(metrics, run_dir))
    if not trained:  # `flwr run` exits 0 either way: `lang1-fl run` reads the outcome instead
        raise RuntimeError(
            f"no round trained: every round had fewer trained sites than strategy "
            f"{settings.strategy!r} requires (`min-train-sites`={settings.min_train_sites}; "
            f"`dp-fedavg` needs all); failures and declined rounds are listed in {report_path}"
        )


def _after_round(server_round: int, arrays: ArrayRecord, *, kept: RoundCheckpointer,
                 progress: RoundProgress, strategy, discovery: SiteDiscovery,
                 num_rounds: int) -> None:
    """Flower's hook after each round, and once before the first for the arrays it starts from
    (the last round done, already announced): the server's peak memory so far, checkpoint, the
    round's console line, then the sites that connected since take part from the next round."""
    if server_round > 0:
        peak = peak_rss_bytes()
        if peak is not None:
            timing = strategy.run_log.timing.setdefault(server_round + kept.offset, {})
            timing["server_peak_rss_bytes"] = float(peak)
    kept(server_round, arrays)
    done = server_round + kept.offset
    if server_round > 0:
        progress(done, strategy.run_log)
    if done < num_rounds:
        admit_late_sites(discovery, strategy, next_round=done + 1)


def _start_quorum(settings: ServerSettings, consortium) -> int | None:
    """Training sites the run needs to start once `start-wait` has passed (every external site
    is awaited too); None for the transfer experiment, which needs every site."""
    if settings.client.experiment:
        return None
    trainers = len(consortium.training_sites)
    needed = training_sites_needed(settings.strategy, min_train_sites=settings.min_train_sites,
                                   options=settings.options, num_training_sites=trainers)
    if needed > trainers:
        raise InvalidRunConfig(
            f"run config: `min-train-sites` is {settings.min_train_sites} and strategy "
            f"{settings.strategy!r} needs {needed} training sites, but {consortium.source} has "
            f"{trainers}; lower `min-train-sites` (or `tolerated-bad-sites`)")
    return needed


def _load_selected(strategy, model, arrays: ArrayRecord, settings: ServerSettings):
    """The model holding a global state as a peft adapter and heads, and the settings it is built
    with: `model` itself, or one of another rank when the strategy's state is not the run's
    adapter (FLoRA's stacked update)."""
    lora, state = strategy.peft_state({k: v.numpy() for k, v in arrays.items()})
    run = settings.client.model
    model_settings = run if lora is None else replace(run, lora=replace(
        run.lora, r=lora.r, alpha=lora.alpha, dropout=lora.dropout))
    if model_settings != run:
        model = build_model(model_settings, device=torch.device("cpu"), base_weights=False)
    load_trainable_state(model, state)
    return model, model_settings


def _open_run_dir(run_dir, settings: ServerSettings, run_config: dict) -> Checkpoint | None:
    """A new run gets a fresh directory (and its run config, for `--resume`); a resumed run
    gets its last checkpoint back."""
    if settings.resume:
        if settings.client.experiment:
            raise InvalidRunConfig("run config: `resume` applies to a federation run, not to "
                                   f"experiment {settings.client.experiment!r}; start it afresh")
        checkpoint = load_checkpoint(run_dir)
        if checkpoint.round >= settings.client.num_rounds:
            log.info("%s: all %d rounds were done; writing its results", run_dir, checkpoint.round)
        return checkpoint
    if run_dir.exists():
        raise InvalidRunConfig(f"run config: run directory {run_dir} exists; choose another "
                               "`run-name`, or resume it (`lang1-fl run --resume RUN_DIR`)")
    run_dir.mkdir(parents=True)
    save_run_config(run_dir, run_config)
    log.info("run directory: %s", run_dir)
    return None
