"""The exported adapter's model card, completed with what only the run knows.

`client.adapter_export.save_adapter` writes the card from the folder's manifest (base, note length, tasks);
once the report is written, the coordinator rewrites it with the reported round and its AUROCs
(the report's headline: training sites' mean and the external system, round 0 → reported round)
and, where the sites' data was synthetic, that the model is not for clinical use.
"""

from __future__ import annotations

from pathlib import Path

from client.model_card import write_model_card
from client.model_manifest import read_manifest
from server.report.data import selected_round, selection
from server.report.markdown import headline
from server.report.sections import fmt


def data_note(metrics: dict) -> str | None:
    """"Synthetic data: not for clinical use" when any site's data was synthetic; None for real
    data (and for runs recorded before sites said which)."""
    synthetic = [s["name"] for s in metrics["sites"] if s.get("synthetic")]
    if not synthetic:
        return None
    if len(synthetic) == len(metrics["sites"]):
        return "Trained and evaluated on synthetic data only: not for clinical use."
    return (f"Trained partly on synthetic data (sites {', '.join(synthetic)}): not for "
            "clinical use.")


def results_lines(metrics: dict) -> list[str]:
    """The card's results section: which round, chosen how, and its test AUROCs."""
    run, chosen = metrics["run"], selection(metrics)
    how = chosen["criterion"] if chosen else "the last round (no selection recorded)"
    lines = [
        f"Round {selected_round(metrics)} of {run['num_rounds']} of run `{run['run_name']}` "
        f"(consortium `{run['consortium']}`, strategy {run['strategy']}), chosen by {how}. "
        "AUROC on held-out test encounters (one-vs-rest macro for multi-class tasks), round 0 "
        "(the untrained model) → this round; the run folder's `report.html` has every site with "
        "its 95 % interval.",
        "",
        "| task | training sites (mean) | external system |",
        "|---|---|---|",
    ]
    for task, row in headline(metrics).items():
        external = ("–" if row["external_final"] is None else
                    f"{fmt(row['external_round0'])} → {fmt(row['external_final'])}")
        lines.append(f"| {task} | {fmt(row['in_distribution_round0'])} → "
                     f"{fmt(row['in_distribution_final'])} | {external} |")
    return lines


def write_run_model_card(adapter_dir: Path, metrics: dict) -> Path:
    """Rewrite `adapter_dir/README.md` with the run's results; returns its path."""
    return write_model_card(read_manifest(adapter_dir), adapter_dir,
                            results=results_lines(metrics), data_note=data_note(metrics))
