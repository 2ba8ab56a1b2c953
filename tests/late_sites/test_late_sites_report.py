"""Issue 35: who took part in which round, in the metrics and the report.

A site that joined late is `not joined` for the rounds before; the report's participation table
names a timeout and an offline evaluation, and a run from before participation was recorded has
no table.
"""

from __future__ import annotations

from server.report.participation import participation, participation_lines
from tests.late_sites.late_grid import CLAIMS, LateGrid, Sites, connect_at, run_rounds


def test_metrics_and_report_show_who_took_part_in_which_round(consortium):
    sites = Sites(CLAIMS)
    strategy, _ = run_rounds(LateGrid(sites, late={2}), consortium, rounds=2,
                       during=connect_at(2, 2))
    log = strategy.run_log
    log.participation[0] = {"academic": {"evaluate": "evaluated"},
                            "external-system": {"evaluate": "evaluated"}}
    rounds = [{"round": r, "participation": participation(consortium, log, r)} for r in (0, 1, 2)]
    assert rounds[1]["participation"]["community"] == {"train": "not joined",
                                                       "evaluate": "not joined"}
    assert rounds[0]["participation"]["academic"] == {"train": None, "evaluate": "evaluated"}
    metrics = {"sites": [{"name": s.name, "role": s.role} for s in consortium.sites],
               "rounds": rounds}
    table = participation_lines(metrics)
    assert "| academic | train | evaluated | trained | trained |" in table
    assert "| community | train | not joined | not joined | trained |" in table
    assert "| external-system | external | evaluated | evaluated | evaluated |" in table


def test_the_report_table_names_a_timeout_and_an_offline_evaluation():
    metrics = {"sites": [{"name": "a", "role": "train"}],
               "rounds": [{"round": 1, "participation": {
                   "a": {"train": "timed out", "evaluate": "offline"}}}]}
    assert "| a | train | timed out; evaluation offline |" in participation_lines(metrics)


def test_a_report_of_a_run_before_participation_has_no_table():
    assert participation_lines({"sites": [], "rounds": [{"round": 0}]}) == []
