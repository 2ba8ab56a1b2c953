"""The headline numbers of a transfer experiment, computed from its `transfer.json` dict.

`lang1-fl experiment transfer` trains several regimes (untrained, federated, local-only per site,
leave-one-site-out, pooled, optionally single-task) with the same base, LoRA config, steps and
seeds, and evaluates each at every site. The question a consortium asks of that matrix is short:
does federation come close to pooling the data (which a real consortium cannot do), does it beat
each hospital training alone on the health system that never trained, and how much of the distance
to the ceiling does it cover where it did train? That ceiling is the note-level one, the oracle
only where an experiment has none (`server.report.ceilings`). This module answers it in plain functions over
the dict, so the report (`server.report.transfer`) and the bench script print the same numbers.

Every float in the file may be null (an undefined AUROC, no ceilings on real data) and any regime
but the federated one may be missing: a number that cannot be computed is `None` with a reason,
never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from server.report.ceilings import gap_ceiling
from server.report.markdown import gap_closed as _gap_closed

FEDERATED_OVER_POOLED_GOAL = 0.99
"""Federated external macro AUROC ÷ pooled: federation should lose at most 1 % to pooling."""
FEDERATED_MINUS_BEST_LOCAL_GOAL = 0.03
"""Federated − best local-only external macro AUROC: joining should gain at least 0.03 AUROC."""
GAP_CLOSED_GOAL = 0.80
"""In-distribution share of the untrained-to-note-ceiling distance federation should cover
(issue 36's goal, measured against the note-level ceiling since the oracle is out of reach)."""
_TOLERANCE = 1e-9
"""A value equal to its goal up to float rounding counts as met (0.99 computed is not 0.99 typed)."""

HeadlineKey = Literal["federated_over_pooled", "federated_minus_best_local", "gap_closed"]
Transfer = dict[str, Any]
"""The parsed `transfer.json` (schema in the module docstring of `server.report.transfer`)."""


@dataclass(frozen=True)
class HeadlineNumber:
    """One headline number with its goal; `value` and `met` are `None` when it cannot be computed."""

    key: HeadlineKey
    label: str
    """What the number is, in a coordinator's words."""
    value: float | None
    goal: float
    """The number should be at least this (all three goals are lower bounds)."""
    met: bool | None
    reason: str | None = None
    """Why `value` is `None` (missing regime, no ceiling, undefined AUROC); `None` otherwise."""
    detail: str | None = None
    """Context for the value, e.g. which local-only site was best."""


@dataclass(frozen=True)
class SiteSpread:
    """One regime and task over the training sites: the worst site and the best-minus-worst gap."""

    regime: str
    task: str
    worst_site: str | None
    worst_auroc: float | None
    spread: float | None
    """Max − min AUROC over training sites; `None` with fewer than two defined AUROCs."""
    external_auroc: float | None
    """Mean AUROC over the external site(s), shown beside the training-site numbers."""


@dataclass(frozen=True)
class CrossTaskCell:
    """One task at one site: trained alone (single-task federated) vs jointly with all tasks."""

    task: str
    site: str
    single_task_regime: str
    single_task_auroc: float | None
    joint_auroc: float | None
    """The `federated` regime's AUROC (all tasks trained jointly)."""
    difference: float | None
    """Joint − single-task: positive means joint training helped this task at this site."""


@dataclass(frozen=True)
class TransferSummary:
    """Every number the transfer report states, per regime and for the headline."""

    training_sites: tuple[str, ...]
    external_sites: tuple[str, ...]
    regimes: tuple[str, ...]
    """Regime names in file order."""
    external_macro: dict[str, float | None]
    """Per regime: mean over external sites of the macro AUROC over the regime's tasks."""
    in_distribution: dict[str, float | None]
    """Per regime: mean AUROC over training sites and the regime's tasks."""
    oracle_in_distribution: float | None
    """Mean oracle AUROC over training sites and the federated regime's tasks; `None` on real data."""
    note_ceiling_in_distribution: float | None
    """The same mean of the note-level ceiling; `None` on real data and experiments before it."""
    best_local_site: str | None
    headline: tuple[HeadlineNumber, HeadlineNumber, HeadlineNumber]
    """federated ÷ pooled (external), federated − best local (external), gap closed (in-distribution)."""
    site_spread: tuple[SiteSpread, ...]
    cross_task: tuple[CrossTaskCell, ...]
    """Empty when the experiment has no single-task regimes."""
    chose_last_round: tuple[str, ...]
    """Trained regimes whose chosen round was the experiment's last (see `chose_last_round`)."""


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def sites_with_role(transfer: Transfer, role: Literal["train", "external"]) -> tuple[str, ...]:
    """Names of the sites with `role`, in file order."""
    return tuple(s["name"] for s in transfer.get("sites", []) if s.get("role") == role)


def find_regime(transfer: Transfer, name: str) -> dict[str, Any] | None:
    """The regime entry called `name`, or `None` when the experiment did not run it."""
    return next((r for r in transfer.get("regimes", []) if r.get("name") == name), None)


def cell(transfer: Transfer, regime: str, site: str, task: str) -> dict[str, Any]:
    """The evaluation of `regime` at `site` on `task` (`{}` when absent)."""
    return transfer.get("cells", {}).get(regime, {}).get(site, {}).get(task) or {}


def regime_tasks(transfer: Transfer, regime: str) -> tuple[str, ...]:
    """The tasks `regime` trained (and was evaluated) on; empty for an unknown regime."""
    entry = find_regime(transfer, regime)
    return tuple(entry.get("tasks", [])) if entry else ()


def macro_auroc(transfer: Transfer, regime: str, site: str) -> float | None:
    """Mean AUROC of `regime` at `site` over the regime's tasks (nulls ignored)."""
    return _mean([cell(transfer, regime, site, t).get("auroc") for t in regime_tasks(transfer, regime)])


def external_macro(transfer: Transfer, regime: str) -> float | None:
    """Mean over the external sites of `regime`'s macro AUROC there."""
    return _mean([macro_auroc(transfer, regime, s) for s in sites_with_role(transfer, "external")])


def in_distribution(transfer: Transfer, regime: str) -> float | None:
    """Mean AUROC of `regime` over every (training site, task) cell with a defined AUROC."""
    tasks = regime_tasks(transfer, regime)
    sites = sites_with_role(transfer, "train")
    return _mean([cell(transfer, regime, s, t).get("auroc") for s in sites for t in tasks])


def _split_property(transfer: Transfer, site: str, task: str, field: str) -> float | None:
    """A value of `site`'s test split, not of a regime (a ceiling): the first regime's that
    reports one (`None` if none does)."""
    for regime in transfer.get("regimes", []):
        value = cell(transfer, regime.get("name", ""), site, task).get(field)
        if value is not None:
            return value
    return None


def oracle_auroc(transfer: Transfer, site: str, task: str) -> float | None:
    """The oracle AUROC of `task` at `site` (`None` on real data)."""
    return _split_property(transfer, site, task, "oracle_auroc")


def note_ceiling_auroc(transfer: Transfer, site: str, task: str) -> float | None:
    """The note-level ceiling of `task` at `site` (`None` on real data and older experiments)."""
    return _split_property(transfer, site, task, "note_ceiling_auroc")


def oracle_in_distribution(transfer: Transfer, tasks: tuple[str, ...] | None = None) -> float | None:
    """Mean oracle AUROC over training sites and `tasks` (default: the federated regime's)."""
    tasks = regime_tasks(transfer, "federated") if tasks is None else tasks
    sites = sites_with_role(transfer, "train")
    return _mean([oracle_auroc(transfer, s, t) for s in sites for t in tasks])


def note_ceiling_in_distribution(transfer: Transfer,
                                 tasks: tuple[str, ...] | None = None) -> float | None:
    """Mean note-level ceiling over training sites and `tasks` (default: the federated regime's)."""
    tasks = regime_tasks(transfer, "federated") if tasks is None else tasks
    sites = sites_with_role(transfer, "train")
    return _mean([note_ceiling_auroc(transfer, s, t) for s in sites for t in tasks])


def _number(
    key: HeadlineKey,
    label: str,
    goal: float,
    value: float | None,
    reason: str | None = None,
    detail: str | None = None,
) -> HeadlineNumber:
    met = None if value is None else value >= goal - _TOLERANCE
    return HeadlineNumber(key, label, value, goal, met, None if value is not None else reason, detail)


def _missing(transfer: Transfer, *regimes: str) -> str | None:
    absent = [f"`{name}`" for name in regimes if find_regime(transfer, name) is None]
    plural = "s" if len(absent) > 1 else ""
    return f"no {' or '.join(absent)} regime{plural} in the experiment" if absent else None


def federated_over_pooled(transfer: Transfer) -> HeadlineNumber:
    """External macro AUROC of the federation ÷ that of one model trained on the pooled data."""
    key: HeadlineKey = "federated_over_pooled"
    label = "External macro AUROC, federated ÷ pooled"
    goal = FEDERATED_OVER_POOLED_GOAL
    if reason := _missing(transfer, "federated", "pooled"):
        return _number(key, label, goal, None, reason)
    federated, pooled = external_macro(transfer, "federated"), external_macro(transfer, "pooled")
    if federated is None or pooled is None:
        which = "federated" if federated is None else "pooled"
        return _number(key, label, goal, None, f"no defined external AUROC for `{which}`")
    if pooled <= 0:
        return _number(key, label, goal, None, "pooled external AUROC is 0")
    detail = f"federated {federated:.3f}, pooled {pooled:.3f}"
    return _number(key, label, goal, federated / pooled, detail=detail)


def best_local(transfer: Transfer) -> tuple[str, str, float] | None:
    """(regime, site, external macro AUROC) of the local-only regime best on the external sites."""
    scored = []
    for regime in transfer.get("regimes", []):
        value = external_macro(transfer, regime["name"]) if regime.get("kind") == "local" else None
        if value is not None:
            site = (regime.get("trained_on") or [regime["name"].removeprefix("local:")])[0]
            scored.append((regime["name"], site, value))
    return max(scored, key=lambda entry: entry[2], default=None)


def federated_minus_best_local(transfer: Transfer) -> HeadlineNumber:
    """External macro AUROC of the federation minus that of the best site training alone."""
    key: HeadlineKey = "federated_minus_best_local"
    label = "External macro AUROC, federated − best local-only"
    goal = FEDERATED_MINUS_BEST_LOCAL_GOAL
    if reason := _missing(transfer, "federated"):
        return _number(key, label, goal, None, reason)
    if not any(r.get("kind") == "local" for r in transfer.get("regimes", [])):
        return _number(key, label, goal, None, "no local-only regime in the experiment")
    best = best_local(transfer)
    if best is None:
        return _number(key, label, goal, None, "no local-only regime has an external AUROC")
    federated = external_macro(transfer, "federated")
    if federated is None:
        return _number(key, label, goal, None, "no defined external AUROC for `federated`")
    detail = f"best local-only: `{best[1]}` ({best[2]:.3f})"
    return _number(key, label, goal, federated - best[2], detail=detail)


def gap_closed(transfer: Transfer) -> HeadlineNumber:
    """In-distribution (federated − untrained) ÷ (ceiling − untrained) over training sites and
    tasks; the ceiling is the note-level one, else the oracle (the label says which)."""
    key: HeadlineKey = "gap_closed"
    ceiling, basis = gap_ceiling(note_ceiling_in_distribution(transfer),
                                 oracle_in_distribution(transfer))
    label = (f"In-distribution gap closed, (federated − untrained) ÷ ({basis or 'ceiling'} − "
             "untrained)")
    if basis == "oracle":
        label += "; no note ceiling in this experiment"
    goal = GAP_CLOSED_GOAL
    if reason := _missing(transfer, "federated", "untrained"):
        return _number(key, label, goal, None, reason)
    if ceiling is None:
        return _number(key, label, goal, None,
                       "no note ceiling or oracle AUROC (real data has neither)")
    start, end = in_distribution(transfer, "untrained"), in_distribution(transfer, "federated")
    if start is None or end is None:
        which = "untrained" if start is None else "federated"
        return _number(key, label, goal, None, f"no defined in-distribution AUROC for `{which}`")
    value = _gap_closed(start, end, ceiling)
    reason = (None if value is not None
              else f"untrained ({start:.3f}) is already at the {basis} ({ceiling:.3f})")
    detail = f"untrained {start:.3f} → federated {end:.3f}, {basis} {ceiling:.3f}"
    return _number(key, label, goal, value, reason, detail)


def _spread(transfer: Transfer, regime: str, task: str) -> SiteSpread:
    by_site = {s: cell(transfer, regime, s, task).get("auroc") for s in sites_with_role(transfer, "train")}
    defined = {s: v for s, v in by_site.items() if v is not None}
    worst = min(defined, key=defined.__getitem__, default=None)
    spread = max(defined.values()) - min(defined.values()) if len(defined) >= 2 else None
    outside = sites_with_role(transfer, "external")
    external = _mean([cell(transfer, regime, s, task).get("auroc") for s in outside])
    return SiteSpread(regime, task, worst, defined.get(worst) if worst else None, spread, external)


def site_spread(transfer: Transfer) -> tuple[SiteSpread, ...]:
    """Per regime (file order) and each of its tasks: worst training site, spread, external AUROC."""
    regimes = transfer.get("regimes", [])
    return tuple(_spread(transfer, r["name"], task) for r in regimes for task in r.get("tasks", []))


def cross_task(transfer: Transfer) -> tuple[CrossTaskCell, ...]:
    """Per single-task regime, task and site (training, then external): alone vs joint AUROC."""
    sites = sites_with_role(transfer, "train") + sites_with_role(transfer, "external")
    cells = []
    for regime in transfer.get("regimes", []):
        if regime.get("kind") != "single-task":
            continue
        for task in regime.get("tasks", []):
            for site in sites:
                alone = cell(transfer, regime["name"], site, task).get("auroc")
                joint = cell(transfer, "federated", site, task).get("auroc")
                difference = None if alone is None or joint is None else joint - alone
                cells.append(CrossTaskCell(task, site, regime["name"], alone, joint, difference))
    return tuple(cells)


def chose_last_round(transfer: Transfer) -> tuple[str, ...]:
    """Trained regimes whose validation-chosen round was the last one the experiment ran.

    Their validation score may still have been improving, so the experiment compared them before
    they were done: a regime stopped early looks worse than it is. With one round there is no
    choice to make, and a regime without a validation score for its last round got that round by
    `select_round`'s fallback, not by choice: neither is named."""
    last = transfer.get("num_rounds")
    if not isinstance(last, int) or last < 2:
        return ()
    return tuple(r["name"] for r in transfer.get("regimes", [])
                 if r.get("kind") != "untrained" and r.get("selected_round") == last
                 and (r.get("validation_per_round") or {}).get(str(last)) is not None)


def summarize_transfer(transfer: Transfer) -> TransferSummary:
    """Every number of the transfer report from the parsed `transfer.json`."""
    names = tuple(r["name"] for r in transfer.get("regimes", []))
    best = best_local(transfer)
    return TransferSummary(
        training_sites=sites_with_role(transfer, "train"),
        external_sites=sites_with_role(transfer, "external"),
        regimes=names,
        external_macro={name: external_macro(transfer, name) for name in names},
        in_distribution={name: in_distribution(transfer, name) for name in names},
        oracle_in_distribution=oracle_in_distribution(transfer),
        note_ceiling_in_distribution=note_ceiling_in_distribution(transfer),
        best_local_site=best[1] if best else None,
        headline=(
            federated_over_pooled(transfer),
            federated_minus_best_local(transfer),
            gap_closed(transfer),
        ),
        site_spread=site_spread(transfer),
        cross_task=cross_task(transfer),
        chose_last_round=chose_last_round(transfer),
    )
