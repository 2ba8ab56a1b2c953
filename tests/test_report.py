"""metrics.json nesting and report.md: the numbers a coordinator reads are the ones sites sent."""

from __future__ import annotations

import base64
import json
import math
import re

import pytest

from server.cli import main as lang1_fl
from server.report.markdown import (
    ReportFigures,
    gap_closed,
    headline,
    render_markdown,
    write_report,
)
from server.report.metrics_file import nest_site_metrics
from tests.html_images import ImageSources

TASKS = ("mortality", "los")


NAN = math.nan
CONFIDENCE = [0.05, 0.15, 0.25, NAN, NAN, 0.55, NAN, NAN, NAN, NAN]
FREQUENCY = [0.02, 0.10, 0.35, NAN, NAN, 0.40, NAN, NAN, NAN, NAN]
COUNT = [150.0, 80.0, 40.0, 3.0, 7.0, 20.0, 0.0, 0.0, 0.0, 0.0]


def _flat(auroc: float, oracle: float, *, calibration: bool = False,
          validation: float | None = None,
          note_ceiling: float | None = None) -> dict[str, float | list[float]]:
    """A site's evaluation reply; `calibration` adds ECE and reliability bins, `validation` the
    validation AUROC (NaN: the site has no validation split), `note_ceiling` the note-level
    ceiling's AUROC (None: a site from before it, which sends no such key)."""
    flat: dict[str, float | list[float]] = {"loss": 0.7}
    for task in TASKS:
        flat |= {
            f"{task}.auroc": auroc,
            f"{task}.auroc_low": auroc - 0.05,
            f"{task}.auroc_high": auroc + 0.05,
            f"{task}.n": 300.0,
            f"{task}.positives": 6.0 if task == "mortality" else 135.0,
            f"{task}.prevalence": 0.02 if task == "mortality" else 0.45,
            f"{task}.oracle_auroc": oracle,
        }
        if note_ceiling is not None:
            flat[f"{task}.note_ceiling_auroc"] = note_ceiling
        if calibration:
            flat |= {f"{task}.ece": 0.04, f"{task}.reliability_confidence": CONFIDENCE,
                     f"{task}.reliability_frequency": FREQUENCY,
                     f"{task}.reliability_count": COUNT}
        if validation is not None:
            none = math.isnan(validation)
            flat |= {f"validation.{task}.auroc": validation,
                     f"validation.{task}.n": 0.0 if none else 120.0,
                     f"validation.{task}.positives":
                         0.0 if none else 3.0 if task == "mortality" else 50.0}
        if validation is not None:  # a loss that falls as the AUROC rises
            flat["validation.loss"] = NAN if math.isnan(validation) else round(1.4 - validation, 3)
    return flat


def _metrics(note_ceiling: float | None = None) -> dict:
    """A 1-round run; `note_ceiling` (every site and task) as today's sites send it, else as a
    run recorded before the note-level ceiling."""
    sites = {"a": "train", "b": "train", "x": "external"}
    start = {"a": 0.50, "b": 0.60, "x": 0.52}
    end = {"a": 0.70, "b": 0.70, "x": 0.61}
    rounds = []
    for number, values in ((0, start), (1, end)):
        rounds.append(
            {
                "round": number,
                "evaluation": {s: nest_site_metrics(_flat(v, 0.80, note_ceiling=note_ceiling), TASKS)
                               for s, v in values.items()},
                "training": {}
                if number == 0
                else {s: {"train-loss": 1.0, "steps": 5, "num-examples": 100, "upload-bytes": 2000}
                      for s in ("a", "b")},
                "failures": [] if number == 0 else ["b: no reply"],
                "skipped": False,
            }
        )
    return {
        "run": {"outcome": "completed", "consortium": "t", "strategy": "fedavg", "num_rounds": 1,
                "tasks": list(TASKS),
                "base_model": "tiny", "lora": {"r": 8}, "seed": 1, "duration_s": 3.0,
                "bootstrap_resamples": 1000, "max_length": 128},
        "sites": [{"name": s, "role": r} for s, r in sites.items()],
        "rounds": rounds,
        "upload": {"bytes_per_site_per_round": 2000, "base_model_bytes": 1_000_000,
                   "ratio_to_base_model": 0.002},
    }


