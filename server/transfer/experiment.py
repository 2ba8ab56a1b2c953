"""The transfer experiment: every training regime side by side, on the same nodes, in one run.

ReMedE's central question is transfer — a model finetuned at one health system, scored at another.
A coordinator needs it answered with the honest baselines beside the federated model, all with the
same base, LoRA configuration, local steps, seeds and round selection:

- `untrained`: the initial adapter and heads (round 0);
- `federated`: every training site, the run's strategy;
- `local:<site>`: that site alone (what it could do without the consortium);
- `without:<site>`: the federation without that site (what one hospital adds);
- `pooled`: one model trained centrally on all training sites' training rows — the upper reference
  a real consortium cannot run (simulation only; see sites/pooling.py);
- `single:<task>`: the federation trained on one task, for the single- vs joint-task table.

Each regime is a Flower `Strategy.start` over a roster narrowed to its training sites, selects its
best round on those sites' validation splits, and only then is scored once on every site's test
data, the external system's whole table included. The results go to `transfer.json` and the
report (server/report/transfer.py).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from client.model import ModelSettings, build_model, trainable_state
from server.report.metrics_file import nest_site_metrics
from server.round_selection import CRITERIA, RoundArrays, select_round
from server.settings import TRAINED_KINDS, ServerSettings
from sites.config import ConsortiumConfig
from sites.files import write_atomic
from sites.pooling import POOLED_SITE
from strategies import SiteRoster, build_strategy
from strategies.exchange import INTERVALS_KEY
from strategies.replies import replying_node

log = logging.getLogger(__name__)

RegimeKind = Literal["untrained", "federated", "local", "leave-one-out", "pooled", "single-task"]
TRANSFER_FILE = "transfer.json"


class TransferExperimentError(RuntimeError):
    """A regime could not be trained or scored completely; no partial matrix is written."""


@dataclass(frozen=True)
class Regime:
    """Who trains, on which tasks."""

    name: str
    kind: RegimeKind
    trained_on: tuple[str, ...]
    tasks: tuple[str, ...]


def plan_regimes(training_sites: tuple[str, ...], tasks: tuple[str, ...], *, pooled: bool,
                 kinds: frozenset[str] = frozenset(TRAINED_KINDS)) -> list[Regime]:
    """The regimes of the experiment, in the order the matrix shows them: the untrained model and
    every regime of the chosen `kinds` that applies."""
    everyone = tuple(training_sites)
    regimes = [Regime("untrained", "untrained", (), tasks)]
    if "federated" in kinds:
        regimes.append(Regime("federated", "federated", everyone, tasks))
    if "local" in kinds:
        regimes += [Regime(f"local:{s}", "local", (s,), tasks) for s in everyone]
    if "leave-one-out" in kinds and len(everyone) > 2:  # without one of two = the other alone
        regimes += [Regime(f"without:{s}", "leave-one-out", tuple(o for o in everyone if o != s),
                           tasks) for s in everyone]
    if "pooled" in kinds and pooled:
        regimes.append(Regime("pooled", "pooled", (POOLED_SITE,), tasks))
    if "single-task" in kinds and len(tasks) > 1:
        regimes += [Regime(f"single:{t}", "single-task", everyone, (t,)) for t in tasks]
    return regimes


def evaluate_at(grid: Grid, roster: SiteRoster, sites: tuple[str, ...], arrays: ArrayRecord,
                config: ConfigRecord, *, timeout: float, label: str) -> dict[str, dict[str, float]]:
    """Send `arrays` to `sites` for evaluation; their flat metrics by site name. Any failure
    raises: a transfer matrix with a silently missing cell would mislead."""
    nodes = {e.node_id: e.name for e in roster.entries if e.name in sites}
    messages = [Message(RecordDict({"arrays": arrays, "config": config}), dst_node_id=node,
                        message_type=MessageType.EVALUATE, group_id=label) for node in nodes]
    results: dict[str, dict[str, float]] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        site = nodes[replying_node(reply, messages, nodes=nodes)]
        if reply.has_error():
            raise TransferExperimentError(f"{label}: site {site!r} failed to evaluate: "
                                          f"{reply.error.reason}")
        results[site] = {k: v for k, v in reply.content["metrics"].items()}
    missing = sorted(set(nodes.values()) - set(results))
    if missing:
        raise TransferExperimentError(f"{label}: no evaluation from sites {missing} within "
                                      f"{timeout:.0f} s")
    return results


def _initial_arrays(settings: ModelSettings) -> ArrayRecord:
    """The regime's starting adapter and heads: the builder and seed every site uses."""
    model = build_model(settings, device=torch.device("cpu"), base_weights=False)
    return ArrayRecord({k: Array(v) for k, v in trainable_state(model).items()})


