"""The Flower ClientApp: what runs inside a hospital.

Three kinds of message reach a site. `query` asks who it is (site name and role, nothing about its
data). `train` carries the global adapter and heads: the site loads them into its cached model,
trains on its own notes and replies with the adapter and head tensors and aggregate metrics only.
`evaluate` carries the same tensors and gets back per-task AUROC (with its bootstrap interval when
the server asks: the reported round only), n and prevalence on the test split, and the validation
AUROC the server selects rounds by — the same metric keys at every site, as Flower requires. No
note text, token id, label or per-example value is ever put in a reply.

On the Deployment Engine every message runs in a fresh process, so what only one kind of message
needs is imported inside its handler: opacus for a DP site's training, scipy and scikit-learn for
evaluation (seconds of every cold start; bench/results/clientapp_cold_start.md).
"""

from __future__ import annotations

import logging
import math
import time
import zlib

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.adapter_mode import (
    AdapterMode,
    corrupt_update,
    load_global_state,
    sent_state,
    set_trainable,
    site_model_settings,
)
from client.egress import (
    EgressLog,
    attest,
    evaluate_declaration,
    query_declaration,
    train_declaration,
)
from client.privacy.budget import BudgetExhausted, SiteBudget
from client.privacy.optimizer_memory import OptimizerMemory
from client.privacy.plan import PrivacyPlan, plan_privacy
from client.privacy.reply import declined_record, ledger_record, plain_record, privacy_record
from client.privacy.site_keys import site_noise_source, site_signer
from client.progress import show_progress
from client.settings import ClientSettings, MessageConfig
from client.site import resolve_site, site_runtime
from client.state import RoundReplies, SiteState, StoredReply, arrays_digest, as_array_record
from client.test_scores import TestScores
from client.train import make_optimizer, train_steps
from sites.config import SiteConfig
from sites.dataset import dataset_fingerprint
from sites.encounter_table import TrainingUnits

app = ClientApp()
log = logging.getLogger(__name__)


class ExternalSiteCannotTrain(RuntimeError):
    """An external (held-out) site was asked to train; it only ever evaluates."""


def _tensors(record: ArrayRecord) -> dict:
    return {name: record[name].numpy() for name in record.keys()}


def _arrays(message: Message) -> dict:
    return _tensors(message.content["arrays"])


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
    config = MessageConfig.from_message(message, context, kind="train")
    server_round, run, mode = _train_round_number(config), config.run_name, config.adapter_mode
    runtime = site_runtime(site, site_model_settings(config.model_settings(settings.model), site,
                                                     mode))
    # The site's own state folder, for the data it holds (never keyed by what the server sends);
    # what this site may send, from its model's definition and the strategy's adapter mode; and
    # the log where every reply is recorded before it leaves
    state = SiteState.open(site, runtime.fingerprint)
    declared = train_declaration(runtime.model, without_lora_a=mode == "ffa")
    egress = EgressLog(path=state.egress_log(run), site=site.name, run=run)
    # 2. A round this site already answered (a restarted server re-sends it): the same answer
    #    for the same global adapter; for another one a DP site declines (its budget is spent)
    replies = RoundReplies(state.replies_dir(run))
    received = arrays_digest(message.content["arrays"])
    stored = replies.load(server_round)
    replay = stored is not None and stored.input_digest == received
    if replay:
        content = _replayed(stored, site, server_round)
    elif stored is not None and site.is_private:
        content = _declined_resent(stored, site, server_round)
    else:
        # 3. Charge the site's lifetime budget (DP), then train locally
        content = _train_round(message, config, settings, site, runtime, state)
    # 4. Only what the site declared leaves (else EgressRefused: Flower sends an error, no
    #    content), and only after it is written to the site's egress log; a trained answer is
    #    kept for a re-sent round
    attested = attest(content, declared, log=egress, kind="train", server_round=server_round)
    if "arrays" in content and not replay:
        replies.save(server_round, StoredReply(
            arrays=_tensors(content["arrays"]), metrics=dict(content["metrics"]),
            privacy=dict(content["privacy"]), input_digest=received))
    return Message(attested, reply_to=message)


def _train_round_number(config: MessageConfig) -> int:
    if config.server_round is None:
        raise KeyError("train message: `server-round` is missing (Flower's strategies set it)")
    return config.server_round


