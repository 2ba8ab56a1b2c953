"""metrics.json nesting and report.md: the numbers a coordinator reads are the ones sites sent."""

from __future__ import annotations

import json
import math

import pytest

from server.metrics_file import nest_site_metrics
from server.report import gap_closed, headline, render_markdown, write_report

TASKS = ("mortality", "los")


def _flat(auroc: float, oracle: float) -> dict[str, float]:
    flat = {"loss": 0.7}
    for task in TASKS:
        flat |= {
            f"{task}.auroc": auroc,
            f"{task}.auroc_low": auroc - 0.05,
            f"{task}.auroc_high": auroc + 0.05,
            f"{task}.n": 300.0,
            f"{task}.prevalence": 0.02,
            f"{task}.oracle_auroc": oracle,
        }
    return flat


def _metrics() -> dict:
    sites = {"a": "train", "b": "train", "x": "external"}
    start = {"a": 0.50, "b": 0.60, "x": 0.52}
    end = {"a": 0.70, "b": 0.70, "x": 0.61}
    rounds = []
    for number, values in ((0, start), (1, end)):
        rounds.append(
            {
                "round": number,
                "evaluation": {s: nest_site_metrics(_flat(v, 0.80), TASKS) for s, v in values.items()},
                "training": {}
                if number == 0
                else {s: {"train-loss": 1.0, "steps": 5, "num-examples": 100, "upload-bytes": 2000}
                      for s in ("a", "b")},
                "failures": [] if number == 0 else ["b: no reply"],
                "skipped": False,
            }
        )
    return {
        "run": {"outcome": "completed", "consortium": "t", "strategy": "fedavg", "num_rounds": 1, "tasks": list(TASKS),
                "base_model": "tiny", "lora": {"r": 8}, "seed": 1, "duration_s": 3.0,
                "bootstrap_resamples": 1000},
        "sites": [{"name": s, "role": r} for s, r in sites.items()],
        "rounds": rounds,
        "upload": {"bytes_per_site_per_round": 2000, "base_model_bytes": 1_000_000,
                   "ratio_to_base_model": 0.002},
    }


def test_flat_site_metrics_nest_by_task_with_nan_as_none():
    flat = _flat(0.7, math.nan)
    nested = nest_site_metrics(flat, TASKS)
    assert nested["tasks"]["mortality"] == {
        "auroc": 0.7, "ci": [pytest.approx(0.65), pytest.approx(0.75)], "n": 300,
        "prevalence": 0.02, "oracle_auroc": None,
    }
    json.dumps(nested, allow_nan=False)  # NaN would make invalid JSON


def test_headline_separates_external_from_training_sites():
    row = headline(_metrics())["mortality"]
    assert row["external_round0"] == 0.52 and row["external_final"] == 0.61
    assert row["in_distribution_round0"] == pytest.approx(0.55)
    assert row["in_distribution_final"] == pytest.approx(0.70)
    assert row["gap_closed"] == pytest.approx((0.70 - 0.55) / (0.80 - 0.55))


@pytest.mark.parametrize(
    ("start", "end", "oracle", "expected"),
    [(0.5, 0.65, 0.8, 0.5), (0.5, 0.4, 0.8, -1 / 3), (0.8, 0.9, 0.8, None), (None, 0.7, 0.8, None)],
)
def test_gap_closed(start, end, oracle, expected):
    result = gap_closed(start, end, oracle)
    assert result == (None if expected is None else pytest.approx(expected))


def test_report_shows_every_site_ci_oracle_and_missing_sites(tmp_path):
    text = render_markdown(_metrics(), figure=None)
    assert "| x | **external** | 300 | 0.02 | 0.520 | 0.610 [0.560, 0.660] | 0.800 | 32% |" in text
    assert "| a | train | 300 | 0.02 | 0.500 | 0.700 [0.650, 0.750] | 0.800 | 67% |" in text
    assert "Round 1: b: no reply" in text
    assert "0.20 % of the base model" in text


def test_write_report_renders_markdown_and_figure(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(_metrics()))
    path = write_report(tmp_path)
    assert path.read_text().startswith("# lang1-fl run")
    assert (tmp_path / "auroc_per_round.png").stat().st_size > 1000
