"""What travels between a site and the server: the names both sides must agree on, and the digest
both compute of a reply.

A site (client/) and the coordinator (server/, strategies/) run different code and meet only in
Flower messages, so what those messages are made of is fixed here, once, and both sides import it
from here (strategies imports nothing of client or server):

1. tensor keys: `adapter.<peft key>` for the LoRA weights, `head.<task>.weight|bias` for the heads;
2. adapter modes: how a strategy asks a site to hold, train and send its adapter (`adapter-mode`
   in the message config), and FLoRA's `fold.*` keys of the stacked global update;
3. metric names: a site's evaluation keys per task, the validation keys round selection reads,
   the reliability bins and the fewest encounters a bin may publish, a training reply's aggregates;
4. the reply manifest: per tensor and value its size and SHA-256, and their digest, which a site
   logs and sends (client/egress.py) and the server recomputes from what arrived
   (strategies/site_aware.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

# --- 1. Tensor keys -------------------------------------------------------------------------------

ADAPTER_PREFIX = "adapter."
"""Keys of the LoRA tensors: `adapter.<peft state-dict key>` (`client.model.trainable_state`)."""
HEAD_PREFIX = "head."
"""Keys of the task heads' tensors: `head.<task>.weight|bias` (none for a letter-scoring model)."""
LORA_A = ".lora_A."
"""Part of the key of every LoRA A factor (peft's naming)."""


def is_lora_a(key: str) -> bool:
    """Whether `key` names a LoRA A factor of the adapter."""
    return key.startswith(ADAPTER_PREFIX) and LORA_A in key


# --- 2. Adapter modes, and FLoRA's stacked update ----------------------------------------------------
#
# Most strategies exchange the whole adapter (`full`). Under `ffa` (FFA-LoRA) a site keeps A frozen
# and sends B and the heads; under `flora` (FLoRA) the server sends the stacked global update under
# `fold.*` keys and a site sends a fresh adapter of its own rank (client/adapter_mode.py). The mode
# travels in the message config under `adapter-mode`, set by the strategy; none means `full`.

AdapterMode = Literal["full", "ffa", "flora"]
MODE_KEY = "adapter-mode"
FOLD_PREFIX = "fold."
"""Keys of the stacked global update under FLoRA: `fold.<peft key of A or B>`."""


def fold_pairs(fold: Mapping[str, np.ndarray], prefix: str = FOLD_PREFIX) -> dict[str, tuple]:
    """`fold.<module>.lora_A.weight` / `.lora_B.weight` keys -> {module: (A, B)}."""
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in fold.items():
        name = key[len(prefix):] if key.startswith(prefix) else key
        for part in ("A", "B"):
            suffix = f".lora_{part}.weight"
            if name.endswith(suffix):
                pairs.setdefault(name[: -len(suffix)], {})[part] = value
                break
        else:
            raise KeyError(f"fold tensor `{key}`; expected `{prefix}<module>.lora_A.weight` or "
                           "`.lora_B.weight`")
    incomplete = sorted(m for m, p in pairs.items() if set(p) != {"A", "B"})
    if incomplete:
        raise KeyError(f"fold of module `{incomplete[0]}` lacks its A or B factor")
    return {m: (p["A"], p["B"]) for m, p in pairs.items()}


