"""`report.md` (and a per-round AUROC figure) from a run's `metrics.json`.

Written for a consortium coordinator who never opens JSON: one table per task with every site —
the external health system marked — its AUROC before training (round 0) and after the last round
with the 95 % bootstrap interval, the oracle AUROC (the ceiling the synthetic generator knows), and
the share of the round-0-to-oracle gap that federated training closed.

A privacy section follows for a privacy reviewer (`server.privacy_report`): per-site budget and
spend, how to verify each site's ledger, and what the DP guarantee does and does not cover.
"""

from __future__ import annotations

import json
from pathlib import Path

from server.privacy_report import FIGURE as PRIVACY_FIGURE
from server.privacy_report import plot_privacy, render_privacy_section
from sites.tasks import TASKS


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def gap_closed(start: float | None, end: float | None, oracle: float | None) -> float | None:
    """Share of the distance from round 0 to the oracle that training covered."""
    if None in (start, end, oracle) or oracle - start <= 1e-9:
        return None
    return (end - start) / (oracle - start)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _task_table(metrics: dict, task: str) -> list[str]:
    first, last = metrics["rounds"][0], metrics["rounds"][-1]
    lines = [
        "| site | role | n | prevalence | AUROC round 0 | AUROC final [95 % CI] | oracle | gap closed |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for site in metrics["sites"]:
        name = site["name"]
        start = first["evaluation"].get(name, {}).get("tasks", {}).get(task, {})
        end = last["evaluation"].get(name, {}).get("tasks", {}).get(task, {})
        low, high = end.get("ci", [None, None])
        role = "**external**" if site["role"] == "external" else site["role"]
        lines.append(
            f"| {name} | {role} | {end.get('n', '–')} | {_fmt(end.get('prevalence'), 2)} "
            f"| {_fmt(start.get('auroc'))} | {_fmt(end.get('auroc'))} [{_fmt(low)}, {_fmt(high)}] "
            f"| {_fmt(end.get('oracle_auroc'))} "
            f"| {_percent(gap_closed(start.get('auroc'), end.get('auroc'), end.get('oracle_auroc')))} |"
        )
    return lines


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def headline(metrics: dict) -> dict[str, dict[str, float | None]]:
    """Per task: the external site before/after, and the training sites' mean before/after/oracle.

    These are the run's questions in one line each: did federation help the system that never
    trained, and how much of the distance to the ceiling did it cover where it did train?
    """
    first, last = metrics["rounds"][0]["evaluation"], metrics["rounds"][-1]["evaluation"]
    roles = {s["name"]: s["role"] for s in metrics["sites"]}

    def auroc(rounds: dict, site: str, task: str, field: str = "auroc") -> float | None:
        return rounds.get(site, {}).get("tasks", {}).get(task, {}).get(field)

    summary = {}
    for task in metrics["run"]["tasks"]:
        inside = [s for s, role in roles.items() if role == "train"]
        external = [s for s, role in roles.items() if role == "external"]
        start = _mean([auroc(first, s, task) for s in inside])
        end = _mean([auroc(last, s, task) for s in inside])
        oracle = _mean([auroc(last, s, task, "oracle_auroc") for s in inside])
        summary[task] = {
            "external_round0": _mean([auroc(first, s, task) for s in external]),
            "external_final": _mean([auroc(last, s, task) for s in external]),
            "in_distribution_round0": start,
            "in_distribution_final": end,
            "in_distribution_oracle": oracle,
            "gap_closed": gap_closed(start, end, oracle),
        }
    return summary


def _headline_table(metrics: dict) -> list[str]:
    lines = [
        "| task | external: round 0 → final | training sites (mean): round 0 → final | oracle | gap closed |",
        "|---|---|---|---:|---:|",
    ]
    for task, row in headline(metrics).items():
        gap = _percent(row["gap_closed"])
        lines.append(
            f"| {task} | {_fmt(row['external_round0'])} → {_fmt(row['external_final'])} "
            f"| {_fmt(row['in_distribution_round0'])} → {_fmt(row['in_distribution_final'])} "
            f"| {_fmt(row['in_distribution_oracle'])} | {gap} |"
        )
    return lines


def _loss(value: float | None) -> str:
    return "withheld (DP)" if value is None else f"{value:.4f}"


def _training_table(metrics: dict) -> list[str]:
    lines = ["| round | site | loss | steps | train examples | upload bytes |", "|---:|---|---:|---:|---:|---:|"]
    for entry in metrics["rounds"]:
        for site, values in entry["training"].items():
            lines.append(
                f"| {entry['round']} | {site} | {_loss(values['train-loss'])} | {int(values['steps'])} "
                f"| {int(values['num-examples'])} | {int(values['upload-bytes']):,} |"
            )
    return lines


def _problems(metrics: dict) -> list[str]:
    lines = []
    for entry in metrics["rounds"]:
        if entry["skipped"]:
            lines.append(f"- Round {entry['round']} was skipped: too few training sites replied.")
        lines += [f"- Round {entry['round']}: {failure}" for failure in entry["failures"]]
    return lines or ["- None: every site replied in every round."]


def render_markdown(metrics: dict, figure: str | None, privacy_figure: str | None = None) -> str:
    run, upload = metrics["run"], metrics["upload"]
    lines = [
        f"# lang1-fl run — consortium `{run['consortium']}`",
        "",
        f"Strategy **{run['strategy']}**, {run['num_rounds']} rounds, base model "
        f"`{run['base_model']}` with LoRA r={run['lora']['r']}, tasks: {', '.join(run['tasks'])}; "
        f"seed {run['seed']}; wall time {run['duration_s']:.0f} s.",
        "",
    ]
    if run["outcome"] != "completed":
        lines += [f"**The run failed: {run['outcome']}.** See the missing sites below.", ""]
    lines += [
        "AUROC on each training site's held-out test split and on all of the external system's "
        "encounters (one-vs-rest macro for multi-class tasks), 95 % "
        f"CI from {run['bootstrap_resamples']} stratified bootstrap resamples. Round 0 is the "
        "untrained model. The **external** site never trained: its numbers are out of "
        "distribution. *Oracle* is the AUROC of the true label probabilities the synthetic "
        "generator knows (the ceiling; none for real data); *gap closed* = (final − round 0) ÷ "
        "(oracle − round 0).",
        "",
    ]
    lines += ["## Summary", ""] + _headline_table(metrics) + [""]
    for task in run["tasks"]:
        spec = TASKS[task]
        lines += [f"## {task} — {spec.description} ({spec.num_classes} classes, {spec.note} note)", ""]
        lines += _task_table(metrics, task) + [""]
    if figure:
        lines += ["## AUROC per round", "", f"![AUROC per round]({figure})", ""]
    lines += ["## Training", ""] + _training_table(metrics) + [""]
    lines += [
        "## What left the sites",
        "",
        f"Each training site uploaded at most {upload['bytes_per_site_per_round']:,} bytes per "
        f"round (LoRA adapter and task heads, serialized), "
        f"{_fmt(100 * upload['ratio_to_base_model'], 2)} % of the base model's "
        f"{upload['base_model_bytes']:,} bytes. Evaluation replies carry aggregate metrics only.",
        "",
    ]
    lines += render_privacy_section(metrics, privacy_figure)
    lines += ["## Missing sites and skipped rounds", ""]
    lines += _problems(metrics) + [""]
    return "\n".join(lines)


def plot_rounds(metrics: dict, path: Path) -> None:
    """One panel per task: AUROC by round for every site, the external one dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = metrics["run"]["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for site in metrics["sites"]:
            rounds, values = [], []
            for entry in metrics["rounds"]:
                value = entry["evaluation"].get(site["name"], {}).get("tasks", {}).get(task, {})
                if value.get("auroc") is not None:
                    rounds.append(entry["round"])
                    values.append(value["auroc"])
            style = "--" if site["role"] == "external" else "-"
            ax.plot(rounds, values, style, marker="o", label=site["name"])
        ax.set_title(task)
        ax.set_xlabel("round")
        ax.set_ylim(0.3, 1.0)
        ax.axhline(0.5, color="grey", linewidth=0.5)
    axes[0][0].set_ylabel("AUROC (test)")
    axes[0][-1].legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(run_dir: Path, metrics_path: Path | None = None) -> Path:
    """Write `report.md`, `auroc_per_round.png` and (when a site used DP) `privacy_per_round.png`
    beside `metrics.json`; return the report path."""
    metrics = json.loads((metrics_path or run_dir / "metrics.json").read_text())
    figure = "auroc_per_round.png"
    plot_rounds(metrics, run_dir / figure)
    privacy_figure = PRIVACY_FIGURE if plot_privacy(metrics, run_dir / PRIVACY_FIGURE) else None
    path = run_dir / "report.md"
    path.write_text(render_markdown(metrics, figure, privacy_figure))
    return path
