"""The Flower ClientApp: what runs inside a hospital.

Three kinds of message reach a site. `query` asks who it is (site name and role, nothing about its
data). `train` carries the global adapter and heads: the site loads them into its cached model,
trains on its own notes and replies with the adapter and head tensors and aggregate metrics only.
`evaluate` carries the same tensors and gets back per-task AUROC with its bootstrap interval, n and
prevalence on the test split, and the validation AUROC the server selects rounds by — the same
metric keys at every site, as Flower requires. No note text, token id, label or
per-example value is ever put in a reply.
"""

from __future__ import annotations

import logging
import math
import time
import zlib

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.evaluate import evaluate_split, validation_metrics
from client.message_config import (
    message_local_steps,
    message_model_settings,
    requested_splits,
)
from client.model import load_trainable_state, trainable_state
from client.progress import show_progress
from client.run_settings import ClientSettings
from client.runtime import site_runtime
from client.site_resolution import resolve_site
from client.privacy_plan import plan_privacy
from client.privacy_reply import declined_record, privacy_record, run_name
from client.private_train import train_steps_private
from client.site_budget import BudgetExhausted, SiteBudget
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
    config = message.content["config"]
    server_round = int(config["server-round"])
    runtime = site_runtime(site, message_model_settings(settings.model, config))
    data = runtime.splits["train"]
    steps = message_local_steps(config) or settings.local_steps or site.training.local_steps
    # 2. A private site charges its budget first, and declines a round it cannot afford
    charge, plan = None, None
    if site.is_private:
        plan = plan_privacy(site, examples=data.size, rounds=settings.num_rounds,
                            steps_per_round=steps)
        try:
            charge = SiteBudget(site, run_name(config, context)).charge(
                server_round=server_round, plan=plan, steps=steps)
        except BudgetExhausted as declined:
            log.warning("%s", declined)
            return Message(RecordDict({"privacy": declined_record(declined)}), reply_to=message)
    # 3. Load the global adapter into the cached model and train locally
    load_trainable_state(runtime.model, _arrays(message))
    started = time.perf_counter()
    seed = _round_seed(settings, site, server_round)
    if charge is None:
        result = train_steps(runtime.model, data, steps=steps,
                             batch_size=site.training.batch_size,
                             optimizer=settings.optimizer, seed=seed)
    else:
        result = train_steps_private(
            runtime.model, data, steps=steps, sample_rate=charge.sample_rate,
            noise_multiplier=charge.noise_multiplier, max_grad_norm=plan.max_grad_norm,
            optimizer=settings.dp_optimizer, seed=seed)
    log.info("site %s, round %d: %d steps%s, loss %.4f (%.1f s)", site.name, server_round,
             result.steps, f", DP ε = {charge.epsilon:.3f}" if charge else "", result.loss,
             time.perf_counter() - started)
    # 4. Reply: adapter and heads, aggregate metrics, and what the round spent
    arrays = ArrayRecord({name: Array(value) for name, value in trainable_state(runtime.model).items()})
    metrics = MetricRecord(
        {
            "num-examples": data.size,
            # The loss is a statistic of the training data that DP-SGD's noise does not cover:
            # a private site withholds it (NaN keeps the metric keys equal at every site).
            "train-loss": float(result.loss) if charge is None else math.nan,
            "steps": int(result.steps),
        }
    )
    content = {"arrays": arrays, "metrics": metrics, "privacy": privacy_record(charge, plan)}
    return Message(RecordDict(content), reply_to=message)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Score the global adapter on the splits the server asks for: validation (to select a round)
    and/or this site's held-out test split (to report). A split not asked for, or that the site
    lacks (an external site has no validation split), gives NaN under the same keys."""
    show_progress()
    settings = ClientSettings.from_run_config(context.run_config)
    site = resolve_site(context.node_config, settings)
    config = message.content["config"] if "config" in message.content else ConfigRecord()
    model_settings = message_model_settings(settings.model, config)
    splits = requested_splits(config)
    runtime = site_runtime(site, model_settings)
    load_trainable_state(runtime.model, _arrays(message))
    test = runtime.splits["test"]
    if 0 < site.evaluation.max_examples < test.size:  # the site caps its evaluation cost
        test = test.subset(range(site.evaluation.max_examples))
    validation = runtime.splits["validation"]
    if "test" not in splits:
        test = test.subset([])
    if "validation" not in splits:
        validation = validation.subset([])
    started = time.perf_counter()
    metrics = evaluate_split(runtime.model, test, model_settings.tasks,
                             batch_size=site.evaluation.batch_size, seed=settings.seed,
                             n_resamples=settings.bootstrap_resamples)
    metrics.update(validation_metrics(runtime.model, validation, model_settings.tasks,
                                      batch_size=site.evaluation.batch_size))
    # Flower weights its (unused) cross-site average by this; never 0, or it divides by zero.
    metrics["num-examples"] = max(test.size + validation.size, 1)
    log.info("site %s: scored %d test and %d validation encounters (%.1f s)", site.name,
             test.size, validation.size, time.perf_counter() - started)
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=message)
