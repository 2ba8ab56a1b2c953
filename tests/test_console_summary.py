"""The closing lines of a run's console: reported round, headline numbers, the report to open."""

from __future__ import annotations

from pathlib import Path

from server.report.console_summary import closing_summary
from server.report.markdown import render_markdown
from server.round_selection import CRITERIA
from tests.test_report import _metrics, _selected_metrics


def test_the_closing_summary_names_the_round_the_numbers_and_report_html():
    metrics = _selected_metrics()
    metrics["run"]["run_name"] = "r1"
    metrics["selection"]["left_out"] = [
        {"site": "a", "task": "mortality", "positives": 3, "negatives": 117}]
    lines = closing_summary(metrics, Path("runs/r1")).splitlines()
    assert lines == [
        "run r1 completed: round 1 of 2 reported (chosen on validation AUROC, never test); AUROC "
        "round 0 → reported round:",
        "  mortality: training sites 0.500 → 0.700 (oracle 0.800, 67% of the gap to the oracle "
        "closed); external 0.500 → 0.610",
        "  los: training sites 0.500 → 0.700 (oracle 0.800, 67% of the gap to the oracle closed); "
        "external 0.500 → 0.610",
        "  left out of round selection (too few positives or negatives in the validation split): "
        "a × mortality",
        "report: runs/r1/report.html",
    ]


def test_the_closing_summary_measures_the_gap_against_the_note_ceiling():
    metrics = _metrics(note_ceiling=0.75)
    metrics["run"]["run_name"] = "r2"
    lines = closing_summary(metrics, Path("runs/r2")).splitlines()
    assert lines[1] == ("  mortality: training sites 0.550 → 0.700 (note ceiling 0.750, oracle "
                        "0.800, 75% of the gap to the note ceiling closed); external 0.520 → 0.610")


def test_a_run_chosen_on_validation_loss_says_so_in_the_summary_and_the_report():
    metrics = _selected_metrics()
    metrics["run"]["run_name"] = "r3"
    metrics["selection"] |= {"by": "loss", "criterion": CRITERIA["loss"],
                             "score_per_round": {"1": 0.68, "2": 0.70}}
    assert closing_summary(metrics, Path("runs/r3")).splitlines()[0].startswith(
        "run r3 completed: round 1 of 2 reported (chosen on validation loss, never test)")
    text = render_markdown(metrics)
    assert "| validation loss | **0.680** | 0.700 |" in text
    assert "selected by lowest validation loss" in text
