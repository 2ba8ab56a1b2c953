"""`report.md`, `report.html` and one heatmap per task from a transfer experiment's `transfer.json`.

`lang1-fl experiment transfer CONSORTIUM` trains several regimes with the same base, LoRA config,
steps and seeds and evaluates each at every site. Its file holds, per regime (in the order they
were run), which sites and tasks it trained on, the round chosen on validation, and
`cells[regime][site][task] = {auroc, ci, n, prevalence, oracle_auroc, note_ceiling_auroc}` (any
float may be null; experiments before the note-level ceiling lack that key).

This report is written for a consortium coordinator who never opens JSON: the three headline
numbers against their goals (`server.report.transfer_summary` computes them, so the bench script and the
report cannot disagree), then per task the transfer matrix — rows are regimes, columns are sites,
the external health system marked — with its 95 % intervals, the worst training site and the
spread between sites, the two ceilings (`server.report.ceilings`), and a heatmap of the same
matrix. The HTML is the same
Markdown with the figures embedded (`server.report.html`), one file to mail.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from server.report.ceilings import ORACLE_LABEL, note_ceiling_label
from server.report.html import write_html
from server.report.transfer_summary import (
    HeadlineNumber,
    SiteSpread,
    Transfer,
    TransferSummary,
    cell,
    note_ceiling_auroc,
    oracle_auroc,
    sites_with_role,
    summarize_transfer,
)
from sites.tasks import TASKS

TRANSFER_FILE = "transfer.json"
REPORT_FILE = "report.md"
ORACLE_ROW = ORACLE_LABEL
_KIND_MEANING = {
    "untrained": "the initial model (round 0), before any training",
    "federated": "federated training over all training sites, all tasks jointly",
    "local": "one training site alone",
    "leave-one-out": "the federation without one site (leave-one-site-out)",
    "pooled": "one model trained centrally on all training sites' pooled training splits — the "
    "upper reference a real consortium cannot run",
    "single-task": "federated training of one task alone",
}


class MissingTransferFile(FileNotFoundError):
    """The experiment directory has no `transfer.json`."""


class NotATransferExperiment(ValueError):
    """The file is not a transfer experiment's output (wrong `experiment`, missing keys, bad JSON)."""


def read_transfer(exp_dir: Path) -> Transfer:
    """The parsed `exp_dir/transfer.json`, checked just enough that the report can trust its shape."""
    path = Path(exp_dir) / TRANSFER_FILE
    if not path.is_file():
        raise MissingTransferFile(
            f"{path} is missing; run `lang1-fl experiment transfer CONSORTIUM` to write it"
        )
    try:
        transfer = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise NotATransferExperiment(f"{path} is not valid JSON: {error}") from error
    if not isinstance(transfer, dict) or transfer.get("experiment") != "transfer":
        found = transfer.get("experiment") if isinstance(transfer, dict) else type(transfer).__name__
        raise NotATransferExperiment(f"{path}: `experiment` is {found!r}, expected 'transfer'")
    for key, kind in (("sites", list), ("regimes", list), ("cells", dict), ("tasks", list)):
        if not isinstance(transfer.get(key), kind):
            expected = "object" if kind is dict else "list"
            raise NotATransferExperiment(f"{path}: `{key}` must be a JSON {expected}")
    return transfer


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _with_ci(evaluation: dict[str, Any]) -> str:
    """`0.712 [0.660, 0.761]`, or `–` when the AUROC is undefined."""
    if evaluation.get("auroc") is None:
        return "–"
    low, high = (evaluation.get("ci") or [None, None])[:2]
    return f"{_fmt(evaluation['auroc'])} [{_fmt(low)}, {_fmt(high)}]"


def evaluation_sites(transfer: Transfer) -> tuple[str, ...]:
    """The matrix columns: training sites, then the external site(s)."""
    return sites_with_role(transfer, "train") + sites_with_role(transfer, "external")


def _site_header(transfer: Transfer, site: str) -> str:
    return f"{site} (**external**)" if site in sites_with_role(transfer, "external") else site


def _regimes_with(transfer: Transfer, task: str) -> list[str]:
    return [r["name"] for r in transfer["regimes"] if task in r.get("tasks", [])]