def test_flat_site_metrics_nest_by_task_with_nan_as_none():
    flat = _flat(0.7, math.nan)
    nested = nest_site_metrics(flat, TASKS)
    assert nested["tasks"]["mortality"] == {
        "auroc": 0.7, "ci": [pytest.approx(0.65), pytest.approx(0.75)], "n": 300, "positives": 6,
        "prevalence": 0.02, "oracle_auroc": None, "note_ceiling_auroc": None, "ece": None,
    }
    assert "validation" not in nested  # a run before round selection
    json.dumps(nested, allow_nan=False)  # NaN would make invalid JSON


def test_calibration_and_validation_nest_with_nan_as_null():
    nested = nest_site_metrics(_flat(0.7, 0.8, calibration=True, validation=0.66), TASKS)
    los = nested["tasks"]["los"]
    assert los["ece"] == 0.04
    assert los["reliability"]["confidence"][:4] == [0.05, 0.15, 0.25, None]
    assert los["reliability"]["frequency"][5] == 0.40 and los["reliability"]["frequency"][9] is None
    assert los["reliability"]["count"] == [150, 80, 40, 3, 7, 20, 0, 0, 0, 0]
    assert all(len(v) == 10 for v in los["reliability"].values())
    assert nested["validation"] == {"mortality": {"auroc": 0.66, "n": 120, "positives": 3},
                                    "los": {"auroc": 0.66, "n": 120, "positives": 50}}
    external = nest_site_metrics(_flat(0.6, NAN, validation=NAN), TASKS)
    assert external["validation"]["mortality"] == {"auroc": None, "n": 0, "positives": 0}
    json.dumps(nested, allow_nan=False)


def test_headline_separates_external_from_training_sites():
    row = headline(_metrics())["mortality"]
    assert row["external_round0"] == 0.52 and row["external_final"] == 0.61
    assert row["in_distribution_round0"] == pytest.approx(0.55)
    assert row["in_distribution_final"] == pytest.approx(0.70)
    assert row["gap_closed"] == pytest.approx((0.70 - 0.55) / (0.80 - 0.55))
    assert row["gap_closed_against"] == "oracle"  # a run before the note-level ceiling
    assert row["in_distribution_note_ceiling"] is None


def test_gap_closed_is_measured_against_the_note_ceiling():
    row = headline(_metrics(note_ceiling=0.75))["mortality"]
    assert row["in_distribution_note_ceiling"] == 0.75 and row["in_distribution_oracle"] == 0.80
    assert row["gap_closed"] == pytest.approx((0.70 - 0.55) / (0.75 - 0.55))
    assert row["gap_closed_against"] == "note ceiling"
    text = render_markdown(_metrics(note_ceiling=0.75))
    assert ("| AUROC final (round 1) [95 % CI] | note ceiling (first 128 tokens) | oracle (latent) "
            "| gap closed |") in text
    assert "| a | train | 300 | 6 ⚠ | 0.02 | 0.500 | 0.700 [0.650, 0.750] | 0.750 | 0.800 | 80% |" \
        in text
    assert "| mortality | 0.520 → 0.610 | 0.550 → 0.700 | 0.750 | 0.800 | 75% |" in text
    assert "(vs oracle)" not in text.split("## Summary")[1]


@pytest.mark.parametrize(
    ("start", "end", "oracle", "expected"),
    [(0.5, 0.65, 0.8, 0.5), (0.5, 0.4, 0.8, -1 / 3), (0.8, 0.9, 0.8, None), (None, 0.7, 0.8, None)],
)
def test_gap_closed(start, end, oracle, expected):
    result = gap_closed(start, end, oracle)
    assert result == (None if expected is None else pytest.approx(expected))


def test_report_shows_every_site_ci_oracle_and_missing_sites(tmp_path):
    text = render_markdown(_metrics(), figure=None)  # no note ceiling: gap closed vs the oracle
    assert ("| x | **external** | 300 | 6 ⚠ | 0.02 | 0.520 | 0.610 [0.560, 0.660] | – | 0.800 "
            "| 32% (vs oracle) |" in text)
    assert ("| a | train | 300 | 6 ⚠ | 0.02 | 0.500 | 0.700 [0.650, 0.750] | – | 0.800 "
            "| 67% (vs oracle) |") in text
    assert ("| a | train | 300 | 135 | 0.45 | 0.500 | 0.700 [0.650, 0.750] | – | 0.800 "
            "| 67% (vs oracle) |") in text
    assert "| mortality | 0.520 → 0.610 | 0.550 → 0.700 | – | 0.800 | 60% (vs oracle) |" in text
    assert "⚠ fewer than 10 positives or negatives in this split" in text
    assert "Round 1: b: no reply" in text
    assert "0.20 % of the base model" in text


