"""`metrics.json`: the run's numbers in one machine-readable file, nested the way people ask.

Sites send flat metric keys (`readmission.auroc`, `readmission.auroc_low`, ...) because Flower needs
identical flat keys at every site; here they become round -> site -> task -> {auroc, ci, n, ...}.
NaN (undefined, e.g. no oracle or note-level ceiling for real data) is written as null.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import torch

from server.report.participation import participation
from server.round_selection import MIN_LABELS, Selection
from server.settings import ServerSettings
from sites.config import ConsortiumConfig
from sites.files import write_atomic
from strategies import RunLog
from strategies.exchange import VALIDATION_LOSS, VALIDATION_PREFIX, VALIDATION_SUFFIXES
from strategies.options import options_used

TASK_FIELDS = ("auroc", "auroc_low", "auroc_high", "n", "positives", "prevalence", "oracle_auroc",
               "note_ceiling_auroc", "ece")
"""Scalar per-task fields sites send as `<task>.<field>`; `auroc_low`/`auroc_high` become `ci`.
A field a site did not send (an older client) is null, like an undefined one."""
RELIABILITY_FIELDS = ("confidence", "frequency", "count")
"""Per-task lists of 10 bins sites send as `<task>.reliability_<field>` (see client.evaluate)."""
VALIDATION_FIELDS = VALIDATION_SUFFIXES
"""Sent as `validation.<task>.<field>` for round selection; absent from runs before selection."""
COUNT_FIELDS = ("n", "positives")
"""Counts of a split: written as integers (null where a run recorded before them lacks them)."""


def _clean(value: float) -> float | None:
    return None if value is None or math.isnan(value) else value


def _count(value: float | None) -> int | None:
    return None if value is None else int(value)


def _counts(values: dict) -> dict:
    return values | {f: _count(values[f]) for f in COUNT_FIELDS if f in values}


def _reliability(flat: dict, task: str) -> dict | None:
    """{"confidence": [...], "frequency": [...], "count": [...]} (NaN -> null), or None when the
    site sent no reliability bins (a run before calibration)."""
    keys = {f: f"{task}.reliability_{f}" for f in RELIABILITY_FIELDS}
    if not all(key in flat for key in keys.values()):
        return None
    values = {f: [_clean(float(v)) for v in flat[key]] for f, key in keys.items()}
    values["count"] = [_count(v) for v in values["count"]]
    return values


def _task_values(flat: dict, task: str) -> dict:
    values = {f: _clean(flat.get(f"{task}.{f}", math.nan)) for f in TASK_FIELDS}
    values["ci"] = [values.pop("auroc_low"), values.pop("auroc_high")]
    values = _counts(values)
    reliability = _reliability(flat, task)
    if reliability is not None:
        values["reliability"] = reliability
    return values


def _validation(flat: dict, tasks: tuple[str, ...]) -> dict:
    """task -> {"auroc", "n", "positives"} for the tasks whose validation keys the site sent."""
    nested = {}
    for task in tasks:
        keys = {f: f"{VALIDATION_PREFIX}{task}.{f}" for f in VALIDATION_FIELDS}
        if any(key in flat for key in keys.values()):
            values = {f: _clean(flat.get(key, math.nan)) for f, key in keys.items()}
            nested[task] = _counts(values)
    return nested


def nest_site_metrics(flat: dict[str, float | list[float]], tasks: tuple[str, ...]) -> dict:
    """{"readmission.auroc": .7, ...} -> {"tasks": {"readmission": {"auroc": .7, "ci": [..],
    "ece": .05, "reliability": {...}}}, "validation": {"readmission": {"auroc", "n"}}, "loss",
    "validation_loss"}.

    `reliability`, `validation` and `validation_loss` appear only when the site sent them (older
    runs did not)."""
    nested: dict = {"tasks": {task: _task_values(flat, task) for task in tasks}}
    validation = _validation(flat, tasks)
    if validation:
        nested["validation"] = validation
    nested["loss"] = _clean(flat.get("loss", math.nan))
    if VALIDATION_LOSS in flat:
        nested["validation_loss"] = _clean(flat[VALIDATION_LOSS])
    return nested


def _clean_values(values: dict) -> dict:
    return {k: _clean(v) if isinstance(v, float) else v for k, v in values.items()}


_LEDGER_FIELDS: tuple[str, ...] = (
    # the keys of the site's privacy record (client/privacy/reply.py), the same in metrics.json
    "dataset", "unit", "delta", "lifetime_epsilon", "run_epsilon_allocation", "max_grad_norm",
    "accountant", "signer", "epsilon", "run_epsilon", "ledger_head", "ledger_entries",
)


def privacy_summary(consortium: ConsortiumConfig, run_log: RunLog,
                    ledgers: dict[str, dict] | None = None) -> dict:
    """Per training site: what the site itself declared and its ledger says — never the
    coordinator's consortium file, since at a hospital the hospital's own YAML governs DP.

    `ledgers` are the sites' answers to the closing `query.privacy` (`server.ledger_query`): the
    ledger as it stands after the run, so a site that charged a round and crashed before
    answering it shows its true spend. A site that did not answer falls back to its last
    training reply (`source` says which). Sites that reported no DP appear with `dp: false`.
    """
    ledgers = ledgers or {}
    sites = {}
    for site in consortium.training_sites:
        reported = {r: per_site[site.name] for r, per_site in sorted(run_log.privacy.items())
                    if site.name in per_site}
        final = ledgers.get(site.name)
        latest = final if final is not None else (reported[max(reported)] if reported else {})
        entry: dict = {"dp": bool(latest.get("dp", False)),
                       "source": ("ledger" if final is not None else
                                  "last training reply" if reported else "nothing reported")}
        if entry["dp"]:
            entry.update({key: latest.get(key) for key in _LEDGER_FIELDS})
            entry.update({  # a round's parameters: from the first training reply that has them
                key: next((v[key] for v in reported.values() if key in v), None)
                for key in ("noise_multiplier", "sample_rate", "noise_source")})
            entry["epsilon_per_round"] = {str(r): v.get("run_epsilon") for r, v in reported.items()
                                          if not v.get("declined")}
        entry["declined_rounds"] = sorted(r for r, d in run_log.declined.items() if site.name in d)
        sites[site.name] = entry
    return {"sites": sites, "client_level": client_level_summary(run_log)}


def client_level_summary(run_log: RunLog) -> dict | None:
    """Client-level DP (`dp-fedavg` only, else None): its settings and ε over released rounds."""
    record = run_log.client_level
    if record is None:
        return None
    return {
        "noise_multiplier": record.noise_multiplier,
        "clipping_norm": record.clipping_norm,
        "delta": record.delta,
        "epsilon": record.epsilon,
        "epsilon_per_round": {str(r): e for r, e in sorted(record.epsilon_per_round.items())},
        "released_rounds": list(record.released_rounds),
        "num_sites": record.num_sites,
        "accountant": record.accountant,
        "privacy_unit": record.privacy_unit,
        "noise_std": record.noise_std,
    }


def egress_summary(consortium: ConsortiumConfig, run_log: RunLog, run_name: str) -> dict:
    """What each training site attested to sending and what the server received, per round, with
    a per-site roll-up and where the site keeps its egress log (`client.egress`).

    {"sites": {site: {"rounds", "tensors" (per round, at most), "bytes" (all rounds), "match"
    (every round), "mismatched_rounds", "evaluation_replies", "evaluation_match", "log"}},
    "rounds": {round: {site: {"sent_digest", "received_digest", "match", "tensors", "bytes"}}},
    "evaluation_rounds": the same for evaluation replies, "interval_rounds": for the replies with
    the reported round's test intervals (counted among `evaluation_replies`)}
    """
    rounds = {r: per_site for r, per_site in sorted(run_log.egress.items())}
    evaluated = {r: per_site for r, per_site in sorted(run_log.egress_evaluation.items())}
    intervals = {r: per_site for r, per_site in sorted(run_log.egress_intervals.items())}
    sites = {}
    for site in consortium.sites:
        seen = {r: per_site[site.name] for r, per_site in rounds.items() if site.name in per_site}
        scored = [per_site[site.name] for records in (evaluated, intervals)
                  for per_site in records.values() if site.name in per_site]
        sites[site.name] = {
            "evaluation_replies": len(scored),
            "evaluation_match": all(bool(v["match"]) for v in scored),
            "rounds": sorted(seen),
            "tensors": max((int(v["tensors"]) for v in seen.values()), default=0),
            "bytes": sum(int(v["bytes"]) for v in seen.values()),
            "match": all(bool(v["match"]) for v in seen.values()),
            "mismatched_rounds": sorted(r for r, v in seen.items() if not v["match"]),
            # where the site keeps its log, inside its own state folder (client/state.py)
            "log": (f"<state folder of {site.name}>/{_dataset(run_log, site.name)}/runs/"
                    f"{run_name}/egress-log.jsonl"),
        }
    return {"sites": sites, "rounds": {str(r): per_site for r, per_site in rounds.items()},
            "evaluation_rounds": {str(r): per_site for r, per_site in evaluated.items()},
            "interval_rounds": {str(r): per_site for r, per_site in intervals.items()}}


def _dataset(run_log: RunLog, site: str) -> str:
    """The dataset key a site reported with its training replies (external sites send none)."""
    return next((str(per_site[site]["dataset"]) for per_site in run_log.privacy.values()
                 if "dataset" in per_site.get(site, {})), "<dataset>")


def base_model_bytes(model: torch.nn.Module) -> int:
    """Size of the frozen base weights: what a site would send without LoRA."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)


def _upload_summary(run_log: RunLog, base_bytes: int) -> dict:
    uploads = [s["upload-bytes"] for r in run_log.training.values() for s in r.values()]
    per_round = max(uploads) if uploads else 0
    return {
        "bytes_per_site_per_round": int(per_round),
        "base_model_bytes": base_bytes,
        "ratio_to_base_model": per_round / base_bytes if base_bytes else None,
    }


def _timing(values: dict[str, float]) -> dict[str, float | int]:
    """A round's `RunLog.timing`: seconds to 0.001 s, bytes as integers."""
    return {k: int(v) if k.endswith("_bytes") else round(v, 3) for k, v in values.items()}


def build_metrics(
    *,
    settings: ServerSettings,
    consortium: ConsortiumConfig,
    run_log: RunLog,
    model: torch.nn.Module,
    duration_s: float,
    outcome: str,
    selection: Selection | None = None,
    ledgers: dict[str, dict] | None = None,
) -> dict:
    tasks = settings.client.model.tasks
    rounds = sorted(set(run_log.evaluation) | set(run_log.training) | set(run_log.participation))
    return {
        "run": {
            "outcome": outcome,
            "run_name": settings.run_name,
            "consortium": consortium.name,
            "consortium_file": str(consortium.source),
            "strategy": settings.strategy,
            "strategy_options": options_used(settings.options, settings.strategy),
            "num_rounds": settings.client.num_rounds,
            "tasks": list(tasks),
            "profile": settings.profile or None,
            "base_model": settings.client.model.base,
            "max_length": settings.client.model.max_length,
            "lora": {
                "r": settings.client.model.lora.r,
                "alpha": settings.client.model.lora.alpha,
                "dropout": settings.client.model.lora.dropout,
            },
            "seed": settings.client.seed,
            "bootstrap_resamples": settings.client.bootstrap_resamples,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "duration_s": round(duration_s, 1),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "sites": [{"name": s.name, "role": s.role, "synthetic": s.synthetic is not None}
                  for s in consortium.sites],
        "rounds": [
            {
                "round": r,
                "evaluation": {
                    site: nest_site_metrics(values, tasks)
                    for site, values in run_log.evaluation.get(r, {}).items()
                },
                "training": {site: _clean_values(values)
                             for site, values in run_log.training.get(r, {}).items()},
                "privacy": run_log.privacy.get(r, {}),
                "declined": run_log.declined.get(r, {}),
                "failures": run_log.failures.get(r, []),
                "participation": participation(consortium, run_log, r),
                "skipped": r in run_log.skipped_rounds,
                "left_out": run_log.left_out.get(r, []),
                "timing": _timing(run_log.timing.get(r, {})),
            }
            for r in rounds
        ],
        "selection": None if selection is None else {
            "round": selection.round,
            "by": selection.by,
            "criterion": selection.criterion,
            "score_per_round": {str(r): v for r, v in selection.score_per_round.items()},
            "min_labels": MIN_LABELS,
            "left_out": [asdict(cell) for cell in selection.left_out],
        },
        "upload": _upload_summary(run_log, base_model_bytes(model)),
        "privacy": privacy_summary(consortium, run_log, ledgers),
        "egress": egress_summary(consortium, run_log, settings.run_name),
    }


def write_metrics(run_dir: Path, **kwargs) -> Path:
    text = json.dumps(build_metrics(**kwargs), indent=2, allow_nan=False) + "\n"
    return write_atomic(run_dir / "metrics.json", text.encode())