def _intro(transfer: Transfer) -> list[str]:
    duration, lora = transfer.get("duration_s"), transfer.get("lora") or {}
    lora_text = f" with LoRA r={lora['r']}" if lora.get("r") is not None else ""
    strategy = f", strategy **{transfer['strategy']}**" if transfer.get("strategy") else ""
    return [
        f"# lang1-fl transfer experiment — consortium `{transfer.get('consortium', '?')}`",
        "",
        f"Base model `{transfer.get('base_model', '?')}`{lora_text}{strategy}, "
        f"{transfer.get('num_rounds', '?')} rounds, "
        f"seed {transfer.get('seed', '?')}, tasks: {', '.join(transfer['tasks'])}; "
        f"training sites: {', '.join(sites_with_role(transfer, 'train')) or 'none'}; external: "
        f"{', '.join(sites_with_role(transfer, 'external')) or 'none'}; "
        f"wall time {'–' if duration is None else f'{duration:.0f} s'}.",
        "",
    ]


def _how_to_read(transfer: Transfer) -> list[str]:
    kinds: dict[str, list[str]] = {}
    for regime in transfer["regimes"]:
        kinds.setdefault(regime.get("kind", "?"), []).append(f"`{regime['name']}`")
    listing = [f"- {', '.join(names)}: {_KIND_MEANING.get(kind, kind)}." for kind, names in kinds.items()]
    selection = transfer.get("selection") or "best round by validation AUROC"
    return [
        "## How to read this",
        "",
        "Each row of a matrix below is one training regime; each column is a site's held-out test "
        "split (the **external** system's: all its encounters — it never trains in any regime). "
        "The regimes in this experiment:",
        "",
        *listing,
        "",
        "Every regime uses the same base model, LoRA configuration, local steps and seeds, so a "
        f"difference between rows is the regime's. Each regime's model is chosen as the {selection}: "
        "validation data only. The test splits were touched once per regime, for the chosen model, "
        "so no test number guided a choice. AUROC is one-vs-rest macro for multi-class tasks; "
        f"intervals are 95 % CIs from {transfer.get('bootstrap_resamples', '?')} stratified bootstrap "
        "resamples. Two ceilings close each matrix (none on real data): the *"
        f"{_note_ceiling_row(transfer)}* is the best AUROC possible from the facts each note "
        "states within the tokens the model reads; the *oracle (latent)* is the AUROC of the true "
        "label probabilities the synthetic generator knows, which also depend on what no note "
        "says. *Gap closed* is measured against the note ceiling (the oracle only where there is "
        "none, and its label says so). A *macro* AUROC is the mean over a regime's tasks.",
        "",
    ]


_HEADLINE_FORMAT = {
    "federated_over_pooled": (lambda v: f"{v:.3f}", lambda g: f"≥ {g:.2f}"),
    "federated_minus_best_local": (lambda v: f"{v:+.3f}", lambda g: f"≥ {g:+.2f}"),
    "gap_closed": (lambda v: f"{v:.0%}", lambda g: f"≥ {g:.0%}"),
}


def _headline_row(number: HeadlineNumber) -> str:
    value_format, goal_format = _HEADLINE_FORMAT[number.key]
    value = "–" if number.value is None else value_format(number.value)
    met = {True: "met", False: "**not met**", None: "–"}[number.met]
    note = number.reason if number.value is None else (number.detail or "")
    return f"| {number.label} | {value} | {goal_format(number.goal)} | {met} | {note} |"


def _headline_table(summary: TransferSummary) -> list[str]:
    return [
        "## Headline",
        "",
        "| number | value | goal | goal met | note |",
        "|---|---:|---:|---|---|",
        *[_headline_row(number) for number in summary.headline],
        "",
    ]


def _validation(regime: dict[str, Any]) -> str:
    per_round = regime.get("validation_per_round") or {}
    chosen = str(regime.get("selected_round"))
    parts = [
        f"**{r}: {_fmt(v)}**" if r == chosen else f"{r}: {_fmt(v)}"
        for r, v in sorted(per_round.items(), key=lambda item: int(item[0]))
    ]
    return ", ".join(parts) or "–"