def test_write_report_renders_markdown_and_figure(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(_metrics()))
    path = write_report(tmp_path)
    assert path.read_text().startswith("# lang1-fl run")
    assert (tmp_path / "auroc_per_round.png").stat().st_size > 1000


def _selected_metrics(*, selected: int | None = 1) -> dict:
    """A 2-round run sent by today's sites (calibration, validation): round 1 has the better
    validation AUROC and is selected; round 2 has the better *test* AUROC, which must not count."""
    metrics = _metrics()
    roles = {s["name"]: s["role"] for s in metrics["sites"]}
    test = {0: {}, 1: {"a": 0.70, "b": 0.70, "x": 0.61}, 2: {"a": 0.74, "b": 0.76, "x": 0.55}}
    validation = {0: 0.5, 1: 0.72, 2: 0.69}

    def evaluation(number: int) -> dict:
        return {s: nest_site_metrics(_flat(test[number].get(s, 0.5), 0.80, calibration=True,
                                           validation=NAN if role == "external"
                                           else validation[number]), TASKS)
                for s, role in roles.items()}

    metrics["rounds"].append({**metrics["rounds"][1], "round": 2, "failures": []})
    for entry in metrics["rounds"]:
        entry["evaluation"] = evaluation(entry["round"])
    metrics["run"]["num_rounds"] = 2
    if selected is not None:
        metrics["selection"] = {"round": selected, "criterion": "highest mean validation AUROC",
                                "score_per_round": {"1": 0.72, "2": 0.69}}
    return metrics


def test_final_numbers_are_the_selected_rounds_not_the_last():
    metrics = _selected_metrics(selected=1)
    text = render_markdown(metrics)
    assert ("| a | train | 300 | 6 ⚠ | 0.02 | 0.500 | 0.700 [0.650, 0.750] | – | 0.800 "
            "| 67% (vs oracle) |") in text
    assert "0.740" not in text.split("## AUROC per round")[0]  # round 2's test AUROC chose nothing
    assert "from **round 1**, selected by highest mean validation AUROC" in text
    assert "| validation AUROC | **0.720** | 0.690 |" in text
    assert ("| a | train | 0.680 | 0.720 (n=120, 3 positives) | 0.720 (n=120, 50 positives) |"
            in text)
    assert "| x | **external** | – | – | – |" in text  # no validation split
    assert headline(metrics)["mortality"]["external_final"] == 0.61


@pytest.mark.parametrize("selection", ["absent", "null"])
def test_without_selection_the_last_round_is_final(selection: str):
    metrics = _selected_metrics(selected=None)
    if selection == "null":
        metrics["selection"] = None  # a run whose server selected nothing
    text = render_markdown(metrics)
    assert "the final numbers below are the last round's (**round 2**)" in text
    assert ("| a | train | 300 | 6 ⚠ | 0.02 | 0.500 | 0.740 [0.690, 0.790] | – | 0.800 "
            "| 80% (vs oracle) |") in text
    assert headline(metrics)["mortality"]["external_final"] == 0.55


def test_report_explains_external_gap_calibration_and_prevalence():
    text = render_markdown(_selected_metrics(), figures=ReportFigures(
        external_gap="g.png", calibration="c.png", prevalence="p.png"))
    assert "| mortality | 0.700 | 0.610 [0.560, 0.660] | -0.090 |" in text
    assert "| x | **external** | 0.040 | 0.040 |" in text  # ECE per site and task
    assert "fewer than 10 encounters" in text
    for section in ("## External vs in-distribution", "## Calibration",
                    "## Label prevalence per site", "## Training", "## Privacy",
                    "## Missing sites"):
        assert section in text
    old = render_markdown(_metrics())
    assert "No calibration recorded" in old and "no round selection" in old


@pytest.mark.parametrize("build", [_metrics, _selected_metrics], ids=["old-run", "selected-run"])
def test_write_report_writes_markdown_figures_and_self_contained_html(tmp_path, build):
    (tmp_path / "metrics.json").write_text(json.dumps(build(), allow_nan=False))
    path = write_report(tmp_path)
    text = path.read_text()
    referenced = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert "auroc_per_round.png" in referenced and "external_gap.png" in referenced
    assert ("calibration.png" in referenced) == (build is _selected_metrics)
    for name in referenced:
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
    parser = ImageSources()
    parser.feed((tmp_path / "report.html").read_text())
    assert len(parser.sources) == len(referenced)
    for source in parser.sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(b"\x89PNG")


