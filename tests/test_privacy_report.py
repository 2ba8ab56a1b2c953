"""The report's privacy section: a reviewer reads each site's numbers, how to verify them, and
what the guarantee covers; old metrics.json files without privacy information still render."""

from __future__ import annotations

import json

from server.privacy_report import plot_privacy, render_privacy_section
from server.report import render_markdown, write_report
from tests.test_report import _metrics

HEAD = "ab12cd34ef56" + "0" * 52
REASON = "site a: training round 2 would spend ε = 9.1 > target 8"


def _dp_site(epsilon_per_round: dict[str, float], **overrides) -> dict:
    return {
        "dp": True, "target_epsilon": 8.0, "delta": 1e-5, "max_grad_norm": 1.0,
        "accountant": "rdp", "epsilon": max(epsilon_per_round.values()), "noise_multiplier": 0.8123,
        "sample_rate": 0.0125, "ledger_head": HEAD, "epsilon_per_round": epsilon_per_round,
        "declined_rounds": [], **overrides,
    }


def _private_metrics(client_level: dict | None = None) -> dict:
    """The report fixture with site a under DP (declining round 2) and site b without DP."""
    metrics = _metrics()
    metrics["run"]["run_name"] = "trial-7"
    metrics["rounds"].append({**metrics["rounds"][1], "round": 2})
    for entry in metrics["rounds"]:
        entry["declined"] = {"a": REASON} if entry["round"] == 2 else {}
    metrics["privacy"] = {
        "sites": {
            "a": _dp_site({"1": 7.4567, "2": 7.4567}, declined_rounds=[2]),
            "b": {"dp": False, "declined_rounds": []},
        },
        "client_level": client_level,
    }
    return metrics


def _non_private_metrics() -> dict:
    metrics = _metrics()
    metrics["privacy"] = {"sites": {s: {"dp": False, "declined_rounds": []} for s in ("a", "b")},
                          "client_level": None}
    return metrics


def _section(metrics: dict, figure: str | None = None) -> str:
    return "\n".join(render_privacy_section(metrics, figure))


def test_site_table_shows_each_sites_budget_spend_and_short_ledger_head():
    text = _section(_private_metrics())
    assert ("| a | DP-SGD | 8 | 1e-05 | 7.46 | 0.812 | 0.0125 | 1 | rdp | 2 | `ab12cd34ef56` |"
            in text)
    assert "| b | **no DP** |" in text
    assert "**Sites without DP: b.**" in text


def test_spend_above_target_is_flagged():
    metrics = _private_metrics()
    metrics["privacy"]["sites"]["a"]["epsilon"] = 8.5
    assert "**8.50 (over budget)**" in _section(metrics)


def test_verify_command_names_the_run_ledger_and_full_head_hash():
    text = _section(_private_metrics())
    assert f"lang1-fl privacy verify <a: privacy.ledger_dir>/trial-7.jsonl --head {HEAD}" in text
    assert "verify <b:" not in text  # nothing to verify at a site without DP


def test_declined_round_is_listed_with_its_reason():
    text = _section(_private_metrics())
    assert f"- Round 2, site a: {REASON}" in text
    assert "No site declined a round." in _section(_non_private_metrics())


def test_checklist_states_unit_release_and_what_is_not_covered():
    text = _section(_private_metrics())
    for phrase in ("Example-level DP", "One encounter", "group privacy", "Poisson sampling",
                   "post-processing", "**Not covered:**", "`num-examples`", "OS entropy",
                   "Hyperparameter tuning", "sum the final ε"):
        assert phrase in text, phrase


def test_without_any_dp_site_there_is_no_figure_and_no_checklist(tmp_path):
    metrics = _non_private_metrics()
    assert plot_privacy(metrics, tmp_path / "eps.png") is False
    assert not (tmp_path / "eps.png").exists()
    text = _section(metrics)
    assert "No ε figure: no site trained with DP." in text
    assert "**No site trained with DP-SGD:**" in text
    assert "What the guarantee covers" not in text


def test_plot_written_when_a_site_used_dp(tmp_path):
    assert plot_privacy(_private_metrics(), tmp_path / "eps.png") is True
    assert (tmp_path / "eps.png").stat().st_size > 1000


def test_old_metrics_without_privacy_still_render(tmp_path):
    metrics = _metrics()
    assert "privacy" not in metrics
    assert "No privacy information recorded" in render_markdown(metrics, figure=None)
    assert plot_privacy(metrics, tmp_path / "eps.png") is False


def test_client_level_dp_is_rendered_when_present(tmp_path):
    client = {"noise_multiplier": 1.25, "clipping_norm": 0.5, "delta": 1e-3, "epsilon": 4.321,
              "epsilon_per_round": {"1": 2.0, "2": 4.321}, "num_sites": 2, "accountant": "rdp",
              "privacy_unit": "site"}
    text = _section(_private_metrics(client))
    assert "### Client-level DP" in text
    assert "| 1.250 | 0.5 | 0.001 | 4.32 | 2 | rdp | site |" in text
    assert "With few sites (2)" in text
    assert "### Client-level DP" not in _section(_private_metrics())
    assert plot_privacy(_private_metrics(client), tmp_path / "eps.png") is True


def test_write_report_places_privacy_section_and_figure(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(_private_metrics()))
    text = write_report(tmp_path).read_text()
    assert (tmp_path / "privacy_per_round.png").stat().st_size > 1000
    assert "![Cumulative ε per round](privacy_per_round.png)" in text
    assert text.index("## What left the sites") < text.index("## Privacy") < text.index(
        "## Missing sites")


def test_write_report_without_dp_writes_no_privacy_figure(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(_non_private_metrics()))
    text = write_report(tmp_path).read_text()
    assert not (tmp_path / "privacy_per_round.png").exists()
    assert "| a | **no DP** |" in text
