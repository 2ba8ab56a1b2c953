"""What a site tells the server about its privacy each round: aggregate parameters, never data.

A `privacy` ConfigRecord rides along with every training reply (Flower checks only the array and
metric records for consistency, so its keys may differ between DP and non-DP sites). It carries the
parameters a reviewer needs to re-derive the spend and the hash of the site's last ledger entry —
the anchor that makes a ledger cut short detectable — and, when the site declined the round, why.
"""

from __future__ import annotations

import re

from flwr.app import ConfigRecord, Context

from client.privacy_plan import PrivacyPlan
from client.site_budget import BudgetExhausted, Charge

_RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def run_name(config: ConfigRecord, context: Context) -> str:
    """The run the server says this is (it names the site's ledger file), checked to be a plain
    file name: a server must not be able to point a site's ledger anywhere else."""
    name = str(config.get("run-name", "") or f"flwr-run-{context.run_id}")
    if not _RUN_NAME.fullmatch(name):
        raise ValueError(f"train config: `run-name` is {name!r}; expected letters, digits, '.', "
                         "'_' or '-', not starting with '.'")
    return name


def _plan_fields(plan: PrivacyPlan) -> dict[str, object]:
    return {
        "dp": True,
        "delta": plan.delta,
        "target-epsilon": plan.target_epsilon,
        "max-grad-norm": plan.max_grad_norm,
        "accountant": plan.accountant,
    }


def privacy_record(charge: Charge | None, plan: PrivacyPlan | None) -> ConfigRecord:
    """The round's privacy parameters (DP sites) or `dp = False` (sites without DP)."""
    if charge is None or plan is None:
        return ConfigRecord({"dp": False, "declined": ""})
    return ConfigRecord({
        **_plan_fields(plan),
        "epsilon": charge.epsilon,
        "noise-multiplier": charge.noise_multiplier,
        "sample-rate": charge.sample_rate,
        "steps": charge.steps,
        "ledger-head": charge.ledger_head,
        "declined": "",
    })


def declined_record(declined: BudgetExhausted) -> ConfigRecord:
    """A site out of budget: its spend so far and the reason, in place of a trained adapter."""
    return ConfigRecord({**_plan_fields(declined.plan), "epsilon": declined.spent,
                         "declined": str(declined)})
