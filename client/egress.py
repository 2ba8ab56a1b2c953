"""Egress attestation: a site checks and records exactly what each reply carries before it leaves,
and the server recomputes the same record from what it received.

Privacy is the product, so "only adapter tensors and aggregate metrics leave a site" must be a
check, not a promise. A site declares what it may send, from its own model definition, never from
the tensors about to be sent: the names and shapes of its model's *trainable parameters* (the LoRA
weights peft marks trainable and the task heads), in float32, and the metric keys its tasks define.
A bug that put a frozen base weight, an embedding row or a per-example array in a reply would then
not match the declaration — whereas a spec derived from the reply would match any reply.

Before a reply is handed to Flower, `attest`
1. builds its manifest: per tensor the shape, dtype, byte count and SHA-256 of its bytes exactly as
   they are serialized (the flwr `Array`'s `.data`); per metric and config value its count, bytes
   and SHA-256 — every record of the reply, so the digest covers every byte of content;
2. checks it against the declaration and raises `EgressRefused` (naming the tensor or key and what
   was expected) for anything else: the handler fails, Flower sends an error reply, no content;
3. appends one line to the site's append-only egress log on its own disk, and only then
4. adds a small `egress` record (digest, tensor count, bytes) to the reply.

The manifest and its digest are computed by `strategies.exchange`, which the server
(`strategies.site_aware`) runs on what arrived, so a reviewer compares the digest the site logged
with the digest the server recorded.
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from strategies.exchange import (
    ADAPTER_PREFIX,
    EGRESS_RECORD,
    HEAD_PREFIX,
    NUM_BINS,
    TRAIN_METRIC_KEYS,
    canonical_json,
    manifest_digest,
    manifest_totals,
    metric_keys,
    reply_manifest,
    validation_keys,
)

if TYPE_CHECKING:
    from client.model import TaskModel

WIRE_DTYPE = "float32"
"""The only dtype a site sends: `client.model.trainable_state` converts every tensor to it."""
SERIALIZATION = "numpy.ndarray"
"""The flwr `Array.stype` of a numpy array: its bytes are `numpy.save`'s, header included."""
TRAIN_CONFIG_RECORDS = frozenset({"privacy"})
"""ConfigRecords a training reply may carry (`client.privacy.reply`): scalars and strings only."""

MessageKind = Literal["train", "evaluate", "query"]


class EgressRefused(RuntimeError):
    """A reply held something this site did not declare; nothing was sent."""


@dataclass(frozen=True)
class TensorSpec:
    """One tensor a site may send."""

    shape: tuple[int, ...]
    dtype: str = WIRE_DTYPE


@dataclass(frozen=True)
class Declaration:
    """What one kind of reply may carry. A reply need not carry every declared metric or config
    record, but an ArrayRecord must hold exactly the declared tensors."""

    tensors: Mapping[str, TensorSpec] = field(default_factory=dict)
    """Tensor name -> spec; empty: the reply may carry no tensors."""
    metric_keys: frozenset[str] = frozenset()
    bin_keys: frozenset[str] = frozenset()
    """Metric keys whose value is a list of `strategies.exchange.NUM_BINS` numbers, not a scalar."""
    config_records: frozenset[str] = frozenset()


# --- 1. What a site declares ---------------------------------------------------------------------

_SPECS: weakref.WeakKeyDictionary[Any, dict[str, TensorSpec]] = weakref.WeakKeyDictionary()
"""Per model object (the cached model of `client.site`): its spec, derived once per process."""


def declared_spec(model: TaskModel) -> dict[str, TensorSpec]:
    """The tensors `model` may send, named as `client.model.trainable_state` names them:
    `adapter.<peft key>` for each trainable LoRA parameter, `head.<task>.weight|bias` for each
    head parameter; float32. Derived from the parameters, not from `trainable_state`."""
    if model not in _SPECS:
        _SPECS[model] = _spec_from_parameters(model)
    return _SPECS[model]


def _spec_from_parameters(model: TaskModel) -> dict[str, TensorSpec]:
    # peft names a parameter `...lora_A.<adapter>.weight`; its state-dict key drops `.<adapter>`.
    adapter = f".{model.backbone.active_adapter}."
    # LoRA parameters by name, not by `requires_grad`: FFA-LoRA freezes A for some messages only.
    spec = {ADAPTER_PREFIX + name.replace(adapter, "."): TensorSpec(tuple(param.shape))
            for name, param in model.backbone.named_parameters() if "lora_" in name}
    spec.update({HEAD_PREFIX + name: TensorSpec(tuple(param.shape))
                 for name, param in model.heads.named_parameters()})
    return spec


def train_declaration(model: TaskModel, *, without_lora_a: bool = False) -> Declaration:
    """A training reply: the model's adapter/head tensors (LoRA A left out under FFA-LoRA, whose
    A never changes), training aggregates, privacy record."""
    tensors = declared_spec(model)
    if without_lora_a:
        tensors = {k: v for k, v in tensors.items() if ".lora_A." not in k}
    return Declaration(tensors=tensors, metric_keys=TRAIN_METRIC_KEYS,
                       config_records=TRAIN_CONFIG_RECORDS)


def evaluate_declaration(tasks: Iterable[str]) -> Declaration:
    """An evaluation reply: the metric keys of `tasks` (`strategies.exchange`) and
    `num-examples`."""
    tasks = tuple(tasks)
    keys = metric_keys(tasks) + validation_keys(tasks) + ["num-examples"]
    return Declaration(metric_keys=frozenset(keys),
                       bin_keys=frozenset(k for k in keys if ".reliability_" in k))