def test_cli_report_prints_both_paths(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text(json.dumps(_selected_metrics()))
    assert lang1_fl(["report", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "report.md"),
                                               str(tmp_path / "report.html")]


def test_cli_report_without_metrics_exits_2_naming_the_folder(tmp_path, capsys):
    assert lang1_fl(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}: no metrics.json" in err and "transfer.json" in err
    assert "Traceback" not in err


def test_cli_report_renders_a_transfer_experiment_with_its_own_report(tmp_path, capsys,
                                                                      monkeypatch):
    import server.report.transfer

    (tmp_path / "transfer.json").write_text("{}")
    monkeypatch.setattr(server.report.transfer, "write_transfer_report",
                        lambda folder: folder / "report.md")
    assert lang1_fl(["report", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "report.md"),
                                               str(tmp_path / "report.html")]


def test_report_names_the_strategy_settings_it_ran_with():
    metrics = _metrics()
    metrics["run"] = {**metrics["run"], "strategy": "trimmed-mean",
                      "strategy_options": {"tolerated-bad-sites": 1}}
    assert "Strategy **trimmed-mean** (tolerated-bad-sites 1)," in render_markdown(metrics)


def test_report_names_the_run_profile_only_when_one_ran():
    metrics = _metrics()
    assert "run profile" not in render_markdown(metrics)  # older runs: no `profile` key
    metrics["run"] = {**metrics["run"], "profile": "paper-512"}
    assert "run profile `paper-512`; seed" in render_markdown(metrics)


def test_report_lists_the_updates_a_robust_rule_left_out():
    metrics = _metrics()
    metrics["rounds"][1]["left_out"] = ["b"]
    assert "Round 1: the robust rule left out the update of b." in render_markdown(metrics)


def test_report_names_the_thin_cells_left_out_of_round_selection():
    metrics = _selected_metrics()
    metrics["selection"]["left_out"] = [
        {"site": "a", "task": "mortality", "positives": 3, "negatives": 117},
        {"site": "b", "task": "mortality", "positives": 1, "negatives": 119}]
    text = render_markdown(metrics)
    assert ("**Left out of the choice** (fewer than 10 positives or negatives in the validation "
            "split, so their validation AUROC is mostly noise): a × mortality (3 positives, "
            "117 negatives); b × mortality (1 positive, 119 negatives).") in text
    assert ("| a | train | 0.680 | 0.720 (n=120, 3 positives) ⚠ left out | 0.720 (n=120, 50 "
            "positives) |") in text
    assert "No cell was left to choose with" not in text
    metrics["selection"]["score_per_round"] = {"1": None, "2": None}
    assert "No cell was left to choose with: the last round is reported." in \
        render_markdown(metrics)


def test_one_round_is_singular_and_no_gap_is_negative_zero():
    metrics = _metrics()  # a run of 1 round
    for site in ("a", "b"):  # final a hair below round 0: -0.2 % of the gap
        for task in TASKS:
            metrics["rounds"][1]["evaluation"][site]["tasks"][task]["auroc"] = \
                metrics["rounds"][0]["evaluation"][site]["tasks"][task]["auroc"] - 0.0005
    text = render_markdown(metrics)
    assert "Strategy **fedavg**, 1 round, base model" in text and "1 rounds" not in text
    assert "-0%" not in text and "| 0.800 | 0% (vs oracle) |" in text


def test_the_calibration_figure_says_small_bins_are_withheld(tmp_path, monkeypatch):
    import server.report.figures as figures

    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.append(fig))
    assert figures.plot_reliability(_selected_metrics(), tmp_path / "c.png")
    notes = [text.get_text() for text in drawn[0].texts]
    assert notes == ["Bins with fewer than 10 encounters (and, when those are few, the "
                     "next-smallest) stay at the site: they are not drawn."]


@pytest.mark.parametrize(("note_ceiling", "lines"), [
    (0.75, {"note ceiling (first 128 tokens)": 0.75, "oracle (latent)": 0.80}),
    (None, {"oracle (latent)": 0.80}),  # a run before the note-level ceiling
])
def test_the_auroc_figure_draws_both_ceilings(tmp_path, monkeypatch, note_ceiling, lines):
    import server.report.figures as figures

    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.append(fig))
    assert figures.plot_rounds(_metrics(note_ceiling=note_ceiling), tmp_path / "a.png")
    for ax in drawn[0].axes:
        found = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines()
                 if "ceiling" in line.get_label() or "oracle" in line.get_label()}
        assert found == lines