def _regime_table(transfer: Transfer, summary: TransferSummary) -> list[str]:
    lines = [
        "## Regimes",
        "",
        "Macro AUROC = mean over the regime's tasks; *in-distribution* averages the training sites.",
        "",
        "| regime | kind | trained on | tasks | selected round | validation score by round "
        "| in-distribution | external macro |",
        "|---|---|---|---|---:|---|---:|---:|",
    ]
    for regime in transfer["regimes"]:
        name, tasks = regime["name"], regime.get("tasks", [])
        shown = "all" if list(tasks) == list(transfer["tasks"]) else ", ".join(tasks)
        lines.append(
            f"| {name} | {regime.get('kind', '?')} | {', '.join(regime.get('trained_on', [])) or '–'} "
            f"| {shown} | {regime.get('selected_round', '–')} | {_validation(regime)} "
            f"| {_fmt(summary.in_distribution.get(name))} | {_fmt(summary.external_macro.get(name))} |"
        )
    if summary.chose_last_round:
        lines += ["", f"Chose the last round ({transfer['num_rounds']}): "
                  f"{', '.join(summary.chose_last_round)}. Their validation score may still have been "
                  "improving, so they are compared before they were done; more rounds (`--rounds`) "
                  "would tell."]
    return lines + [""]


def _sample_table(transfer: Transfer, task: str) -> list[str]:
    """n and prevalence per site: a property of the test split, read from the first regime that has it."""
    sites = evaluation_sites(transfer)
    regimes = _regimes_with(transfer, task)

    def first(site: str, field: str) -> Any:
        return next((v for r in regimes if (v := cell(transfer, r, site, task).get(field)) is not None), None)

    return [
        "| test split | " + " | ".join(_site_header(transfer, s) for s in sites) + " |",
        "|---|" + "---:|" * len(sites),
        "| n | " + " | ".join(_fmt(first(s, "n"), 0) for s in sites) + " |",
        "| prevalence | " + " | ".join(_fmt(first(s, "prevalence"), 2) for s in sites) + " |",
        "",
    ]


def _spread_cells(spread: SiteSpread | None) -> str:
    if spread is None or spread.worst_auroc is None:
        return "– | –"
    return f"{_fmt(spread.worst_auroc)} ({spread.worst_site}) | {_fmt(spread.spread)}"


def _note_ceiling_row(transfer: Transfer) -> str:
    return note_ceiling_label(transfer.get("max_length"))


def _ceiling_rows(transfer: Transfer, task: str) -> list[tuple[str, list[float | None]]]:
    """(label, value per evaluation site) of each ceiling some site has for `task`."""
    sites = evaluation_sites(transfer)
    rows = [(_note_ceiling_row(transfer), [note_ceiling_auroc(transfer, s, task) for s in sites]),
            (ORACLE_ROW, [oracle_auroc(transfer, s, task) for s in sites])]
    return [(label, values) for label, values in rows if any(v is not None for v in values)]


def _matrix_table(transfer: Transfer, summary: TransferSummary, task: str) -> list[str]:
    """Rows = regimes in file order, columns = sites; AUROC [95 % CI], worst training site, spread."""
    sites = evaluation_sites(transfer)
    spreads = {s.regime: s for s in summary.site_spread if s.task == task}
    lines = [
        "| regime | " + " | ".join(_site_header(transfer, s) for s in sites)
        + " | worst training site | spread (max − min) |",
        "|---|" + "---|" * len(sites) + "---|---:|",
    ]
    for regime in _regimes_with(transfer, task):
        row = " | ".join(_with_ci(cell(transfer, regime, s, task)) for s in sites)
        lines.append(f"| {regime} | {row} | {_spread_cells(spreads.get(regime))} |")
    ceilings = _ceiling_rows(transfer, task)
    for label, values in ceilings:
        lines.append(f"| *{label}* | " + " | ".join(_fmt(v) for v in values) + " | | |")
    if not ceilings:
        lines += ["", "No ceiling for this task (real data has neither the note ceiling nor the "
                  "oracle)."]
    return lines + [""]


def _task_section(transfer: Transfer, summary: TransferSummary, task: str, figure: str | None) -> list[str]:
    spec = TASKS.get(task)
    title = f"## {task} — {spec.description} ({spec.num_classes} classes)" if spec else f"## {task}"
    lines = [title, ""] + _sample_table(transfer, task) + _matrix_table(transfer, summary, task)
    if figure:
        lines += [f"![{task}: AUROC by regime and site]({figure})", ""]
    return lines


