"""The closing lines of a run's console: which round is reported, the headline numbers, and the
report to open.

Logged by the ServerApp once the report is written (so a deployment's `flwr run` shows it too):

    run 20260101-120000 completed: round 3 of 5 reported (chosen on validation loss, never test); ...
      mortality: training sites 0.512 → 0.801 (note ceiling 0.812, oracle 0.850, 97% of the
      gap to the note ceiling closed); external 0.498 → 0.702      [one line per task; wrapped]
      left out of round selection (too few positives or negatives ...): academic × mortality
    report: runs/20260101-120000/report.html
"""

from __future__ import annotations

from pathlib import Path

from server.report.data import criterion_word, selected_round, selection
from server.report.markdown import headline, percent
from server.report.sections import fmt


def _task_line(task: str, row: dict) -> str:
    line = (f"  {task}: training sites {fmt(row['in_distribution_round0'])} → "
            f"{fmt(row['in_distribution_final'])}")
    ceilings = [f"{name} {fmt(row[key])}" for name, key in (
        ("note ceiling", "in_distribution_note_ceiling"), ("oracle", "in_distribution_oracle"))
        if row[key] is not None]
    if ceilings:
        line += (f" ({', '.join(ceilings)}, {percent(row['gap_closed'])} of the gap to the "
                 f"{row['gap_closed_against']} closed)")
    if row["external_final"] is not None:
        line += f"; external {fmt(row['external_round0'])} → {fmt(row['external_final'])}"
    return line


def closing_summary(metrics: dict, run_dir: Path) -> str:
    """The lines above, from a run's metrics.json; round 0 → the reported round per task."""
    run, chosen = metrics["run"], selection(metrics)
    how = (f" (chosen on validation {criterion_word(chosen)}, never test)" if chosen
           else " (the last)")
    lines = [f"run {run['run_name']} {run['outcome']}: round {selected_round(metrics)} of "
             f"{run['num_rounds']} reported{how}; AUROC round 0 → reported round:"]
    lines += [_task_line(task, row) for task, row in headline(metrics).items()]
    left_out = (chosen or {}).get("left_out") or []
    if left_out:
        lines.append("  left out of round selection (too few positives or negatives in the "
                     "validation split): " + "; ".join(f"{c['site']} × {c['task']}"
                                                      for c in left_out))
    lines.append(f"report: {Path(run_dir) / 'report.html'}")
    return "\n".join(lines)
