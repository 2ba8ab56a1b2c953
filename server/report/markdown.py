"""`report.md` with its figures, and the same page as a self-contained `report.html`.

Written for a consortium coordinator who never opens JSON: which round is reported and why (the
round selected on validation, never test), one table per task with every site — the external
health system marked — its AUROC before training (round 0) and at the reported round with the 95 %
bootstrap interval, the two ceilings synthetic data has (the note-level ceiling and the latent
oracle, `server.report.ceilings`) and the share of the gap from round 0 to the note-level ceiling
that federated training closed; then figures with a sentence each: AUROC by round, external vs
in-distribution, calibration, label prevalence.

A privacy section follows for a privacy reviewer (`server.report.privacy`): per-site budget and
spend, how to verify each site's ledger, and what the DP guarantee does and does not cover.
Figures are drawn by `server.report.figures`, the newer sections rendered by
`server.report.sections`, and "final" always means `server.report.data.selected_round`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from server.report.ceilings import (
    ORACLE_LABEL,
    GapBasis,
    basis_note,
    gap_ceiling,
    note_ceiling_label,
)
from server.report.data import (
    final_entry,
    first_entry,
    max_length,
    mean,
    note_ceiling,
    selected_round,
    sites_with_role,
    task_values,
)
from server.report.data import oracle as oracle_auroc
from server.report.figures import (
    AUROC_FIGURE,
    CALIBRATION_FIGURE,
    GAP_FIGURE,
    PREVALENCE_FIGURE,
    plot_external_gap,
    plot_prevalence,
    plot_reliability,
    plot_rounds,
)
from server.report.html import write_html
from server.report.participation import participation_lines
from server.report.privacy import FIGURE as PRIVACY_FIGURE
from server.report.privacy import plot_privacy, render_privacy_section
from server.report.sections import (
    calibration_lines,
    egress_lines,
    gap_lines,
    is_thin,
    prevalence_lines,
    selection_lines,
)
from server.round_selection import MIN_LABELS
from sites.tasks import TASKS


@dataclass(frozen=True)
class ReportFigures:
    """File names (beside report.md) of the figures that were written; None: not written."""

    auroc: str | None = None
    external_gap: str | None = None
    calibration: str | None = None
    prevalence: str | None = None
    privacy: str | None = None


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def gap_closed(start: float | None, end: float | None, ceiling: float | None) -> float | None:
    """Share of the distance from round 0 to the ceiling (`server.report.ceilings`) that
    training covered."""
    if None in (start, end, ceiling) or ceiling - start <= 1e-9:
        return None
    return (end - start) / (ceiling - start)


def _gap_text(value: float | None, basis: GapBasis | None) -> str:
    """`67%`, or `67% (vs oracle)` where no note-level ceiling was there to measure against."""
    return percent(value) + (basis_note(basis) if value is not None else "")


def percent(value: float | None) -> str:
    """`84%`; a share that rounds to zero is `0%`, never `-0%`."""
    if value is None:
        return "–"
    text = f"{value:.0%}"
    return "0%" if text == "-0%" else text


def counted(number: int, word: str) -> str:
    """`1 round`, `3 rounds`."""
    return f"{number} {word}{'' if number == 1 else 's'}"


def _positives(values: dict) -> str:
    """A split's positives, flagged when it or its negatives are too few for a steady AUROC."""
    n, positives = values.get("n"), values.get("positives")
    if positives is None:
        return "–"
    return f"{positives} ⚠" if is_thin(n, positives) else str(positives)