def _cross_task_table(summary: TransferSummary, transfer: Transfer) -> list[str]:
    if not summary.cross_task:
        return []
    lines = [
        "## One task alone vs all tasks jointly",
        "",
        "Federated training of one task alone against the `federated` regime, which trains all "
        "tasks jointly; *joint − single* > 0 means training the tasks together helped.",
        "",
        "| task | site | single-task regime | single-task AUROC | joint AUROC | joint − single |",
        "|---|---|---|---:|---:|---:|",
    ]
    for c in summary.cross_task:
        difference = "–" if c.difference is None else f"{c.difference:+.3f}"
        lines.append(
            f"| {c.task} | {_site_header(transfer, c.site)} | {c.single_task_regime} "
            f"| {_fmt(c.single_task_auroc)} | {_fmt(c.joint_auroc)} | {difference} |"
        )
    return lines + [""]


def render_transfer_markdown(
    transfer: Transfer, summary: TransferSummary, figures: dict[str, str] | None = None
) -> str:
    """The whole `report.md`; `figures` maps a task to its heatmap's file name beside the report."""
    figures = figures or {}
    lines = _intro(transfer) + _headline_table(summary) + _how_to_read(transfer)
    lines += _regime_table(transfer, summary)
    for task in transfer["tasks"]:
        lines += _task_section(transfer, summary, task, figures.get(task))
    lines += _cross_task_table(summary, transfer)
    return "\n".join(lines)


def _heatmap_grid(
    transfer: Transfer, task: str
) -> tuple[list[str], list[list[float | None]], list[list[str]]]:
    """Row labels, AUROC values and two-line cell texts (AUROC, CI) of one task's matrix."""
    sites = evaluation_sites(transfer)
    rows, values, texts = [], [], []
    for regime in _regimes_with(transfer, task):
        cells = [cell(transfer, regime, s, task) for s in sites]
        rows.append(regime)
        values.append([c.get("auroc") for c in cells])
        texts.append([_with_ci(c).replace(" [", "\n[") for c in cells])
    for label, ceiling in _ceiling_rows(transfer, task):
        rows.append(label)
        values.append(ceiling)
        texts.append([_fmt(v) for v in ceiling])
    return rows, values, texts


def plot_task_heatmap(transfer: Transfer, task: str, path: Path) -> bool:
    """Regimes × sites heatmap of one task's test AUROC, each cell annotated with AUROC and CI.

    The colour scale is fixed (0.4–1.0) so colours compare across tasks. Returns False (and writes
    nothing) when no regime was evaluated on `task`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sites = evaluation_sites(transfer)
    rows, values, texts = _heatmap_grid(transfer, task)
    if not rows or not sites:
        return False
    grid = np.ma.masked_invalid(np.array([[np.nan if v is None else v for v in r] for r in values], float))
    colours = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    fig, ax = plt.subplots(figsize=(1.7 * len(sites) + 2.6, 0.6 * len(rows) + 1.4))
    image = ax.imshow(grid, cmap=colours, vmin=0.4, vmax=1.0, aspect="auto")
    for (i, j), text in np.ndenumerate(np.array(texts, dtype=object)):
        dark = values[i][j] is not None and values[i][j] < 0.75
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    external = set(sites_with_role(transfer, "external"))
    ax.set_xticks(range(len(sites)), [f"{s}\n(external)" if s in external else s for s in sites], fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    if external and len(external) < len(sites):
        ax.axvline(len(sites) - len(external) - 0.5, color="white", linewidth=3)
    ceilings = len(_ceiling_rows(transfer, task))
    if ceilings:  # a white line between the regimes and the ceilings below them
        ax.axhline(len(rows) - ceilings - 0.5, color="white", linewidth=3)
    ax.set_title(f"{task}: test AUROC [95 % CI]", fontsize=10)
    fig.colorbar(image, ax=ax, label="AUROC (test)", fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_transfer_report(exp_dir: Path) -> Path:
    """Write `report.md`, `transfer_<task>.png` per task and `report.html` beside `transfer.json`;
    return the Markdown path."""
    exp_dir = Path(exp_dir)
    transfer = read_transfer(exp_dir)
    summary = summarize_transfer(transfer)
    figures = {}
    for task in transfer["tasks"]:
        name = f"transfer_{re.sub(r'[^A-Za-z0-9_-]', '_', task)}.png"
        if plot_task_heatmap(transfer, task, exp_dir / name):
            figures[task] = name
    path = exp_dir / REPORT_FILE
    path.write_text(render_transfer_markdown(transfer, summary, figures))
    write_html(path, title=f"lang1-fl transfer experiment — {transfer.get('consortium', '?')}")
    return path