def _train_round(message: Message, config: MessageConfig, settings: ClientSettings,
                 site: SiteConfig, runtime, state: SiteState) -> RecordDict:
    """Charge the round (a DP site; declining what it cannot afford), train, build the reply."""
    server_round, run, mode = _train_round_number(config), config.run_name, config.adapter_mode
    data = runtime.splits["train"]
    steps = config.local_steps or settings.local_steps or site.training.local_steps
    # A DP site's plan first: a δ its data cannot honour stops the round before anything loads
    plan = (plan_privacy(site, counts=TrainingUnits(encounters=data.size,
                                                    patients=data.patient_count),
                         rounds=settings.num_rounds, steps_per_round=steps)
            if site.is_private else None)
    seed = _round_seed(settings, site, server_round)
    received = _arrays(message)
    load_global_state(runtime.model, received, mode, seed=seed)
    set_trainable(runtime.model, mode)
    mu = config.proximal_mu  # FedProx (Flower's strategy sets it)
    if plan is None:
        started = time.perf_counter()
        result = train_steps(runtime.model, data, steps=steps,
                             batch_size=site.training.batch_size,
                             optimizer=settings.optimizer, seed=seed, proximal_mu=mu,
                             max_physical_batch_size=site.training.max_physical_batch_size)
        log.info("site %s, round %d: %d steps, loss %.4f (%.1f s)", site.name, server_round,
                 result.steps, result.loss, time.perf_counter() - started)
        return _trained_reply(runtime, site, received, mode, result, data.size,
                              plain_record(state.dataset), train_loss=float(result.loss))
    return _train_private(runtime, settings, site, state, plan, run, server_round, steps, seed,
                          mu, received, mode)


def _train_private(runtime, settings: ClientSettings, site: SiteConfig, state: SiteState,
                   plan: PrivacyPlan, run: str, server_round: int, steps: int, seed: int,
                   mu: float, received: dict, mode: AdapterMode) -> RecordDict:
    """A DP round: charge the site's ledger (or decline), DP-SGD, reply."""
    from client.privacy.dp_sgd import train_steps_private  # opacus: only a DP site needs it

    data = runtime.splits["train"]
    signer = site_signer(site, state)
    noise = site_noise_source(site, run=run, server_round=server_round)
    optimizer, memory = settings.dp_optimizer, None
    if settings.dp_keeps_optimizer_state:
        # read before the charge: a stored state that does not fit stops the round with nothing
        # written to the ledger
        optimizer = make_optimizer(runtime.model, optimizer)
        memory = OptimizerMemory(state.optimizer_dir(run))
        memory.restore(optimizer, server_round)
    try:
        charge = SiteBudget(site, state, signer).charge(
            run=run, server_round=server_round, plan=plan, steps=steps, noise_source=noise.name)
    except BudgetExhausted as declined:
        log.warning("%s (ledger %s)", declined, state.ledger)
        return RecordDict({"privacy": declined_record(site, declined, dataset=state.dataset,
                                                      signer=signer)})
    started = time.perf_counter()
    result = train_steps_private(
        runtime.model, data, steps=steps, sample_rate=charge.sample_rate,
        noise_multiplier=charge.noise_multiplier, max_grad_norm=plan.max_grad_norm,
        optimizer=optimizer, seed=seed, proximal_mu=mu, noise=noise,
        privacy_unit=plan.unit,
        max_physical_batch_size=site.training.max_physical_batch_size,
        adapter_clip_share=settings.dp_adapter_clip_share)
    if memory is not None:
        memory.save(optimizer, server_round)
    log.info("site %s, round %d: %d steps, DP ε = %.3f on this dataset (%.3f this run) "
             "(%.1f s)", site.name, server_round, result.steps, charge.epsilon,
             charge.run_epsilon, time.perf_counter() - started)
    # The loss is a statistic of the training data that DP-SGD's noise does not cover: a
    # private site withholds it (NaN keeps the metric keys equal at every site).
    return _trained_reply(runtime, site, received, mode, result, data.size,
                          privacy_record(site, charge, plan, dataset=state.dataset,
                                         signer=signer, noise_source=noise.name),
                          train_loss=math.nan)


def _trained_reply(runtime, site: SiteConfig, received: dict, mode: AdapterMode, result,
                   examples: int, privacy: ConfigRecord, *, train_loss: float) -> RecordDict:
    state = sent_state(runtime.model, mode)
    if site.fault is not None:  # a robustness drill, never a real hospital
        state = corrupt_update(state, received, site.fault)
    arrays = ArrayRecord({name: Array(value) for name, value in state.items()})
    metrics = MetricRecord({"num-examples": examples, "train-loss": train_loss,
                            "steps": int(result.steps)})
    return RecordDict({"arrays": arrays, "metrics": metrics, "privacy": privacy})


