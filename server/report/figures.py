"""The report's figures, one function each, drawn from `metrics.json` with matplotlib (Agg).

Each `plot_*` writes one PNG and returns True, or writes nothing and returns False when the run has
nothing to show (no external site, a run recorded before calibration), so the report leaves the
section's figure out instead of showing an empty plot. The privacy figure lives with the privacy
section (`server.report.privacy.plot_privacy`). Every figure uses the round the report calls final
(`server.report.data.selected_round`), so figures and tables agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.report.ceilings import ORACLE_LABEL, note_ceiling_label
from server.report.data import (
    final_entry,
    max_length,
    note_ceiling,
    oracle,
    selected_round,
    sites_with_role,
    task_values,
)
from sites.tasks import TASKS
from strategies.exchange import MIN_BIN_COUNT

AUROC_FIGURE = "auroc_per_round.png"
GAP_FIGURE = "external_gap.png"
CALIBRATION_FIGURE = "calibration.png"
PREVALENCE_FIGURE = "prevalence.png"
EXTERNAL_COLOR = "tab:red"
CALIBRATION_NOTE = (f"Bins with fewer than {MIN_BIN_COUNT} encounters (and, when those are few, "
                    "the next-smallest) stay at the site: they are not drawn.")
"""Printed under the reliability curves: a missing point is withheld, not absent."""


def _pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (imported lazily: it is slow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")  # "tight": keeps a legend beside the axes
    _pyplot().close(fig)


def _panels(n: int, width: float = 3.2, height: float = 3.0) -> tuple[Any, list[Any]]:
    fig, axes = _pyplot().subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])


def _round_curve(metrics: dict, site: str, task: str) -> tuple[list[int], list[float]]:
    points = [(entry["round"], task_values(entry, site, task).get("auroc"))
              for entry in metrics["rounds"]]
    points = [(r, v) for r, v in points if v is not None]
    return [r for r, _ in points], [v for _, v in points]


def plot_rounds(metrics: dict, path: Path) -> bool:
    """One panel per task: AUROC by round for every site (the external one dashed), the two
    ceilings as black lines (note-level dashed, latent oracle dotted), and the selected round
    marked."""
    from matplotlib.ticker import MaxNLocator

    tasks = metrics["run"]["tasks"]
    chosen = selected_round(metrics)
    fig, axes = _panels(len(tasks))
    for ax, task in zip(axes, tasks):
        for site in metrics["sites"]:
            rounds, values = _round_curve(metrics, site["name"], task)
            style = "--" if site["role"] == "external" else "-"
            ax.plot(rounds, values, style, marker="o", label=site["name"])
        notes, latent = note_ceiling(metrics, task), oracle(metrics, task)
        if notes is not None:
            ax.axhline(notes, color="black", linestyle="--", linewidth=1.2,
                       label=note_ceiling_label(max_length(metrics)))
        if latent is not None:
            ax.axhline(latent, color="black", linestyle=":", linewidth=1.2, label=ORACLE_LABEL)
        ax.axvline(chosen, color="grey", linestyle="-.", linewidth=1,
                   label=f"reported round {chosen}")
        ax.axhline(0.5, color="grey", linewidth=0.5)
        ax.set_title(task)
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0.3, 1.0)
    axes[0].set_ylabel("AUROC (test)")
    axes[-1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    _save(fig, path)
    return True


def _auroc_with_ci(values: dict) -> tuple[float | None, float | None, float | None]:
    low, high = values.get("ci") or [None, None]
    return values.get("auroc"), low, high


def _dot(ax: Any, x: float, values: dict, **style: Any) -> bool:
    """One AUROC dot at x with its CI as an error bar where known; False when no AUROC."""
    value, low, high = _auroc_with_ci(values)
    if value is None:
        return False
    if low is not None and high is not None:
        ax.errorbar([x], [value], yerr=[[value - low], [high - value]], fmt="o", capsize=3, **style)
    else:
        ax.plot([x], [value], "o", **style)
    return True


def plot_external_gap(metrics: dict, path: Path) -> bool:
    """Per task, at the selected round: each training site's AUROC with its CI (grey), their mean
    (black bar) and the external site's AUROC with its CI (red). False without an external site."""
    external, inside = sites_with_role(metrics, "external"), sites_with_role(metrics, "train")
    entry, tasks = final_entry(metrics), metrics["run"]["tasks"]
    if not external or not any(task_values(entry, s, t).get("auroc") is not None
                               for s in external for t in tasks):
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(2.0 + 1.6 * len(tasks), 3.4))
    for i, task in enumerate(tasks):
        values = [task_values(entry, s, task) for s in inside]
        for j, site_values in enumerate(values):
            _dot(ax, i - 0.25 + 0.12 * j / max(1, len(values) - 1), site_values, color="grey",
                 alpha=0.6, markersize=4)
        present = [v["auroc"] for v in values if v.get("auroc") is not None]
        if present:
            ax.hlines(sum(present) / len(present), i - 0.32, i - 0.06, color="black", linewidth=2)
        for k, site in enumerate(external):
            _dot(ax, i + 0.15 + 0.08 * k, task_values(entry, site, task), color=EXTERNAL_COLOR)
    ax.plot([], [], "o", color="grey", label="training site (95 % CI)")
    ax.plot([], [], "-", color="black", linewidth=2, label="training sites' mean")
    ax.plot([], [], "o", color=EXTERNAL_COLOR, label="external site (95 % CI)")
    ax.set_xticks(range(len(tasks)), tasks)
    ax.axhline(0.5, color="grey", linewidth=0.5)
    ax.set_ylabel(f"AUROC (test, round {selected_round(metrics)})")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    _save(fig, path)
    return True