def train_regime(grid: Grid, regime: Regime, *, settings: ServerSettings, roster: SiteRoster,
                 consortium: ConsortiumConfig) -> tuple[ArrayRecord, dict]:
    """Train `regime` with the run's strategy; its selected round's adapter and a summary."""
    tasks = ",".join(regime.tasks)
    trainers = frozenset(regime.trained_on)
    strategy = build_strategy(settings.strategy, roster=roster.restrict(trainers=trainers,
                              evaluated=trainers), min_train_sites=len(trainers),
                              client_dp=settings.client_dp, options=settings.options)
    train_config = {"run-name": f"{settings.run_name}-{regime.name.replace(':', '-')}",
                    "tasks": tasks}
    if regime.kind == "pooled":  # as many examples per round as the whole federation
        train_config["local-steps"] = pooled_local_steps(consortium, settings.client.local_steps)
    kept = RoundArrays()
    strategy.start(grid=grid, initial_arrays=_initial_arrays(
                       replace(settings.client.model, tasks=regime.tasks)),
                   num_rounds=settings.client.num_rounds, timeout=settings.round_timeout,
                   train_config=ConfigRecord(train_config),
                   evaluate_config=ConfigRecord({"splits": "validation", "tasks": tasks}),
                   evaluate_fn=kept)
    run_log = strategy.run_log
    problems = [f"round {r}: {f}" for r, fs in sorted(run_log.failures.items()) for f in fs]
    problems += [f"round {r} skipped" for r in run_log.skipped_rounds]
    if problems:
        raise TransferExperimentError(f"regime {regime.name!r}: " + "; ".join(problems))
    selection = select_round(run_log.evaluation, sites=regime.trained_on, tasks=regime.tasks,
                             num_rounds=settings.client.num_rounds,
                             criterion=settings.round_selection)
    summary = {"selected_round": selection.round,
               "validation_per_round": {str(r): v for r, v in selection.score_per_round.items()}}
    return kept[selection.round], summary


def pooled_local_steps(consortium: ConsortiumConfig, run_steps: int) -> int:
    """The pooled site's steps per round: the sum over the hospitals (never the pooled site
    itself) of what each trains per round — the run config's `local-steps`, else its own."""
    return sum(run_steps or s.training.local_steps for s in consortium.training_sites
               if s.name != POOLED_SITE)


def _cells(flat: dict[str, dict[str, float]], tasks: tuple[str, ...]) -> dict:
    return {site: nest_site_metrics(values, tasks)["tasks"] for site, values in flat.items()}


def run_transfer_experiment(grid: Grid, *, settings: ServerSettings,
                            consortium: ConsortiumConfig, roster: SiteRoster,
                            run_dir: Path) -> Path:
    """Train and score every regime; write `transfer.json` and the report; return the report."""
    started = time.time()
    evaluated = tuple(s.name for s in consortium.sites if s.name != POOLED_SITE)
    training = tuple(s.name for s in consortium.training_sites if s.name != POOLED_SITE)
    tasks = settings.client.model.tasks
    pooled = any(s.name == POOLED_SITE for s in consortium.sites)
    regimes = plan_regimes(training, tasks, pooled=pooled, kinds=settings.regimes)
    log.info("transfer experiment: %d regimes: %s", len(regimes), ", ".join(r.name for r in regimes))
    entries, cells = [], {}
    for index, regime in enumerate(regimes, start=1):
        log.info("regime %d/%d: %s (training: %s)", index, len(regimes), regime.name,
                 ", ".join(regime.trained_on) or "none")
        if regime.kind == "untrained":
            arrays = _initial_arrays(settings.client.model)
            summary = {"selected_round": 0, "validation_per_round": {}}
        else:
            arrays, summary = train_regime(grid, regime, settings=settings, roster=roster,
                                           consortium=consortium)
        scores = evaluate_at(grid, roster, evaluated, arrays,
                             ConfigRecord({"splits": "test", "tasks": ",".join(regime.tasks),
                                           INTERVALS_KEY: True}),
                             timeout=settings.round_timeout, label=f"{regime.name}/test")
        cells[regime.name] = _cells(scores, regime.tasks)
        entries.append({"name": regime.name, "kind": regime.kind,
                        "trained_on": list(regime.trained_on), "tasks": list(regime.tasks),
                        **summary})
    record = transfer_record(settings=settings, consortium=consortium, regimes=entries,
                             cells=cells, duration_s=time.time() - started)
    return write_transfer(run_dir, record)


def transfer_record(*, settings: ServerSettings, consortium: ConsortiumConfig, regimes: list,
                    cells: dict, duration_s: float) -> dict:
    """`transfer.json`'s content: the setting, the regimes and the matrix cells."""
    model = settings.client.model
    return {
        "experiment": "transfer",
        "consortium": consortium.name,
        "base_model": model.base,
        "tasks": list(model.tasks),
        "lora": {"r": model.lora.r, "alpha": model.lora.alpha, "dropout": model.lora.dropout},
        "max_length": model.max_length,
        "strategy": settings.strategy,
        "num_rounds": settings.client.num_rounds,
        "seed": settings.client.seed,
        "bootstrap_resamples": settings.client.bootstrap_resamples,
        "duration_s": round(duration_s, 1),
        "selection": CRITERIA[settings.round_selection],
        "sites": [{"name": s.name, "role": s.role} for s in consortium.sites
                  if s.name != POOLED_SITE],
        "regimes": regimes,
        "cells": cells,
    }


def write_transfer(run_dir: Path, record: dict) -> Path:
    """Write `transfer.json` (atomically) and render the report beside it; return the report."""
    from server.report.transfer import write_transfer_report

    write_atomic(run_dir / TRANSFER_FILE,
                 (json.dumps(record, indent=2, allow_nan=False) + "\n").encode())
    report = write_transfer_report(run_dir)
    log.info("transfer report: %s", report)
    return report