def query_declaration() -> Declaration:
    """The answer to `query.privacy`: the site's privacy record (its ledger's state), nothing
    else."""
    return Declaration(config_records=TRAIN_CONFIG_RECORDS)


# --- 2. The check: the declaration, nothing else ------------------------------------------------

def _listed(keys: Iterable[str], limit: int = 6) -> str:
    keys = sorted(keys)
    shown = ", ".join(f"`{k}`" for k in keys[:limit])
    return shown + (f" … ({len(keys)} in all)" if len(keys) > limit else "")


def check_tensors(record: ArrayRecord, spec: Mapping[str, TensorSpec]) -> None:
    """Exactly the declared tensors, each with its declared shape and dtype, serialized plainly."""
    for name in record.keys():
        if name not in spec:
            raise EgressRefused(f"tensor `{name}` is not declared by this site's model; expected "
                                f"only its {len(spec)} adapter/head tensors ({_listed(spec)})")
        array, expected = record[name], spec[name]
        if tuple(array.shape) != expected.shape:
            raise EgressRefused(f"tensor `{name}` has shape {tuple(array.shape)}; expected "
                                f"{expected.shape}")
        if array.dtype != expected.dtype or array.stype != SERIALIZATION:
            raise EgressRefused(f"tensor `{name}` has dtype {array.dtype!r} ({array.stype}); "
                                f"expected {expected.dtype!r} ({SERIALIZATION})")
        if bytes(array.data) != bytes(Array(array.numpy()).data):
            raise EgressRefused(f"tensor `{name}`'s bytes are not the plain serialization of its "
                                f"{expected.shape} {expected.dtype} values")
    missing = sorted(set(spec) - set(record.keys()))
    if missing:
        raise EgressRefused(f"tensor `{missing[0]}` is missing; expected all {len(spec)} "
                            "declared tensors of this site's model, or none")


def check_metrics(record: MetricRecord, declared: Declaration) -> None:
    """Declared keys only; scalars, or lists of NUM_BINS numbers under the reliability keys."""
    for key, value in record.items():
        if key not in declared.metric_keys:
            raise EgressRefused(f"metric `{key}` is not declared; expected one of "
                                f"{_listed(declared.metric_keys)}")
        if isinstance(value, list):
            if key not in declared.bin_keys or len(value) != NUM_BINS:
                raise EgressRefused(
                    f"metric `{key}` is a list of {len(value)}; expected a scalar (lists of "
                    f"{NUM_BINS} only under the reliability keys {_listed(declared.bin_keys, 3)})")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EgressRefused(f"metric `{key}` is a {type(value).__name__}; expected a number")


def check_config(name: str, record: ConfigRecord) -> None:
    """Scalars and strings only: no lists, no bytes."""
    for key, value in record.items():
        if not isinstance(value, (bool, int, float, str)):
            raise EgressRefused(f"config `{name}.{key}` is a {type(value).__name__}; expected a "
                                "number, bool or string")


def check_reply(content: RecordDict, declared: Declaration) -> None:
    """Raise `EgressRefused` for the first record, tensor or value `declared` does not allow."""
    for name in content.keys():
        record = content[name]
        if isinstance(record, ArrayRecord) and name == "arrays" and declared.tensors:
            check_tensors(record, declared.tensors)
        elif isinstance(record, MetricRecord) and name == "metrics":
            check_metrics(record, declared)
        elif isinstance(record, ConfigRecord) and name in declared.config_records:
            check_config(name, record)
        else:
            allowed = (["arrays"] if declared.tensors else []) + ["metrics"] + sorted(
                declared.config_records)
            raise EgressRefused(f"record `{name}` ({type(record).__name__}) is not declared for "
                                f"this reply; expected only {_listed(allowed)}")


# --- 3. The egress log, and the reply that leaves (its manifest: strategies.exchange) ---------

@dataclass(frozen=True)
class EgressLog:
    """One site's append-only egress log for one run (`SiteState.egress_log(run)`, in the site's
    own state folder): a JSON line per reply it sent or refused."""

    path: Path
    site: str
    run: str

    def append(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Write one line (flushed and fsynced before the reply is sent); return it as a dict."""
        line = {"time": datetime.now(UTC).isoformat(timespec="seconds"),
                "site": self.site, "run": self.run, **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = self.path.exists() and self.path.stat().st_size > 0 and \
            not self.path.read_bytes().endswith(b"\n")
        with open(self.path, "a", encoding="ascii") as handle:
            # A torn last line (a crash mid-write) stays as it is; this line starts afresh.
            handle.write(("\n" if torn else "") + canonical_json(line) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return line


def read_egress_log(path: Path) -> list[dict[str, Any]]:
    """Every whole line of an egress log (a torn last line is skipped)."""
    lines = Path(path).read_text(encoding="ascii").splitlines() if Path(path).exists() else []
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def attest(content: RecordDict, declared: Declaration, *, log: EgressLog, kind: MessageKind,
           server_round: int | None) -> RecordDict:
    """Check `content` against `declared`, log it, and add the `egress` record; see the module
    docstring. A refused reply is logged as `refused` (no digest) and `EgressRefused` raised."""
    where = {"message_type": kind, "server_round": server_round}
    try:
        check_reply(content, declared)
    except EgressRefused as refused:
        log.append({**where, "status": "refused", "reason": str(refused)})
        raise
    manifest = reply_manifest(content)
    digest = manifest_digest(manifest)
    tensors, size = manifest_totals(manifest)
    log.append({**where, "status": "sent", "tensors": tensors, "bytes": size, "digest": digest,
                "manifest": manifest})
    content[EGRESS_RECORD] = ConfigRecord({"digest": digest, "tensors": tensors, "bytes": size})
    return content
