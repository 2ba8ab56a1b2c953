"""Reading a run's `metrics.json` for the report: which round is "final", and a site's numbers.

One place decides which round the report calls final, so the tables and every figure agree: the
round the server selected on validation (`metrics["selection"]`, written since round
selection exists), or the last round for a run recorded before that. Test numbers never choose it.
Every accessor tolerates fields that older runs did not write (calibration, validation, selection,
the note-level ceiling) by returning None or an empty value, so old runs still render.
"""

from __future__ import annotations

from typing import Any

Entry = dict[str, Any]
"""One element of `metrics["rounds"]`: {"round", "evaluation", "training", ...}."""


def rounds_by_number(metrics: dict) -> dict[int, Entry]:
    return {int(entry["round"]): entry for entry in metrics["rounds"]}


def selection(metrics: dict) -> dict | None:
    """`metrics["selection"]` when it names a round the run recorded, else None."""
    chosen = metrics.get("selection")
    if not chosen or chosen.get("round") is None:
        return None
    return chosen if int(chosen["round"]) in rounds_by_number(metrics) else None


def selected_round(metrics: dict) -> int:
    """The round the report calls final: the validation-selected one, else the last."""
    chosen = selection(metrics)
    return int(chosen["round"]) if chosen else max(rounds_by_number(metrics))


def first_entry(metrics: dict) -> Entry:
    return rounds_by_number(metrics)[min(rounds_by_number(metrics))]


def final_entry(metrics: dict) -> Entry:
    return rounds_by_number(metrics)[selected_round(metrics)]


def task_values(entry: Entry, site: str, task: str) -> dict[str, Any]:
    """A site's nested numbers for a task in one round ({} when the site did not reply)."""
    return entry["evaluation"].get(site, {}).get("tasks", {}).get(task, {})


def validation_values(entry: Entry, site: str, task: str) -> dict[str, Any]:
    """A site's validation {"auroc", "n"} for a task in one round ({} before round selection)."""
    return entry["evaluation"].get(site, {}).get("validation", {}).get(task, {})


def sites_with_role(metrics: dict, role: str) -> list[str]:
    return [site["name"] for site in metrics["sites"] if site["role"] == role]


def mean(values: list[float | None]) -> float | None:
    """Mean of the values present; None when none is."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def oracle(metrics: dict, task: str) -> float | None:
    """The ceiling for `task`: mean oracle AUROC over the training sites that have one, at the
    final round (the oracle scores the generator's true probabilities, so any round gives it)."""
    entry = final_entry(metrics)
    return mean([task_values(entry, s, task).get("oracle_auroc")
                 for s in sites_with_role(metrics, "train")])


def note_ceiling(metrics: dict, task: str) -> float | None:
    """The note-level ceiling for `task` (`server.report.ceilings`): mean over the training sites
    that sent one, at the final round; None for runs recorded before sites sent it, and real data."""
    entry = final_entry(metrics)
    return mean([task_values(entry, s, task).get("note_ceiling_auroc")
                 for s in sites_with_role(metrics, "train")])


def max_length(metrics: dict) -> int | None:
    """Tokens of each note the run's models read (`max-length`), where the run recorded it."""
    value = metrics.get("run", {}).get("max_length")
    return None if value is None else int(value)


def has_calibration(metrics: dict) -> bool:
    """Whether any site sent reliability bins in the final round (older runs did not)."""
    entry = final_entry(metrics)
    return any("reliability" in task_values(entry, s["name"], t)
               for s in metrics["sites"] for t in metrics["run"]["tasks"])


def has_validation(metrics: dict) -> bool:
    entry = final_entry(metrics)
    return any(site.get("validation") for site in entry["evaluation"].values())


def criterion_word(chosen: dict) -> str:
    """`loss` or `AUROC`: what chose the reported round (`selection.by`; runs recorded before
    `round-selection` lack it and chose on AUROC)."""
    return "loss" if chosen.get("by") == "loss" else "AUROC"
