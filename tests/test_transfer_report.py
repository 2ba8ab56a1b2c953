"""Transfer experiment: the headline numbers equal hand-computed ones, and the report renders them.

The fixture is a hand-made `transfer.json` dict: training sites `a` and `b`, external site `x`,
tasks mortality and los, regimes untrained / federated / local:a / local:b / without:a / pooled /
single:mortality. Expected values are worked out by hand in the comments beside each test.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path

import pytest

from server.report.transfer import (
    MissingTransferFile,
    NotATransferExperiment,
    render_transfer_markdown,
    write_transfer_report,
)
from server.report.transfer_summary import (
    external_macro,
    in_distribution,
    macro_auroc,
    note_ceiling_in_distribution,
    oracle_in_distribution,
    summarize_transfer,
)
from tests.html_images import ImageSources

TASKS = ["mortality", "los"]
SITES = ("a", "b", "x")
# regime -> (kind, trained_on, tasks, AUROC per site as (mortality, los))
AUROC = {
    "untrained": ("untrained", [], TASKS, {"a": (0.50, 0.52), "b": (0.48, 0.50), "x": (0.50, 0.50)}),
    "federated": ("federated", ["a", "b"], TASKS, {"a": (0.80, 0.70), "b": (0.76, 0.66), "x": (0.72, 0.64)}),
    "local:a": ("local", ["a"], TASKS, {"a": (0.82, 0.72), "b": (0.70, 0.60), "x": (0.66, 0.58)}),
    "local:b": ("local", ["b"], TASKS, {"a": (0.70, 0.62), "b": (0.78, 0.68), "x": (0.68, 0.60)}),
    "without:a": ("leave-one-out", ["b"], TASKS, {"a": (0.71, 0.63), "b": (0.78, 0.68), "x": (0.68, 0.61)}),
    "pooled": ("pooled", ["a", "b"], TASKS, {"a": (0.81, 0.71), "b": (0.77, 0.67), "x": (0.73, 0.65)}),
    "single:mortality": ("single-task", ["a", "b"], ["mortality"],
                         {"a": (0.79,), "b": (0.77,), "x": (0.70,)}),
}
ORACLE = {"a": (0.85, 0.75), "b": (0.83, 0.73), "x": (0.80, 0.70)}
NOTE_CEILING = {"a": (0.82, 0.72), "b": (0.80, 0.70), "x": (0.76, 0.66)}


def _cell(auroc: float, oracle: float, note_ceiling: float | None) -> dict:
    cell = {"auroc": auroc, "ci": [auroc - 0.05, auroc + 0.05], "n": 300, "prevalence": 0.12,
            "oracle_auroc": oracle}
    return cell if note_ceiling is None else cell | {"note_ceiling_auroc": note_ceiling}


def _transfer(*, note_ceiling: bool = True) -> dict:
    """The experiment; `note_ceiling=False`: as written before sites sent the note ceiling."""
    regimes, cells = [], {}
    for name, (kind, trained_on, tasks, values) in AUROC.items():
        selected = 0 if kind == "untrained" else 2
        validation = {} if kind == "untrained" else {"1": 0.61, "2": 0.63, "3": 0.62}
        regimes.append({"name": name, "kind": kind, "trained_on": trained_on, "tasks": tasks,
                        "selected_round": selected, "validation_per_round": validation})
        cells[name] = {
            site: {task: _cell(values[site][i], ORACLE[site][TASKS.index(task)],
                               NOTE_CEILING[site][TASKS.index(task)] if note_ceiling else None)
                   for i, task in enumerate(tasks)}
            for site in SITES
        }
    return {
        "experiment": "transfer", "consortium": "test", "base_model": "tiny", "tasks": TASKS,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.05}, "strategy": "fedavg",
        "num_rounds": 3, "seed": 2026, "bootstrap_resamples": 1000, "duration_s": 12.5,
        "max_length": 128,
        "selection": "best of rounds 1..R by mean validation AUROC over the regime's training sites "
                     "and tasks",
        "sites": [{"name": "a", "role": "train"}, {"name": "b", "role": "train"},
                  {"name": "x", "role": "external"}],
        "regimes": regimes,
        "cells": cells,
    }


def _without_regime(transfer: dict, name: str) -> dict:
    transfer = copy.deepcopy(transfer)
    transfer["regimes"] = [r for r in transfer["regimes"] if r["name"] != name]
    transfer["cells"].pop(name)
    return transfer


def _headline(transfer: dict) -> dict:
    return {number.key: number for number in summarize_transfer(transfer).headline}


# --- the numbers ---------------------------------------------------------------------------------


def test_macro_external_and_in_distribution_by_hand() -> None:
    transfer = _transfer()
    assert macro_auroc(transfer, "federated", "a") == pytest.approx((0.80 + 0.70) / 2)
    assert macro_auroc(transfer, "single:mortality", "x") == pytest.approx(0.70)  # its own task only
    assert external_macro(transfer, "federated") == pytest.approx(0.68)  # (0.72 + 0.64) / 2
    assert external_macro(transfer, "pooled") == pytest.approx(0.69)
    assert in_distribution(transfer, "federated") == pytest.approx(0.73)  # (0.80+0.70+0.76+0.66) / 4
    assert in_distribution(transfer, "untrained") == pytest.approx(0.50)
    assert oracle_in_distribution(transfer) == pytest.approx(0.79)  # (0.85+0.75+0.83+0.73) / 4
    assert note_ceiling_in_distribution(transfer) == pytest.approx(0.76)  # (0.82+0.72+0.80+0.70) / 4
    assert note_ceiling_in_distribution(_transfer(note_ceiling=False)) is None


def test_headline_by_hand() -> None:
    summary = summarize_transfer(_transfer())
    ratio, local, gap = summary.headline
    assert ratio.key == "federated_over_pooled"
    assert ratio.value == pytest.approx(0.68 / 0.69) and ratio.goal == 0.99 and ratio.met is False
    # local:a external 0.62, local:b 0.64 -> b is best; 0.68 - 0.64
    assert summary.best_local_site == "b"
    assert local.value == pytest.approx(0.04) and local.met is True and "`b`" in local.detail
    # against the note ceiling: (0.73 - 0.50) / (0.76 - 0.50)
    assert gap.value == pytest.approx(0.23 / 0.26) and gap.goal == 0.80 and gap.met is True
    assert gap.label.endswith("÷ (note ceiling − untrained)") and "note ceiling 0.760" in gap.detail
    assert all(number.reason is None for number in summary.headline)


def test_without_a_note_ceiling_the_gap_falls_back_to_the_oracle_and_says_so() -> None:
    gap = _headline(_transfer(note_ceiling=False))["gap_closed"]
    # (0.73 - 0.50) / (0.79 - 0.50)
    assert gap.value == pytest.approx(0.23 / 0.29)
    assert gap.label.endswith("÷ (oracle − untrained); no note ceiling in this experiment")
    assert "oracle 0.790" in gap.detail


def test_a_value_at_its_goal_up_to_rounding_is_met() -> None:
    transfer = _transfer()
    for site_cells, values in ((transfer["cells"]["federated"]["x"], (0.693, 0.693)),
                               (transfer["cells"]["pooled"]["x"], (0.70, 0.70))):
        site_cells["mortality"]["auroc"], site_cells["los"]["auroc"] = values
    ratio = _headline(transfer)["federated_over_pooled"]
    assert ratio.value == pytest.approx(0.99) and ratio.met is True


def test_site_spread_worst_site_and_external() -> None:
    spreads = {(s.regime, s.task): s for s in summarize_transfer(_transfer()).site_spread}
    federated = spreads[("federated", "mortality")]
    assert (federated.worst_site, federated.external_auroc) == ("b", 0.72)
    assert federated.worst_auroc == pytest.approx(0.76) and federated.spread == pytest.approx(0.04)
    local = spreads[("local:a", "los")]
    assert local.worst_site == "b" and local.spread == pytest.approx(0.12) and local.external_auroc == 0.58
    assert ("single:mortality", "los") not in spreads  # a regime's cells hold only its own tasks


def test_cross_task_joint_minus_single() -> None:
    cells = {(c.task, c.site): c for c in summarize_transfer(_transfer()).cross_task}
    assert set(cells) == {("mortality", s) for s in SITES}
    assert cells[("mortality", "a")].difference == pytest.approx(0.80 - 0.79)
    assert cells[("mortality", "x")].difference == pytest.approx(0.72 - 0.70)
    assert summarize_transfer(_without_regime(_transfer(), "single:mortality")).cross_task == ()


def test_null_aurocs_are_ignored_and_all_null_is_null() -> None:
    transfer = _transfer()
    transfer["cells"]["federated"]["x"]["los"]["auroc"] = None
    assert external_macro(transfer, "federated") == pytest.approx(0.72)
    transfer["cells"]["federated"]["x"]["mortality"]["auroc"] = None
    assert external_macro(transfer, "federated") is None
    ratio = _headline(transfer)["federated_over_pooled"]
    assert ratio.value is None and ratio.met is None and "federated" in ratio.reason


@pytest.mark.parametrize(
    ("drop", "key", "reason"),
    [
        ("pooled", "federated_over_pooled", "no `pooled` regime"),
        ("untrained", "gap_closed", "no `untrained` regime"),
        ("federated", "federated_minus_best_local", "no `federated` regime"),
    ],
)
def test_missing_regime_gives_null_with_reason(drop: str, key: str, reason: str) -> None:
    number = _headline(_without_regime(_transfer(), drop))[key]
    assert number.value is None and number.met is None
    assert reason in number.reason


def test_no_local_regime_gives_null_with_reason() -> None:
    transfer = _without_regime(_without_regime(_transfer(), "local:a"), "local:b")
    number = _headline(transfer)["federated_minus_best_local"]
    assert number.value is None and "no local-only regime" in number.reason
    assert summarize_transfer(transfer).best_local_site is None


def test_no_ceiling_gives_null_gap_with_reason() -> None:
    transfer = _transfer()
    for sites in transfer["cells"].values():
        for tasks in sites.values():
            for evaluation in tasks.values():
                evaluation["oracle_auroc"] = evaluation["note_ceiling_auroc"] = None
    gap = _headline(transfer)["gap_closed"]
    assert gap.value is None and gap.met is None
    assert gap.reason == "no note ceiling or oracle AUROC (real data has neither)"
    assert summarize_transfer(transfer).oracle_in_distribution is None
    assert summarize_transfer(transfer).note_ceiling_in_distribution is None


# --- the report ----------------------------------------------------------------------------------


def _write(tmp_path: Path, transfer: dict) -> Path:
    (tmp_path / "transfer.json").write_text(json.dumps(transfer))
    return write_transfer_report(tmp_path)


def _check_images(report: Path) -> list[str]:
    """Every image in report.md exists; every <img> in report.html is an embedded PNG."""
    referenced = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())
    assert all((report.parent / name).is_file() for name in referenced)
    parser = ImageSources()
    parser.feed(report.with_suffix(".html").read_text())
    parser.close()
    assert len(parser.sources) == len(referenced)
    for source in parser.sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    return referenced


def test_report_writes_markdown_html_and_one_heatmap_per_task(tmp_path: Path) -> None:
    report = _write(tmp_path, _transfer())
    assert report == tmp_path / "report.md" and report.with_suffix(".html").is_file()
    assert sorted(_check_images(report)) == ["transfer_los.png", "transfer_mortality.png"]
    text = report.read_text()
    assert "| External macro AUROC, federated ÷ pooled | 0.986 | ≥ 0.99 | **not met** |" in text
    assert "| +0.040 | ≥ +0.03 | met | best local-only: `b` (0.640) |" in text
    assert "| 88% | ≥ 80% | met |" in text
    assert "x (**external**)" in text
    assert "Base model `tiny` with LoRA r=8, strategy **fedavg**, 3 rounds, seed 2026" in text
    assert "| federated | 0.800 [0.750, 0.850] | 0.760 [0.710, 0.810] | 0.720 [0.670, 0.770] " \
           "| 0.760 (b) | 0.040 |" in text
    assert ("| *note ceiling (first 128 tokens)* | 0.820 | 0.800 | 0.760 | | |\n"
            "| *oracle (latent)* | 0.850 | 0.830 | 0.800 | | |") in text
    assert "| n | 300 | 300 | 300 |" in text
    assert "## One task alone vs all tasks jointly" in text
    assert "| mortality | a | single:mortality | 0.790 | 0.800 | +0.010 |" in text


def test_report_without_pooled_oracle_or_single_task_still_renders(tmp_path: Path) -> None:
    transfer = _without_regime(_without_regime(_transfer(note_ceiling=False), "pooled"),
                               "single:mortality")
    for sites in transfer["cells"].values():
        for tasks in sites.values():
            for evaluation in tasks.values():
                evaluation["oracle_auroc"] = None
    transfer["cells"]["federated"]["x"]["los"] |= {"auroc": None, "ci": [None, None]}
    text = _write(tmp_path, transfer).read_text()
    _check_images(tmp_path / "report.md")
    assert "no `pooled` regime in the experiment" in text
    assert "no note ceiling or oracle AUROC" in text and "| *oracle (latent)*" not in text
    assert "No ceiling for this task" in text
    assert "One task alone" not in text


def test_regime_table_marks_the_selected_round() -> None:
    transfer = _transfer()
    text = render_transfer_markdown(transfer, summarize_transfer(transfer))
    assert "![" not in text  # no figures passed, none referenced
    assert ("| federated | federated | a, b | all | 2 | 1: 0.610, **2: 0.630**, 3: 0.620 "
            "| 0.730 | 0.680 |") in text
    assert "| single:mortality | single-task | a, b | mortality | 2 |" in text
    assert "| untrained | untrained | – | all | 0 | – | 0.500 | 0.500 |" in text


def test_regimes_that_chose_the_last_round_are_named() -> None:
    transfer = _transfer()
    for regime in transfer["regimes"]:
        if regime["name"] in ("federated", "local:b"):
            regime["selected_round"] = 3
    summary = summarize_transfer(transfer)
    assert summary.chose_last_round == ("federated", "local:b")
    text = render_transfer_markdown(transfer, summary)
    assert "Chose the last round (3): federated, local:b." in text


def test_no_regime_named_when_every_choice_lies_before_the_last_round() -> None:
    transfer = _transfer()  # every trained regime chose round 2 of 3
    summary = summarize_transfer(transfer)
    assert summary.chose_last_round == ()
    assert "Chose the last round" not in render_transfer_markdown(transfer, summary)


def test_a_last_round_taken_for_want_of_validation_is_not_named() -> None:
    """No validation split scored: `select_round` falls back to the last round, not by choice."""
    transfer = _transfer()
    for regime in transfer["regimes"]:
        if regime["name"] in ("federated", "local:b"):
            regime["selected_round"] = 3
    transfer["regimes"][[r["name"] for r in transfer["regimes"]].index("local:b")][
        "validation_per_round"] = {}
    assert summarize_transfer(transfer).chose_last_round == ("federated",)


def test_one_round_leaves_no_choice_to_flag() -> None:
    transfer = _transfer()
    transfer["num_rounds"] = 1
    for regime in transfer["regimes"]:
        regime["selected_round"] = 0 if regime["kind"] == "untrained" else 1
    assert summarize_transfer(transfer).chose_last_round == ()


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(MissingTransferFile, match=r"transfer\.json is missing.*lang1-fl experiment transfer"):
        write_transfer_report(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"experiment": "strategies"}', r"`experiment` is 'strategies', expected 'transfer'"),
        ("[1, 2]", r"`experiment` is 'list', expected 'transfer'"),
        ("{not json", r"transfer\.json is not valid JSON"),
        ('{"experiment": "transfer", "sites": [], "regimes": [], "tasks": []}',
         r"`cells` must be a JSON object"),
    ],
)
def test_not_a_transfer_experiment_is_named(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "transfer.json").write_text(content)
    with pytest.raises(NotATransferExperiment, match=message):
        write_transfer_report(tmp_path)


def test_several_external_sites_average_their_macros(tmp_path: Path) -> None:
    transfer = _transfer()
    transfer["sites"].append({"name": "y", "role": "external"})
    transfer["cells"]["federated"]["y"] = {task: _cell(0.60, 0.70, 0.65) for task in TASKS}
    assert external_macro(transfer, "federated") == pytest.approx((0.68 + 0.60) / 2)
    assert external_macro(transfer, "pooled") == pytest.approx(0.69)  # no cells at y: ignored
    text = _write(tmp_path, transfer).read_text()
    assert "| regime | a | b | x (**external**) | y (**external**) |" in text