def _replayed(stored: StoredReply, site: SiteConfig, server_round: int) -> RecordDict:
    """The reply released before for this round: post-processing, so free of privacy cost."""
    log.info("site %s, round %d: re-sent by the server with the same global adapter; answering "
             "with the reply released before (nothing trained, nothing charged)", site.name,
             server_round)
    return RecordDict({"arrays": as_array_record(stored.arrays),
                       "metrics": MetricRecord(stored.metrics),
                       "privacy": ConfigRecord(stored.privacy)})


def _declined_resent(stored: StoredReply, site: SiteConfig, server_round: int) -> RecordDict:
    reason = (f"site {site.name!r} declines round {server_round}: it already answered that round "
              "from another global adapter, and answering again would spend its budget twice")
    log.warning("%s", reason)
    return RecordDict({"privacy": ConfigRecord({**stored.privacy, "declined": reason})})


@app.query("privacy")
def privacy_state(message: Message, context: Context) -> Message:
    """The site's ledger as it stands, for the run the server names: its own budget, the ε of
    its dataset over every run and of this run, the head hash and signer. The coordinator's
    report shows this, so it equals the ledger even when a round was charged and never
    answered."""
    show_progress()
    settings = ClientSettings.from_run_config(context.run_config)
    site = resolve_site(context.node_config, settings)
    run = MessageConfig.from_message(message, context, kind="query").run_name
    state = SiteState.open(site, dataset_fingerprint(site))  # ids only: no model, no notes
    if site.is_private:
        signer = site_signer(site, state)
        spend = SiteBudget(site, state, signer).spend(run)
        record = ledger_record(site, spend, dataset=state.dataset, signer=signer)
    else:
        record = plain_record(state.dataset)
    egress = EgressLog(path=state.egress_log(run), site=site.name, run=run)
    content = attest(RecordDict({"privacy": record}), query_declaration(), log=egress,
                     kind="query", server_round=None)
    return Message(content, reply_to=message)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Score the global adapter on the splits the server asks for: validation (to select a round)
    and/or this site's held-out test split (to report), with the test AUROC's bootstrap interval
    when asked (`intervals`). A split or interval not asked for, or a split the site lacks (an
    external site has no validation split), gives NaN under the same keys."""
    from client.evaluate import evaluate_split, log_probs, validation_metrics  # scipy, sklearn

    show_progress()
    settings = ClientSettings.from_run_config(context.run_config)
    site = resolve_site(context.node_config, settings)
    config = MessageConfig.from_message(message, context, kind="evaluate")
    model_settings, splits = config.model_settings(settings.model), config.splits
    mode = config.adapter_mode
    runtime = site_runtime(site, site_model_settings(model_settings, site, mode))
    load_global_state(runtime.model, _arrays(message), mode, seed=settings.seed)
    test = runtime.splits["test"]
    if 0 < site.evaluation.max_examples < test.size:  # the site caps its evaluation cost
        test = test.subset(range(site.evaluation.max_examples))
    validation = runtime.splits["validation"]
    if "test" not in splits:
        test = test.subset([])
    if "validation" not in splits:
        validation = validation.subset([])
    started = time.perf_counter()
    state = SiteState.open(site, runtime.fingerprint)
    run = config.run_name
    # The bootstrap interval only where the server reports it (the reported round, once): the
    # rounds need the AUROC alone. Each round's test scores are kept, keyed by the adapter the
    # site was sent, so the reported round's intervals reuse them instead of scoring again.
    scores = TestScores(state.run_dir(run) / "test-scores")
    adapter = f"{mode}-{arrays_digest(message.content['arrays'])}"
    tasks = model_settings.tasks
    logp = scores.load(adapter, tasks, test.size) if config.intervals else None
    if logp is None:
        logp = log_probs(runtime.model, test, tasks, batch_size=site.evaluation.batch_size)
        if test.size:
            scores.save(adapter, logp)
    metrics = evaluate_split(runtime.model, test, tasks, batch_size=site.evaluation.batch_size,
                             seed=settings.seed, logp=logp,
                             n_resamples=settings.bootstrap_resamples if config.intervals else 0)
    metrics.update(validation_metrics(runtime.model, validation, model_settings.tasks,
                                      batch_size=site.evaluation.batch_size))
    # Flower weights its (unused) cross-site average by this; never 0, or it divides by zero.
    metrics["num-examples"] = max(test.size + validation.size, 1)
    log.info("site %s: scored %d test and %d validation encounters (%.1f s)", site.name,
             test.size, validation.size, time.perf_counter() - started)
    # Declared metric keys only, recorded in the site's egress log before the reply leaves
    content = RecordDict({"metrics": MetricRecord(metrics)})
    egress = EgressLog(path=state.egress_log(run), site=site.name, run=run)
    return Message(attest(content, evaluate_declaration(model_settings.tasks), log=egress,
                          kind="evaluate", server_round=config.server_round), reply_to=message)