def _task_table(metrics: dict, task: str) -> list[str]:
    first, last = first_entry(metrics), final_entry(metrics)
    lines = [
        f"| site | role | n | positives | prevalence | AUROC round {first['round']} "
        f"| AUROC final (round {last['round']}) [95 % CI] "
        f"| {note_ceiling_label(max_length(metrics))} | {ORACLE_LABEL} | gap closed |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    flagged = False
    for site in metrics["sites"]:
        name = site["name"]
        start, end = task_values(first, name, task), task_values(last, name, task)
        low, high = end.get("ci", [None, None])
        role = "**external**" if site["role"] == "external" else site["role"]
        flagged |= _positives(end).endswith("⚠")
        ceiling, basis = gap_ceiling(end.get("note_ceiling_auroc"), end.get("oracle_auroc"))
        gap = _gap_text(gap_closed(start.get("auroc"), end.get("auroc"), ceiling), basis)
        lines.append(
            f"| {name} | {role} | {end.get('n', '–')} | {_positives(end)} "
            f"| {_fmt(end.get('prevalence'), 2)} "
            f"| {_fmt(start.get('auroc'))} | {_fmt(end.get('auroc'))} [{_fmt(low)}, {_fmt(high)}] "
            f"| {_fmt(end.get('note_ceiling_auroc'))} | {_fmt(end.get('oracle_auroc'))} "
            f"| {gap} |"
        )
    if flagged:
        lines += ["", f"⚠ fewer than {MIN_LABELS} positives or negatives in this split: its AUROC "
                  "rests on a handful of encounters; read the interval, not the value."]
    return lines


def headline(metrics: dict) -> dict[str, dict[str, float | None]]:
    """Per task: the external site before/after, and the training sites' mean before/after, both
    ceilings and the gap closed (against the note-level ceiling, else the oracle:
    `gap_closed_against` says which).

    "After" is the reported round (`report_data.selected_round`: validation-selected, else the
    last). These are the run's questions in one line each: did federation help the system that
    never trained, and how much of the distance to the ceiling did it cover where it did train?
    """
    first, last = first_entry(metrics), final_entry(metrics)
    inside, external = sites_with_role(metrics, "train"), sites_with_role(metrics, "external")

    def aurocs(entry: dict, sites: list[str], task: str) -> float | None:
        return mean([task_values(entry, s, task).get("auroc") for s in sites])

    summary = {}
    for task in metrics["run"]["tasks"]:
        start, end = aurocs(first, inside, task), aurocs(last, inside, task)
        notes, oracle = note_ceiling(metrics, task), oracle_auroc(metrics, task)
        ceiling, basis = gap_ceiling(notes, oracle)
        summary[task] = {
            "external_round0": aurocs(first, external, task),
            "external_final": aurocs(last, external, task),
            "in_distribution_round0": start,
            "in_distribution_final": end,
            "in_distribution_note_ceiling": notes,
            "in_distribution_oracle": oracle,
            "gap_closed": gap_closed(start, end, ceiling),
            "gap_closed_against": basis,
        }
    return summary


def _headline_table(metrics: dict) -> list[str]:
    lines = [
        "| task | external: round 0 → final | training sites (mean): round 0 → final "
        f"| {note_ceiling_label(max_length(metrics))} | {ORACLE_LABEL} | gap closed |",
        "|---|---|---|---:|---:|---:|",
    ]
    for task, row in headline(metrics).items():
        gap = _gap_text(row["gap_closed"], row["gap_closed_against"])
        lines.append(
            f"| {task} | {_fmt(row['external_round0'])} → {_fmt(row['external_final'])} "
            f"| {_fmt(row['in_distribution_round0'])} → {_fmt(row['in_distribution_final'])} "
            f"| {_fmt(row['in_distribution_note_ceiling'])} | {_fmt(row['in_distribution_oracle'])} "
            f"| {gap} |"
        )
    return lines


def _loss(value: float | None) -> str:
    return "withheld (DP)" if value is None else f"{value:.4f}"


def _training_table(metrics: dict) -> list[str]:
    lines = ["| round | site | loss | steps | train examples | upload bytes |",
             "|---:|---|---:|---:|---:|---:|"]
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
        if entry.get("left_out"):
            lines.append(f"- Round {entry['round']}: the robust rule left out the update of "
                         f"{', '.join(entry['left_out'])}.")
    return lines or ["- None: every site replied in every round."]


def _options(run: dict) -> str:
    """The strategy's own settings, e.g. " (tolerated-bad-sites 1)"; older runs have none."""
    options = run.get("strategy_options") or {}
    return " (" + ", ".join(f"{k} {v:g}" for k, v in options.items()) + ")" if options else ""


def _profile(run: dict) -> str:
    """"run profile `paper-512`; " when `--profile` applied one (older runs have no key)."""
    return f"run profile `{run['profile']}`; " if run.get("profile") else ""


def _intro(metrics: dict) -> list[str]:
    run = metrics["run"]
    lines = [
        f"# lang1-fl run — consortium `{run['consortium']}`",
        "",
        f"Strategy **{run['strategy']}**{_options(run)}, {counted(run['num_rounds'], 'round')}, "
        "base model "
        f"`{run['base_model']}` with LoRA r={run['lora']['r']}, tasks: {', '.join(run['tasks'])}; "
        f"{_profile(run)}seed {run['seed']}; wall time {run['duration_s']:.0f} s.",
        "",
    ]
    if run["outcome"] != "completed":
        lines += [f"**The run failed: {run['outcome']}.** See the missing sites below.", ""]
    return lines + [
        "AUROC on each training site's held-out test split and on all of the external system's "
        "encounters (one-vs-rest macro for multi-class tasks), 95 % "
        f"CI from {run['bootstrap_resamples']} stratified bootstrap resamples. Round 0 is the "
        f"untrained model; *final* is round {selected_round(metrics)} (see *Which round is "
        "reported*). The **external** site never trained: its numbers are out of "
        "distribution. *Positives* counts the split's positive labels (multi-class tasks: its "
        "rarest class present). Synthetic data has two ceilings (none for real data): the *"
        f"{note_ceiling_label(max_length(metrics))}* is the best AUROC possible from the facts each "
        "note states within the tokens the model reads (with answer-letter scoring, those the "
        "question leaves of them), the *oracle (latent)* the AUROC of the "
        "true label probabilities the generator knows, which also depend on what no note says. "
        "*Gap closed* = (final − round 0) ÷ (note ceiling − round 0); where a run has no note "
        "ceiling it is measured against the oracle instead and marked *(vs oracle)*.",
        "",
    ]


def _upload_lines(metrics: dict) -> list[str]:
    upload = metrics["upload"]
    return [
        "## What left the sites",
        "",
        f"Each training site uploaded at most {upload['bytes_per_site_per_round']:,} bytes per "
        f"round (LoRA adapter and task heads, serialized), "
        f"{_fmt(100 * upload['ratio_to_base_model'], 2)} % of the base model's "
        f"{upload['base_model_bytes']:,} bytes. Evaluation replies carry aggregate metrics only "
        "(calibration bins holding few encounters stay at the site).",
        "",
    ] + egress_lines(metrics)


def render_markdown(metrics: dict, figure: str | None = None, privacy_figure: str | None = None,
                    *, figures: ReportFigures | None = None) -> str:
    """The whole report.md. `figures` names every figure written; `figure` and `privacy_figure`
    (the AUROC and ε plots) are the older way to pass the two figures the report used to have."""
    figures = figures or ReportFigures(auroc=figure, privacy=privacy_figure)
    lines = _intro(metrics) + selection_lines(metrics)
    lines += ["## Summary", ""] + _headline_table(metrics) + [""]
    for task in metrics["run"]["tasks"]:
        spec = TASKS[task]
        lines += [f"## {task} — {spec.description} ({spec.num_classes} classes, {spec.note} note)", ""]
        lines += _task_table(metrics, task) + [""]
    if figures.auroc:
        lines += ["## AUROC per round", "",
                  "Test AUROC after each round, one panel per task; the external site dashed, the "
                  "note-level ceiling (black, dashed) and the latent oracle (black, dotted) as "
                  "horizontal lines, the reported round marked by a vertical line.", "",
                  f"![AUROC per round]({figures.auroc})", ""]
    lines += gap_lines(metrics, figures.external_gap)
    lines += calibration_lines(metrics, figures.calibration)
    lines += prevalence_lines(figures.prevalence)
    lines += ["## Training", ""] + _training_table(metrics) + [""]
    lines += _upload_lines(metrics)
    lines += render_privacy_section(metrics, figures.privacy)
    lines += participation_lines(metrics)
    lines += ["## Missing sites, skipped rounds, updates left out", ""]
    lines += _problems(metrics) + [""]
    return "\n".join(lines)


def write_figures(metrics: dict, run_dir: Path) -> ReportFigures:
    """Draw every figure beside the report; a figure with nothing to show is not written."""
    def drawn(name: str, plot: Callable[[dict, Path], bool]) -> str | None:
        return name if plot(metrics, run_dir / name) else None

    return ReportFigures(
        auroc=drawn(AUROC_FIGURE, plot_rounds),
        external_gap=drawn(GAP_FIGURE, plot_external_gap),
        calibration=drawn(CALIBRATION_FIGURE, plot_reliability),
        prevalence=drawn(PREVALENCE_FIGURE, plot_prevalence),
        privacy=drawn(PRIVACY_FIGURE, plot_privacy),
    )


def write_report(run_dir: Path, metrics_path: Path | None = None) -> Path:
    """Write `report.md` with its PNG figures beside it and the self-contained `report.html`, from
    `metrics.json` (in `run_dir` unless `metrics_path` says otherwise); return report.md's path."""
    run_dir = Path(run_dir)
    metrics_path = Path(metrics_path or run_dir / "metrics.json")
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{metrics_path}: no metrics.json; expected the folder of a run "
                                "that `lang1-fl run` wrote")
    metrics = json.loads(metrics_path.read_text())
    path = run_dir / "report.md"
    path.write_text(render_markdown(metrics, figures=write_figures(metrics, run_dir)))
    write_html(path, title=f"lang1-fl run — {metrics['run']['consortium']}")
    return path
