"""Who took part in which round: `metrics.json`'s `participation` and the report's table.

A consortium site that had not identified itself by a round (it connected late, or never) is
`not joined` for that round: the run log only knows the sites the server had taken in. Every
other status is the run log's (strategies/run_log.py `PARTICIPATION`).
"""

from __future__ import annotations

from sites.config import ConsortiumConfig
from strategies.run_log import PARTICIPATION, RunLog

NOT_JOINED = "not joined"
STATUSES: dict[str, str] = {**PARTICIPATION,
                            NOT_JOINED: "had not yet identified itself to the server"}


def participation(consortium: ConsortiumConfig, run_log: RunLog, server_round: int) -> dict:
    """site -> {"train": status or None (external sites, round 0), "evaluate": status}."""
    recorded = run_log.participation.get(server_round, {})
    out = {}
    for site in consortium.sites:
        steps = recorded.get(site.name, {})
        trains = site.role == "train" and server_round > 0
        out[site.name] = {"train": steps.get("train", NOT_JOINED) if trains else None,
                          "evaluate": steps.get("evaluate", NOT_JOINED)}
    return out


def _cell(steps: dict) -> str:
    train, evaluate = steps["train"], steps["evaluate"]
    if train is None:
        return evaluate
    if train == evaluate or evaluate == "evaluated":
        return train
    return f"{train}; evaluation {evaluate}"


def participation_lines(metrics: dict) -> list[str]:
    """The report's table: one row per site, one column per round (nothing for a run recorded
    before participation was)."""
    rounds = [entry for entry in metrics["rounds"] if "participation" in entry]
    if not rounds:
        return []
    lines = ["## Who took part in each round", "",
             "Training sites: what they did with the round's training message (and the "
             "evaluation, when that went otherwise); the external site: its evaluation. "
             + "; ".join(f"*{status}*: {meaning}" for status, meaning in STATUSES.items()) + ".",
             "",
             "| Site | Role | " + " | ".join(str(e["round"]) for e in rounds) + " |",
             "|---|---|" + "---|" * len(rounds)]
    for site in metrics["sites"]:
        cells = [_cell(e["participation"][site["name"]]) if site["name"] in e["participation"]
                 else NOT_JOINED for e in rounds]
        lines.append(f"| {site['name']} | {site['role']} | " + " | ".join(cells) + " |")
    return lines + [""]