def _reliability_points(values: dict) -> tuple[list[float], list[float]]:
    """The published (non-null) bins of one site's reliability curve."""
    bins = values.get("reliability") or {}
    pairs = zip(bins.get("confidence", []), bins.get("frequency", []))
    points = [(c, f) for c, f in pairs if c is not None and f is not None]
    return [c for c, _ in points], [f for _, f in points]


def plot_reliability(metrics: dict, path: Path) -> bool:
    """One panel per task: observed frequency against mean confidence per bin, a line per site,
    the diagonal as the perfectly calibrated reference, and a note that small bins are withheld.
    False when no site sent bins."""
    tasks, entry = metrics["run"]["tasks"], final_entry(metrics)
    curves = {(s["name"], t): _reliability_points(task_values(entry, s["name"], t))
              for s in metrics["sites"] for t in tasks}
    if not any(x for x, _ in curves.values()):
        return False
    fig, axes = _panels(len(tasks), height=3.2)
    for ax, task in zip(axes, tasks):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect")
        for site in metrics["sites"]:
            x, y = curves[site["name"], task]
            style = "--" if site["role"] == "external" else "-"
            ax.plot(x, y, style, marker="o", markersize=3, label=site["name"])
        ax.set_title(task)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted (mean per bin)")
    axes[0].set_ylabel("observed (rate per bin)")
    axes[-1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.text(0.01, -0.02, CALIBRATION_NOTE, fontsize="small", ha="left", va="top")
    _save(fig, path)
    return True


def plot_prevalence(metrics: dict, path: Path) -> bool:
    """Grouped bars: per task, each site's label prevalence on its test split (binary: share of
    positives; multi-class: share of the majority class). False when no site reported any."""
    tasks, entry, sites = metrics["run"]["tasks"], final_entry(metrics), metrics["sites"]
    table = [[task_values(entry, s["name"], t).get("prevalence") for t in tasks] for s in sites]
    if all(v is None for row in table for v in row):
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(2.0 + 1.6 * len(tasks), 3.2))
    width = 0.8 / max(1, len(sites))
    for k, (site, row) in enumerate(zip(sites, table)):
        heights = [0.0 if v is None else v for v in row]
        hatch = "//" if site["role"] == "external" else None
        ax.bar([i - 0.4 + width * (k + 0.5) for i in range(len(tasks))], heights, width,
               label=site["name"], hatch=hatch)
    ax.set_xticks(range(len(tasks)),
                  [t if TASKS[t].is_binary else f"{t}\n(majority class)" for t in tasks])
    ax.set_ylim(0, 1)
    ax.set_ylabel("label prevalence (test)")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    _save(fig, path)
    return True