def as_fold_arrays(factors: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """{module: (A, B)} -> `fold.<module>.lora_A.weight` / `.lora_B.weight` tensors (the inverse
    of `fold_pairs`)."""
    out = {}
    for module, (a, b) in factors.items():
        out[f"{FOLD_PREFIX}{module}.lora_A.weight"] = a
        out[f"{FOLD_PREFIX}{module}.lora_B.weight"] = b
    return out


# --- 3. Metric names -------------------------------------------------------------------------------
#
# The keys depend only on the task list, never on the data: Flower stops a round when sites reply
# with different keys, so a site sends NaN for an undefined value, never a missing key. Reliability
# metrics are lists of exactly `NUM_BINS` floats: Flower zips list metrics across sites strictly.

METRIC_SUFFIXES = ("auroc", "auroc_low", "auroc_high", "n", "positives", "prevalence",
                   "oracle_auroc", "note_ceiling_auroc", "ece", "reliability_confidence",
                   "reliability_frequency", "reliability_count")
"""Per-task metric names; the `reliability_*` ones are lists of `NUM_BINS` floats. `positives`
counts the split's positive class (multi-class tasks: its rarest class present): a count of the
split, like `n`, never a per-encounter value. The two ceilings (`oracle_auroc`, the generator's
true probabilities; `note_ceiling_auroc`, the Bayes posterior given the facts the encoded note
states) are AUROCs over the split, NaN on real data: their probabilities stay at the site."""
VALIDATION_PREFIX = "validation."
"""Validation metrics are keyed `validation.<task>.auroc|n|positives`, plus `validation.loss` (the
mean over tasks of the split's cross-entropy, an average like the test `loss`): the server selects
the best round on them (never on test), so they travel beside the test metrics under their own
names."""
VALIDATION_SUFFIXES = ("auroc", "n", "positives")
VALIDATION_LOSS = f"{VALIDATION_PREFIX}loss"
NUM_BINS = 10
"""Equal-width reliability bins on [0, 1]."""
MIN_BIN_COUNT = 10
"""Fewest encounters whose pooled confidence and outcome a site may publish."""
INTERVAL_SUFFIXES = ("auroc_low", "auroc_high")
"""The 95 % bootstrap interval of a task's test AUROC: 1,000 resamples per task and site, a cost
that grows with the test split (about 0.1–0.2 s per task for 300 encounters on one core) and that
only the reported round needs, so a site computes it only when the message asks (`INTERVALS_KEY`),
and sends NaN under these keys otherwise."""
INTERVALS_KEY = "intervals"
"""Evaluate-message config key (bool, default false): compute the test AUROC's bootstrap interval.
The server asks for it where the report shows it — the reported round, asked once after the last
round (server/reported_intervals.py), and each regime's test of the transfer experiment — never in
the rounds themselves, which select and plot on the AUROC alone."""
TRAIN_METRIC_KEYS = frozenset({"num-examples", "train-loss", "steps"})
"""The aggregate metrics a training reply may carry."""


def metric_keys(tasks: Sequence[str]) -> list[str]:
    """Keys of a site's evaluation metrics (`client.evaluate.evaluate_split`) for `tasks`, in
    order."""
    return [f"{t}.{s}" for t in tasks for s in METRIC_SUFFIXES] + ["loss"]


def validation_keys(tasks: Sequence[str]) -> list[str]:
    """Keys of a site's validation metrics (`client.evaluate.validation_metrics`) for `tasks`,
    in order."""
    return [f"{VALIDATION_PREFIX}{t}.{s}" for t in tasks for s in VALIDATION_SUFFIXES] + [
        VALIDATION_LOSS]


# --- 4. The reply manifest: what a reply carries, byte for byte ------------------------------------

EGRESS_RECORD = "egress"
"""Name of the ConfigRecord a reply carries: {"digest", "tensors", "bytes"}."""
NUMBER_BYTES = 8
"""Bytes counted per metric or numeric config value (Flower sends them as 64-bit numbers)."""


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, ASCII, no NaN: the same text for the same value on both sides."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tensor_entry(array: Array) -> dict[str, Any]:
    """Shape, dtype, byte count and SHA-256 of the tensor's serialized bytes."""
    data = bytes(array.data)
    return {"shape": list(array.shape), "dtype": str(array.dtype), "bytes": len(data),
            "sha256": _sha256(data)}


def _canonical_value(value: Any) -> Any:
    """Floats as their exact `repr` (NaN and inf included), bytes as hex; the rest as is."""
    if isinstance(value, list):
        return [_canonical_value(v) for v in value]
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    return value


def value_entry(value: Any) -> dict[str, Any]:
    """Count, bytes and SHA-256 of a metric or config value (a scalar, string or list)."""
    values = value if isinstance(value, list) else [value]
    size = sum(len(v.encode()) if isinstance(v, str) else len(v) if isinstance(v, bytes)
               else NUMBER_BYTES for v in values)
    return {"values": len(values), "bytes": size,
            "sha256": _sha256(canonical_json(_canonical_value(value)).encode("ascii"))}


def reply_manifest(content: RecordDict) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """{"arrays"|"metrics"|"configs": {record name: {key: entry}}} over every record of a reply
    except the `egress` record itself; the same function runs at the site and at the server."""
    manifest: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
        "arrays": {}, "metrics": {}, "configs": {}}
    for name in sorted(content.keys()):
        if name == EGRESS_RECORD:
            continue
        record = content[name]
        if isinstance(record, ArrayRecord):
            manifest["arrays"][name] = {k: tensor_entry(record[k]) for k in record.keys()}
        else:
            kind = "metrics" if isinstance(record, MetricRecord) else "configs"
            manifest[kind][name] = {k: value_entry(v) for k, v in record.items()}
    return manifest


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the manifest's canonical JSON."""
    return _sha256(canonical_json(manifest).encode("ascii"))


def manifest_totals(manifest: Mapping[str, Any]) -> tuple[int, int]:
    """(number of tensors, bytes of every tensor and value) in a manifest."""
    entries = [entry for kind in manifest.values() for record in kind.values()
               for entry in record.values()]
    tensors = sum(len(record) for record in manifest["arrays"].values())
    return tensors, sum(int(entry["bytes"]) for entry in entries)


def received_egress(content: RecordDict) -> dict[str, Any]:
    """The server's side: {"sent_digest" (from the reply's `egress` record; None if absent),
    "received_digest" (recomputed from the content), "match", "tensors", "bytes"}: JSON-able."""
    received = reply_manifest(content)
    tensors, size = manifest_totals(received)
    sent = content[EGRESS_RECORD] if EGRESS_RECORD in content else ConfigRecord()
    sent_digest = str(sent["digest"]) if "digest" in sent else None
    digest = manifest_digest(received)
    return {"sent_digest": sent_digest, "received_digest": digest,
            "match": sent_digest == digest, "tensors": tensors, "bytes": size}
