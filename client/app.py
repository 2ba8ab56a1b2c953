"""The Flower ClientApp: what runs inside a hospital.

Three kinds of message reach a site. `query` asks who it is (site name and role, nothing about its
data). `train` carries the global adapter and heads: the site loads them into its cached model,
trains on its own notes and replies with the adapter and head tensors and aggregate metrics only.
`evaluate` carries the same tensors and gets back per-task AUROC with its bootstrap interval, n and
prevalence — the same metric keys at every site, as Flower requires. No note text, token id, label or
per-example value is ever put in a reply.
"""

from __future__ import annotations

import logging
import time
import zlib

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.evaluate import evaluate_split
from client.model import load_trainable_state, trainable_state
from client.progress import show_progress
from client.run_settings import ClientSettings
from client.runtime import site_runtime
from client.site_resolution import resolve_site
from client.train import train_steps
from sites.config import SiteConfig

app = ClientApp()
log = logging.getLogger(__name__)


class ExternalSiteCannotTrain(RuntimeError):
    """An external (held-out) site was asked to train; it only ever evaluates."""


def _arrays(message: Message) -> dict:
    record = message.content["arrays"]
    return {name: record[name].numpy() for name in record.keys()}


def _round_seed(settings: ClientSettings, site: SiteConfig, server_round: int) -> int:
    """Distinct, reproducible shuffling per site and round."""
    return settings.seed + 1000 * server_round + zlib.crc32(site.name.encode()) % 1000


@app.query()
def identify(message: Message, context: Context) -> Message:
    """Tell the server which site this node is, so it trains only training sites."""
    show_progress()
    settings = ClientSettings.from_run_config(context.run_config)
    site = resolve_site(context.node_config, settings)
    record = ConfigRecord({"name": site.name, "role": site.role})
    return Message(RecordDict({"site": record}), reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    """Train the global adapter on this site's notes; reply with adapter/head tensors only."""
    # 1. Who am I, and may I train?
    show_progress()
    settings = ClientSettings.from_run_config(context.run_config)
    site = resolve_site(context.node_config, settings)
    if site.is_external:
        raise ExternalSiteCannotTrain(
            f"site {site.name!r} has role `external`: it is evaluated, never trained on"
        )
    # 2. Load the global adapter into the cached model
    runtime = site_runtime(site, settings.model)
    load_trainable_state(runtime.model, _arrays(message))
    # 3. Train locally
    server_round = int(message.content["config"]["server-round"])
    started = time.perf_counter()
    result = train_steps(
        runtime.model,
        runtime.splits["train"],
        steps=settings.local_steps or site.training.local_steps,
        batch_size=site.training.batch_size,
        optimizer=settings.optimizer,
        seed=_round_seed(settings, site, server_round),
    )
    log.info("site %s, round %d: %d steps, loss %.4f (%.1f s)", site.name, server_round,
             result.steps, result.loss, time.perf_counter() - started)
    # 4. Reply: adapter and heads, plus aggregate metrics
    arrays = ArrayRecord({name: Array(value) for name, value in trainable_state(runtime.model).items()})
    metrics = MetricRecord(
        {
            "num-examples": runtime.splits["train"].size,
            "train-loss": float(result.loss),
            "steps": int(result.steps),
        }
    )
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Score the global adapter on this site's held-out test split."""
    show_progress()
    settings = ClientSettings.from_run_config(context.run_config)
    site = resolve_site(context.node_config, settings)
    runtime = site_runtime(site, settings.model)
    load_trainable_state(runtime.model, _arrays(message))
    test = runtime.splits["test"]
    if 0 < site.evaluation.max_examples < test.size:  # the site caps its evaluation cost
        test = test.subset(range(site.evaluation.max_examples))
    started = time.perf_counter()
    metrics = evaluate_split(
        runtime.model,
        test,
        settings.model.tasks,
        batch_size=site.evaluation.batch_size,
        seed=settings.seed,
        n_resamples=settings.bootstrap_resamples,
    )
    metrics["num-examples"] = test.size
    log.info("site %s: evaluated %d test encounters (%.1f s)", site.name, test.size,
             time.perf_counter() - started)
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=message)
